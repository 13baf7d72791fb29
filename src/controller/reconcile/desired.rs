//! The power state an EcsInstance should be in now: its fixed `spec.powerState`, or what its
//! EcsPowerSchedule says at this instant, unless an override annotation holds it.
//!
//! The reconciler resolves this before it observes anything, so [`crate::controller::reconcile::decide`] stays a pure
//! function of its facts (the desired state is one of them) and a missing or invalid schedule
//! stops the reconcile before any ECS call. Schedules come from a reflector store
//! ([`crate::controller::k8s::schedule_cache::ScheduleCache`]): no API request per reconcile, and at 08:00 five
//! thousand instances read the same cached object.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    EcsHolidayCalendar, EcsInstanceSpec, EcsPowerSchedule, NextTransition, OverrideState,
    OverrideStatus, PowerState,
};
use crate::controller::truncate::truncated;
use crate::schedule::overrides::{OVERRIDE_POWER_STATE, OVERRIDE_UNTIL};
use crate::schedule::{Calendars, CompileError, InvalidSchedule, Override, Schedule};

/// Where a reconcile finds EcsPowerSchedules, and the EcsHolidayCalendars they use, by name.
#[async_trait]
pub(crate) trait Schedules: Send + Sync {
    /// Returns once the schedules and calendars have been listed (`true`): before that, one
    /// that is not found may just not be known yet (an instance must not stall at start-up).
    /// `false`: the run ended first; they never will be, judge nothing.
    async fn ready(&self) -> bool;
    /// The schedule `name` in `namespace`, if it exists.
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<EcsPowerSchedule>>;
    /// The holiday calendar `name` in `namespace`, if it exists.
    fn calendar(&self, namespace: &str, name: &str) -> Option<Arc<EcsHolidayCalendar>>;
}

/// Compiles the schedule `spec` of `namespace` with the calendars it uses, as `schedules` has
/// them (the one place the controller compiles a schedule: reconciles and the schedule status
/// agree on what a calendar means).
pub(crate) fn compile(
    spec: &crate::api::EcsPowerScheduleSpec,
    namespace: &str,
    schedules: &dyn Schedules,
) -> Result<Schedule, CompileError> {
    let found: Vec<Arc<EcsHolidayCalendar>> = spec
        .calendars
        .iter()
        .filter_map(|reference| schedules.calendar(namespace, &reference.name))
        .collect();
    let calendars: Calendars<'_> = found
        .iter()
        .filter_map(|calendar| Some((calendar.metadata.name.as_deref()?, &calendar.spec)))
        .collect();
    Schedule::compile(spec, &calendars)
}

/// The desired state, and when it next changes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Desired {
    pub power_state: PowerState,
    /// The next change of `power_state` (what `status.nextTransition` shows).
    pub next_transition: Option<NextTransition>,
    /// When to look again at the latest: the next transition, or an override's end (which
    /// changes the status even when the state stays).
    pub look_again_at: Option<Timestamp>,
    /// What the override annotations say, when there are any.
    pub power_override: Option<OverrideStatus>,
}

/// Why there is no desired state: the schedule cannot be followed. Nothing is called then.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error(
        "EcsPowerSchedule {namespace}/{name} (spec.scheduleRef) does not exist: create it, or fix spec.scheduleRef.name. Nothing is started or stopped until then."
    )]
    NotFound { namespace: String, name: String },
    #[error(
        "EcsPowerSchedule {namespace}/{name} (spec.scheduleRef) is invalid: {error}. Nothing is started or stopped until it is fixed."
    )]
    Invalid {
        namespace: String,
        name: String,
        error: InvalidSchedule,
    },
    #[error(
        "EcsPowerSchedule {namespace}/{name} (spec.scheduleRef) uses EcsHolidayCalendar {namespace}/{calendar} (its spec.calendars[{index}]), which does not exist: create it, or remove it from the schedule. Nothing is started or stopped until then."
    )]
    CalendarNotFound {
        namespace: String,
        name: String,
        calendar: String,
        index: usize,
    },
    #[error("set exactly one of spec.powerState and spec.scheduleRef")]
    NeitherOrBoth,
}

/// The desired state of an object with `spec` and `annotations` in `namespace`, at `now`.
pub(crate) fn resolve(
    spec: &EcsInstanceSpec,
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    schedules: &dyn Schedules,
    now: Timestamp,
) -> Result<Desired, Problem> {
    let reference = match (spec.power_state, &spec.schedule_ref) {
        (Some(power_state), None) => {
            return Ok(Desired {
                power_state,
                next_transition: None,
                look_again_at: None,
                power_override: fixed_override(annotations),
            });
        }
        (None, Some(reference)) => reference,
        // The CRD's CEL rule refuses both; an API server without CEL (or an old object) may not.
        _ => return Err(Problem::NeitherOrBoth),
    };
    let Some(object) = schedules.get(namespace, &reference.name) else {
        return Err(Problem::NotFound {
            namespace: namespace.to_string(),
            name: reference.name.clone(),
        });
    };
    let schedule = compile(&object.spec, namespace, schedules).map_err(|error| match error {
        CompileError::CalendarNotFound {
            name: calendar,
            index,
        } => Problem::CalendarNotFound {
            namespace: namespace.to_string(),
            name: reference.name.clone(),
            calendar,
            index,
        },
        CompileError::Invalid(error) => Problem::Invalid {
            namespace: namespace.to_string(),
            name: reference.name.clone(),
            error,
        },
    })?;
    Ok(follow(
        &schedule,
        &Override::read(Some(annotations), now),
        now,
    ))
}

/// A schedule at `now`, held by `ov` while it is active.
pub(crate) fn follow(schedule: &Schedule, ov: &Override, now: Timestamp) -> Desired {
    let next_of = |from: Timestamp| {
        schedule.next_transition(from).map(|t| NextTransition {
            power_state: t.power_state,
            time: Time(t.at),
        })
    };
    let (power_state, next_transition, look_again_at, power_override) = match ov {
        Override::Active { power_state, until } => {
            let after = schedule.state_at(*until);
            let next = if after == *power_state {
                next_of(*until)
            } else {
                Some(NextTransition {
                    power_state: after,
                    time: Time(*until),
                })
            };
            let status = override_status(OverrideState::Active, Some(*power_state), Some(*until));
            (*power_state, next, Some(*until), Some(status))
        }
        other => {
            let next = next_of(now);
            let status = match other {
                Override::Expired { power_state, until } => Some(override_status(
                    OverrideState::Expired,
                    Some(*power_state),
                    Some(*until),
                )),
                // The message quotes annotation values: bounded like every message in status.
                Override::Invalid(err) => Some(OverrideStatus {
                    message: Some(truncated(err.to_string())),
                    ..override_status(OverrideState::Invalid, None, None)
                }),
                Override::None | Override::Active { .. } => None,
            };
            let look_again = next.as_ref().map(|n| n.time.0);
            (schedule.state_at(now), next, look_again, status)
        }
    };
    Desired {
        power_state,
        next_transition,
        look_again_at,
        power_override,
    }
}

/// Override annotations on an object with a fixed `spec.powerState` are ignored: the spec is
/// the one place its state is declared.
fn fixed_override(annotations: &BTreeMap<String, String>) -> Option<OverrideStatus> {
    let annotated = [OVERRIDE_POWER_STATE, OVERRIDE_UNTIL]
        .iter()
        .any(|key| annotations.contains_key(*key));
    annotated.then(|| OverrideStatus {
        message: Some(format!(
            "metadata.annotations[\"{OVERRIDE_POWER_STATE}\"]: overrides apply to instances that follow a schedule (spec.scheduleRef); this one has spec.powerState: change spec.powerState instead"
        )),
        ..override_status(OverrideState::Invalid, None, None)
    })
}

fn override_status(
    state: OverrideState,
    power_state: Option<PowerState>,
    until: Option<Timestamp>,
) -> OverrideStatus {
    OverrideStatus {
        state,
        power_state,
        until: until.map(Time),
        message: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeSchedules, annotations, office_hours, scheduled};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// Friday 2026-11-27 in Shanghai: 08:00 local is 00:00Z, 20:00 local is 12:00Z.
    #[test]
    fn a_scheduled_instance_follows_its_schedule_and_knows_the_next_change() {
        let schedules = FakeSchedules::default();
        schedules.put("team", "office-hours", office_hours());
        let spec = scheduled("i-a", "office-hours");
        let none = BTreeMap::new();
        let resolve_at = |now| resolve(&spec, &none, "team", &schedules, at(now)).unwrap();

        let day = resolve_at("2026-11-27T03:00:00Z");
        assert_eq!(day.power_state, PowerState::Running);
        let next = day.next_transition.unwrap();
        assert_eq!(
            (next.power_state, next.time.0),
            (PowerState::Stopped, at("2026-11-27T12:00:00Z"))
        );
        assert_eq!(day.look_again_at, Some(at("2026-11-27T12:00:00Z")));

        // Friday night: stopped over the weekend, until Monday 08:00 local.
        let night = resolve_at("2026-11-27T12:00:00Z");
        assert_eq!(night.power_state, PowerState::Stopped);
        assert_eq!(
            night.next_transition.unwrap().time.0,
            at("2026-11-30T00:00:00Z")
        );
    }

    #[test]
    fn an_override_holds_the_state_until_it_ends_then_the_schedule_decides() {
        let schedules = FakeSchedules::default();
        schedules.put("team", "office-hours", office_hours());
        let spec = scheduled("i-a", "office-hours");
        let held = annotations(&[
            (OVERRIDE_POWER_STATE, "Running"),
            (OVERRIDE_UNTIL, "2026-11-27T15:00:00Z"),
        ]);
        // 20:30 local: the schedule says Stopped, the override Running until 23:00 local.
        let d = resolve(&spec, &held, "team", &schedules, at("2026-11-27T12:30:00Z")).unwrap();
        assert_eq!(d.power_state, PowerState::Running);
        let next = d.next_transition.unwrap();
        assert_eq!(
            (next.power_state, next.time.0),
            (PowerState::Stopped, at("2026-11-27T15:00:00Z"))
        );
        assert_eq!(d.look_again_at, Some(at("2026-11-27T15:00:00Z")));
        assert_eq!(d.power_override.unwrap().state, OverrideState::Active);

        // After its end: the schedule again, the override reported as expired.
        let d = resolve(&spec, &held, "team", &schedules, at("2026-11-27T15:00:00Z")).unwrap();
        assert_eq!(d.power_state, PowerState::Stopped);
        assert_eq!(d.power_override.unwrap().state, OverrideState::Expired);
    }

    /// An override that agrees with the schedule at its end changes nothing then: the next
    /// transition is the schedule's, but the controller still looks again at the end.
    #[test]
    fn an_override_that_ends_in_agreement_shows_the_schedules_next_change() {
        let schedules = FakeSchedules::default();
        schedules.put("team", "office-hours", office_hours());
        let spec = scheduled("i-a", "office-hours");
        let held = annotations(&[
            (OVERRIDE_POWER_STATE, "Stopped"),
            (OVERRIDE_UNTIL, "2026-11-27T14:00:00Z"),
        ]);
        let d = resolve(&spec, &held, "team", &schedules, at("2026-11-27T03:00:00Z")).unwrap();
        assert_eq!(d.power_state, PowerState::Stopped);
        assert_eq!(
            d.next_transition.unwrap().time.0,
            at("2026-11-30T00:00:00Z")
        );
        assert_eq!(d.look_again_at, Some(at("2026-11-27T14:00:00Z")));
    }

    #[test]
    fn an_invalid_override_is_ignored_and_named() {
        let schedules = FakeSchedules::default();
        schedules.put("team", "office-hours", office_hours());
        let spec = scheduled("i-a", "office-hours");
        let bad = annotations(&[(OVERRIDE_POWER_STATE, "Running")]);
        let d = resolve(&spec, &bad, "team", &schedules, at("2026-11-27T13:00:00Z")).unwrap();
        assert_eq!(d.power_state, PowerState::Stopped);
        let ov = d.power_override.unwrap();
        assert_eq!(ov.state, OverrideState::Invalid);
        assert!(ov.message.unwrap().contains(OVERRIDE_UNTIL));
    }

    /// The audit's 200 KB `override-until` became a 200,130-character status message.
    #[test]
    fn a_huge_override_value_leaves_a_bounded_status_message() {
        let schedules = FakeSchedules::default();
        schedules.put("team", "office-hours", office_hours());
        let spec = scheduled("i-a", "office-hours");
        let huge = "9".repeat(200_000);
        let bad = annotations(&[(OVERRIDE_POWER_STATE, "Running"), (OVERRIDE_UNTIL, &huge)]);
        let d = resolve(&spec, &bad, "team", &schedules, at("2026-11-27T13:00:00Z")).unwrap();
        let message = d.power_override.unwrap().message.unwrap();
        assert!(
            message.len() <= crate::controller::truncate::MESSAGE_LIMIT,
            "{} bytes",
            message.len()
        );
        assert!(message.contains(OVERRIDE_UNTIL), "{message}");
    }

    #[test]
    fn a_fixed_instance_ignores_override_annotations_and_says_so() {
        let spec = EcsInstanceSpec::minimal("i-a", PowerState::Stopped);
        let held = annotations(&[
            (OVERRIDE_POWER_STATE, "Running"),
            (OVERRIDE_UNTIL, "2026-11-27T15:00:00Z"),
        ]);
        let d = resolve(
            &spec,
            &held,
            "team",
            &FakeSchedules::default(),
            at("2026-11-27T13:00:00Z"),
        )
        .unwrap();
        assert_eq!(d.power_state, PowerState::Stopped);
        assert_eq!(d.look_again_at, None);
        let message = d.power_override.unwrap().message.unwrap();
        assert!(message.contains("spec.powerState"), "{message}");
    }

    /// A schedule whose calendar is missing: a problem of its own naming both; a deleted and
    /// recreated calendar takes effect on the next resolve (the cache is read each time).
    #[test]
    fn a_missing_calendar_is_a_problem_naming_it_until_it_exists() {
        let schedules = FakeSchedules::default();
        let mut spec = office_hours();
        spec.calendars.push(crate::api::CalendarReference {
            name: "cn-holidays".into(),
            power_state: PowerState::Stopped,
        });
        schedules.put("team", "office-hours", spec);
        let follower = scheduled("i-a", "office-hours");
        let none = BTreeMap::new();
        let now = at("2026-11-27T03:00:00Z");
        let err = resolve(&follower, &none, "team", &schedules, now).unwrap_err();
        assert_eq!(
            err,
            Problem::CalendarNotFound {
                namespace: "team".into(),
                name: "office-hours".into(),
                calendar: "cn-holidays".into(),
                index: 0
            }
        );
        assert!(
            err.to_string().starts_with("EcsPowerSchedule team/office-hours (spec.scheduleRef) uses EcsHolidayCalendar team/cn-holidays"),
            "{err}"
        );
        let calendar = crate::api::EcsHolidayCalendarSpec {
            days: vec![crate::api::CalendarDay {
                date: "2026-11-27".into(),
                name: None,
            }],
        };
        // One of the same name in another namespace does not count.
        schedules.put_calendar("other", "cn-holidays", calendar.clone());
        assert!(resolve(&follower, &none, "team", &schedules, now).is_err());
        schedules.put_calendar("team", "cn-holidays", calendar);
        let d = resolve(&follower, &none, "team", &schedules, now).unwrap();
        assert_eq!(
            d.power_state,
            PowerState::Stopped,
            "today is a calendar day"
        );
        schedules.delete_calendar("team", "cn-holidays");
        assert!(matches!(
            resolve(&follower, &none, "team", &schedules, now),
            Err(Problem::CalendarNotFound { .. })
        ));
    }

    #[test]
    fn a_missing_or_invalid_schedule_is_a_problem_naming_it() {
        let schedules = FakeSchedules::default();
        let spec = scheduled("i-a", "office-hours");
        let none = BTreeMap::new();
        let now = at("2026-11-27T03:00:00Z");
        let err = resolve(&spec, &none, "team", &schedules, now).unwrap_err();
        assert!(matches!(err, Problem::NotFound { .. }));
        assert!(err.to_string().contains("team/office-hours"), "{err}");

        let mut broken = office_hours();
        broken.time_zone = "Mars/Olympus".into();
        schedules.put("team", "office-hours", broken);
        let err = resolve(&spec, &none, "team", &schedules, now).unwrap_err();
        assert!(matches!(err, Problem::Invalid { .. }));
        assert!(err.to_string().contains("spec.timeZone"), "{err}");
    }
}
