//! The machine-readable output of `schedule preview -o json|yaml` (here) and of
//! `plan -o json|yaml` (`crate::plan`): a documented, stable shape (docs/schedules.md, "JSON
//! and YAML output") that a GitOps pipeline can assert on in CI.
//!
//! Every field name is spelled out in these types, never borrowed from an internal one, so a
//! refactoring cannot change the output by accident; a test pins the shape. A change that
//! would break a reader (a field renamed, removed or retyped) comes with a new [`API_VERSION`];
//! within a version, fields may only be added. Optional fields are written as `null`, never
//! left out, so every document of a kind has the same keys.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::preview::{self, RowKind};
use super::{Cause, Schedule, Transition};
use crate::api::PowerState;

/// The `apiVersion` of every document the CLI prints (not a Kubernetes API: nothing is stored).
pub(crate) const API_VERSION: &str = "cli.ecs.powerctl.io/v1";

/// Why the power state changes, by kind (`type`), with the parts a pipeline would test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub(crate) enum CauseReport {
    /// `spec.running[index]` opens.
    WindowOpens { index: usize },
    /// `spec.running[index]` closes.
    WindowCloses { index: usize },
    /// The exception day `spec.exceptions[index]` (`date`, `YYYY-MM-DD`) begins.
    Exception { index: usize, date: String },
    /// That exception day is over: the windows decide again.
    ExceptionOver { index: usize, date: String },
    /// A day (`date`) of the holiday calendar `calendar` (`spec.calendars`) begins; `day` is its
    /// name in the calendar (`null` when it has none).
    Calendar {
        calendar: String,
        date: String,
        day: Option<String>,
    },
    /// That calendar day is over: the windows decide again.
    CalendarOver {
        calendar: String,
        date: String,
        day: Option<String>,
    },
    /// An override (annotation `ecs.powerctl.io/override-until`) ends: the schedule decides
    /// again (`plan` only).
    OverrideEnds,
}

impl From<&Cause> for CauseReport {
    fn from(cause: &Cause) -> Self {
        match cause {
            Cause::WindowOpens { index } => Self::WindowOpens { index: *index },
            Cause::WindowCloses { index } => Self::WindowCloses { index: *index },
            Cause::Exception { index, date } => Self::Exception {
                index: *index,
                date: date.to_string(),
            },
            Cause::ExceptionOver { index, date } => Self::ExceptionOver {
                index: *index,
                date: date.to_string(),
            },
            Cause::Calendar {
                calendar,
                day,
                date,
            } => Self::Calendar {
                calendar: calendar.clone(),
                date: date.to_string(),
                day: day.clone(),
            },
            Cause::CalendarOver {
                calendar,
                day,
                date,
            } => Self::CalendarOver {
                calendar: calendar.clone(),
                date: date.to_string(),
                day: day.clone(),
            },
        }
    }
}

/// `2026-12-24T20:00:00+08:00`: an instant as the zone's wall clock shows it, RFC 3339.
pub(crate) fn local_rfc3339(zone: &TimeZone, at: Timestamp) -> String {
    at.to_zoned(zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `schedule preview -o json`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewReport {
    pub(crate) api_version: &'static str,
    /// `SchedulePreview`.
    pub(crate) kind: &'static str,
    /// The EcsPowerSchedule's name.
    pub(crate) schedule: String,
    /// Its `spec.timeZone`.
    pub(crate) time_zone: String,
    /// The range shown: after `from`, up to and including `until` (UTC).
    pub(crate) from: Timestamp,
    pub(crate) until: Timestamp,
    /// What the schedule says at `from`.
    pub(crate) power_state: PowerState,
    /// The table's lines, in time order.
    pub(crate) entries: Vec<PreviewEntry>,
    /// The first transition after `until`; `null` when the state never changes again.
    pub(crate) next: Option<NextChange>,
}

/// One line of the preview.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewEntry {
    pub(crate) time: Timestamp,
    pub(crate) local_time: String,
    /// `Transition`, `DaylightSaving` (the zone's offset changes) or `ExceptionDay` (an
    /// exception day that begins in the state it holds: no change).
    pub(crate) event: &'static str,
    /// The state from `time` on; `null` unless `event` is `Transition`.
    pub(crate) power_state: Option<PowerState>,
    /// `null` unless `event` is `Transition`.
    pub(crate) cause: Option<CauseReport>,
    /// The table's WHY text (for people: its wording may change).
    pub(crate) why: String,
}

/// A change of power state at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NextChange {
    pub(crate) time: Timestamp,
    pub(crate) local_time: String,
    pub(crate) power_state: PowerState,
}

impl NextChange {
    pub(crate) fn of(zone: &TimeZone, t: &Transition) -> Self {
        Self {
            time: t.at,
            local_time: local_rfc3339(zone, t.at),
            power_state: t.power_state,
        }
    }
}

/// The preview of `schedule` (named `name`) over `(from, until]`, as `-o json` prints it.
pub(crate) fn preview(
    schedule: &Schedule,
    name: &str,
    from: Timestamp,
    until: Timestamp,
) -> PreviewReport {
    let zone = schedule.zone();
    let entries = preview::rows(schedule, from, until)
        .into_iter()
        .map(|row| {
            let (event, power_state, cause) = match &row.kind {
                RowKind::Transition(t) => (
                    "Transition",
                    Some(t.power_state),
                    Some(CauseReport::from(&t.cause)),
                ),
                RowKind::DaylightSaving => ("DaylightSaving", None, None),
                RowKind::QuietException => ("ExceptionDay", None, None),
            };
            PreviewEntry {
                time: row.at,
                local_time: local_rfc3339(zone, row.at),
                event,
                power_state,
                cause,
                why: row.why,
            }
        })
        .collect();
    PreviewReport {
        api_version: API_VERSION,
        kind: "SchedulePreview",
        schedule: name.to_string(),
        time_zone: schedule.zone_name().to_string(),
        from,
        until,
        power_state: schedule.state_at(from),
        entries,
        next: schedule
            .next_transition(until)
            .map(|t| NextChange::of(zone, &t)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::EcsPowerScheduleSpec;

    /// The `-o json` document of `schedule preview`: every key, as docs/schedules.md documents
    /// it. Europe/Berlin's spring DST night: a DST line, a boundary moved by the gap, an
    /// exception day that changes nothing.
    #[test]
    fn the_preview_document_has_the_documented_shape() {
        let spec: EcsPowerScheduleSpec = serde_json::from_value(json!({
            "timeZone": "Europe/Berlin",
            "running": [{"days": ["Sun"], "from": "02:30", "to": "05:00"}],
            "exceptions": [{"date": "2026-03-30", "powerState": "Stopped"}],
        }))
        .unwrap();
        let schedule = Schedule::compile(&spec, &super::super::Calendars::none()).unwrap();
        let from: Timestamp = "2026-03-28T12:00:00Z".parse().unwrap();
        let until: Timestamp = "2026-03-30T12:00:00Z".parse().unwrap();
        assert_eq!(
            serde_json::to_value(preview(&schedule, "nightly", from, until)).unwrap(),
            json!({
                "apiVersion": "cli.ecs.powerctl.io/v1",
                "kind": "SchedulePreview",
                "schedule": "nightly",
                "timeZone": "Europe/Berlin",
                "from": "2026-03-28T12:00:00Z",
                "until": "2026-03-30T12:00:00Z",
                "powerState": "Stopped",
                "entries": [
                    {
                        "time": "2026-03-29T01:00:00Z",
                        "localTime": "2026-03-29T03:00:00+02:00",
                        "event": "DaylightSaving",
                        "powerState": null,
                        "cause": null,
                        "why": "DST: clocks go forward 1h (CET +01 to CEST +02)",
                    },
                    {
                        "time": "2026-03-29T01:30:00Z",
                        "localTime": "2026-03-29T03:30:00+02:00",
                        "event": "Transition",
                        "powerState": "Running",
                        "cause": {"type": "WindowOpens", "index": 0},
                        "why": "running[0] opens; 02:30 is skipped by the DST change: moved 1h later",
                    },
                    {
                        "time": "2026-03-29T03:00:00Z",
                        "localTime": "2026-03-29T05:00:00+02:00",
                        "event": "Transition",
                        "powerState": "Stopped",
                        "cause": {"type": "WindowCloses", "index": 0},
                        "why": "running[0] closes",
                    },
                    {
                        "time": "2026-03-29T22:00:00Z",
                        "localTime": "2026-03-30T00:00:00+02:00",
                        "event": "ExceptionDay",
                        "powerState": null,
                        "cause": null,
                        "why": "exception 2026-03-30 (exceptions[0]): Stopped all day, as it already was",
                    },
                ],
                "next": {
                    "time": "2026-04-05T00:30:00Z",
                    "localTime": "2026-04-05T02:30:00+02:00",
                    "powerState": "Running",
                },
            })
        );
    }
}
