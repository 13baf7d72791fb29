//! The `EcsPowerSchedule` custom resource (`ecs.powerctl.io/v1alpha1`): weekly running windows
//! in one IANA time zone, with whole-day exceptions.
//!
//! The schema catches what an API server can check on its own (shapes, `HH:MM`, `from != to`,
//! unique days and dates); what needs the time-zone database (the zone name, real calendar
//! dates) is checked by [`crate::schedule::Schedule::compile`], which names the field.
//! `crds/ecspowerschedule.yaml` is generated from these types (`ecs-power-controller crd`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::PowerState;

/// `HH:MM`, 00:00 to 23:59 (the schema's pattern; `to` also takes `24:00`).
const TIME_OF_DAY: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
const END_TIME_OF_DAY: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";

/// When the EcsInstances that follow this schedule run.
// Each printer column repeats `type_ = "string"`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.powerctl.io",
    version = "v1alpha1",
    kind = "EcsPowerSchedule",
    plural = "ecspowerschedules",
    shortname = "ecsps",
    namespaced,
    status = "EcsPowerScheduleStatus",
    doc = "Weekly running windows in one time zone: EcsInstances that follow the schedule run inside them and are stopped outside.",
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Now", type_ = "string", json_path = ".status.powerState"),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextTransition.time"
    ),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".status.instances"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EcsPowerScheduleSpec {
    /// IANA time zone the windows and exception dates are in, e.g. `Asia/Shanghai` or
    /// `Europe/Berlin`. Daylight saving time is followed.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: String,

    /// The windows in which the instances run; outside every window they are stopped.
    #[schemars(length(min = 1, max = 64))]
    pub running: Vec<RunningWindow>,

    /// Whole local days on which one power state holds, whatever the windows say (holidays,
    /// release nights).
    #[serde(default)]
    #[schemars(length(max = 400), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["date"]))]
    pub exceptions: Vec<ScheduleException>,

    /// EcsHolidayCalendars in this namespace whose days are exception days of this schedule,
    /// with the power state each holds. A date in `exceptions` wins over a calendar's; two
    /// calendars that disagree on a date: `Stopped` wins. A calendar that does not exist stalls
    /// the schedule (reason `CalendarNotFound`) and nothing is started or stopped until it does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub calendars: Vec<CalendarReference>,
}

/// A holiday calendar a schedule uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalendarReference {
    /// The EcsHolidayCalendar's name, in the schedule's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The power state on the calendar's days (default `Stopped`).
    #[serde(default = "stopped")]
    pub power_state: PowerState,
}

fn stopped() -> PowerState {
    PowerState::Stopped
}

/// A weekly window. `to` earlier than `from` runs past midnight into the next day; the window
/// belongs to the day it starts on.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.from != self.to").message("from and to must differ: a window needs a length (a whole day is from 00:00 to 24:00)"))]
pub struct RunningWindow {
    /// The days the window starts on.
    #[schemars(length(min = 1, max = 7), extend("x-kubernetes-list-type" = "set"))]
    pub days: Vec<Weekday>,
    /// Local start, `HH:MM`.
    #[schemars(length(max = 5), regex(pattern = TIME_OF_DAY))]
    pub from: String,
    /// Local end, `HH:MM` (exclusive; `24:00` is the end of the day). Earlier than `from`: the
    /// next day.
    #[schemars(length(max = 5), regex(pattern = END_TIME_OF_DAY))]
    pub to: String,
}

/// A day of the week, in the schedule's zone.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Every day of the week, Monday first.
    pub const ALL: [Weekday; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];
}

/// One local day with a fixed power state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleException {
    /// The local date, `YYYY-MM-DD`.
    #[schemars(length(max = 10), regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub date: String,
    /// The power state for the whole day.
    pub power_state: PowerState,
}

/// What the schedule says now, and what follows it.
///
/// Optional fields serialize as `null` (never skipped) so that a merge patch of the whole status
/// clears what is no longer true.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::kubernetes_integer_formats)]
pub struct EcsPowerScheduleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// The power state the schedule asks for now.
    #[serde(default)]
    pub power_state: Option<PowerState>,
    /// The next change; absent when the schedule never changes again.
    #[serde(default)]
    pub next_transition: Option<NextTransition>,
    /// How many EcsInstances follow this schedule.
    #[serde(default)]
    pub instances: Option<u32>,
    /// `Ready`, `Stalled` (an invalid schedule: the message names the field).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A coming change of the schedule's power state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextTransition {
    pub power_state: PowerState,
    pub time: Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let yaml = r#"
apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsPowerSchedule
metadata: {name: office-hours, namespace: default}
spec:
  timeZone: Asia/Shanghai
  running:
    - days: [Mon, Tue, Wed, Thu, Fri]
      from: "08:00"
      to: "20:00"
  exceptions:
    - date: "2026-12-25"
      powerState: Stopped
status:
  powerState: Running
  nextTransition: {powerState: Stopped, time: "2026-11-27T12:00:00Z"}
  instances: 12
  conditions: []
"#;
        let obj: EcsPowerSchedule = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(obj.spec.running[0].days.len(), 5);
        assert_eq!(obj.spec.exceptions[0].power_state, PowerState::Stopped);
        let status = obj.status.unwrap();
        assert_eq!(status.instances, Some(12));
        assert_eq!(
            status.next_transition.unwrap().power_state,
            PowerState::Stopped
        );
    }
}
