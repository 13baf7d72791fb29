//! The `EcsHolidayCalendar` custom resource (`ecs.powerctl.io/v1alpha1`): a list of whole days,
//! kept once (say, by a platform team) and used by any number of EcsPowerSchedules in its
//! namespace through `spec.calendars`.
//!
//! A calendar has no time zone of its own: a day is a whole local day in the zone of the
//! schedule that uses it, exactly as that schedule's own `spec.exceptions` entry would be.
//! The schema checks the shape (dates `YYYY-MM-DD`, unique, at most 1,000); whether a date is
//! a real calendar date is checked when a schedule compiles it, naming the field.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Days off (or days on) shared by the EcsPowerSchedules of a namespace.
// Each printer column repeats `type_ = "string"`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.powerctl.io",
    version = "v1alpha1",
    kind = "EcsHolidayCalendar",
    plural = "ecsholidaycalendars",
    shortname = "ecshc",
    namespaced,
    status = "EcsHolidayCalendarStatus",
    doc = "Whole days (holidays, shutdown days) that EcsPowerSchedules in the same namespace treat as exception days through spec.calendars.",
    printcolumn(name = "Days", type_ = "integer", json_path = ".status.days"),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.next.date"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EcsHolidayCalendarSpec {
    /// The days, each a whole local day in the zone of the schedule that uses the calendar.
    #[serde(default)]
    #[schemars(length(max = 1000), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["date"]))]
    pub days: Vec<CalendarDay>,
}

/// One day of a calendar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalendarDay {
    /// The date, `YYYY-MM-DD`.
    #[schemars(length(max = 10), regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub date: String,
    /// What the day is called (`National Day`): shown by `schedule preview` and `plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub name: Option<String>,
}

/// How many days the calendar holds and which comes next.
///
/// Optional fields serialize as `null` (never skipped) so that a merge patch of the whole status
/// clears what is no longer true.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::kubernetes_integer_formats)]
pub struct EcsHolidayCalendarStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// The number of days in `spec.days`.
    #[serde(default)]
    pub days: Option<u32>,
    /// The first day on or after today (UTC); absent when every day is past.
    #[serde(default)]
    pub next: Option<CalendarDay>,
    /// `Ready`, or `Stalled` when a date is not a real calendar date (the message names it).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let yaml = r#"
apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsHolidayCalendar
metadata: {name: cn-holidays, namespace: default}
spec:
  days:
    - {date: "2027-01-01", name: New Year}
    - date: "2027-10-01"
"#;
        let obj: EcsHolidayCalendar = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(obj.spec.days.len(), 2);
        assert_eq!(obj.spec.days[0].name.as_deref(), Some("New Year"));
        assert_eq!(obj.spec.days[1].name, None);
    }
}
