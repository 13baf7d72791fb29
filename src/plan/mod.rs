//! The plan of the fleet: every coming power change of a set of EcsInstances in a time range,
//! from their schedules (and their holiday calendars), the ends of their overrides and the
//! start order (`order`), sorted by time; and,
//! for every instance where nothing will change, why (paused, stalled, a fixed `powerState`, or
//! no boundary in the range).
//!
//! Pure: the objects, the start and the end of the range in, a [`PlanReport`] out. The command
//! (`crate::cli::plan`) only fetches and renders, so everything here is tested without a
//! cluster. The desired state is resolved by the controller's own rules
//! ([`desired::resolve`](crate::controller::reconcile::desired::resolve)): a schedule the
//! controller would refuse is one the plan reports as stalled, with the same message.
//!
//! The report is also the stable `-o json|yaml` document (see [`crate::schedule::report`]):
//! its field names are spelled out here and documented in docs/schedules.md.

mod order;
mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule, PowerState};
use crate::controller::reconcile::desired::{self, Problem, Schedules};
use crate::schedule::overrides::OVERRIDE_UNTIL;
use crate::schedule::report::{API_VERSION, CauseReport, NextChange, local_rfc3339};
use crate::schedule::{Cause, Override, Schedule, Transition, preview};

pub(crate) use table::render;

/// The objects a plan is made of (in any namespaces; each is matched within its own).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fleet<'a> {
    pub(crate) instances: &'a [EcsInstance],
    pub(crate) schedules: &'a [EcsPowerSchedule],
    pub(crate) calendars: &'a [EcsHolidayCalendar],
}

/// `plan -o json`: the coming changes in `(from, until]`, and the instances without any.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlanReport {
    pub(crate) api_version: &'static str,
    /// `PowerPlan`.
    pub(crate) kind: &'static str,
    /// The range: changes after `from`, up to and including `until` (UTC).
    pub(crate) from: Timestamp,
    pub(crate) until: Timestamp,
    /// Every coming change of a desired power state, by time (then by start order, namespace,
    /// name).
    pub(crate) changes: Vec<Change>,
    /// Every instance with no change in the range, and why, by namespace and name.
    pub(crate) unchanged: Vec<Unchanged>,
}

/// One instance's desired power state changes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Change {
    pub(crate) time: Timestamp,
    /// `time` on the schedule's wall clock, RFC 3339 with its offset.
    pub(crate) local_time: String,
    /// The schedule's `spec.timeZone`.
    pub(crate) time_zone: String,
    pub(crate) namespace: String,
    /// The EcsInstance's name.
    pub(crate) name: String,
    /// `spec.instanceId`.
    pub(crate) instance_id: String,
    /// The desired state from `time` on.
    pub(crate) power_state: PowerState,
    /// The EcsPowerSchedule the instance follows.
    pub(crate) schedule: String,
    pub(crate) cause: CauseReport,
    /// The table's WHY text (for people: its wording may change).
    pub(crate) why: String,
    /// `spec.dryRun`: the controller sends the call with `DryRun=true`, the VM does not change.
    pub(crate) dry_run: bool,
    /// The start order (`spec.startAfter`): the instances whose change at the same instant
    /// comes first (for a start, those it starts after; for a stop, those that start after it).
    pub(crate) after: Vec<String>,
    /// The instances this change will wait for past its time: they will not be in the state it
    /// needs then (`Running` for a start, `Stopped` for a stop), or do not exist.
    pub(crate) waits_for: Vec<String>,
    #[serde(skip)]
    pub(crate) zone: TimeZone,
}

/// An instance with no change in the range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Unchanged {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) instance_id: String,
    /// `Paused` or `Stalled` (nothing will happen until a person acts), `Fixed` (a fixed
    /// `spec.powerState`), `Steady` (it follows a schedule, which has no boundary in the
    /// range, or an override holds it past the range).
    pub(crate) state: UnchangedState,
    /// A single word: `Paused`, the Stalled reason (`ScheduleNotFound`, `ScheduleInvalid`,
    /// `InvalidSpec`, `DependencyCycle`, or the one in the object's Stalled condition),
    /// `FixedPowerState`,
    /// `NoBoundary`, `OverrideHolds`.
    pub(crate) reason: String,
    /// For people: why, and what to do.
    pub(crate) message: String,
    /// The desired state throughout the range; `null` when there is none (stalled).
    pub(crate) power_state: Option<PowerState>,
    /// The first change after the range (`Steady` only); `null` otherwise or when there is
    /// none.
    pub(crate) next: Option<NextChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) enum UnchangedState {
    Paused,
    Stalled,
    Fixed,
    Steady,
}

/// Stalled reasons the plan works out from the objects themselves: the object's own condition
/// saying so may be older than the schedule it names.
const RECOMPUTED_REASONS: &[&str] = &["ScheduleNotFound", "ScheduleInvalid", "DependencyCycle"];

/// The plan of `fleet` for the changes in `(from, until]`.
pub(crate) fn plan(fleet: Fleet<'_>, from: Timestamp, until: Timestamp) -> PlanReport {
    let schedules = ByName::new(fleet.schedules, fleet.calendars);
    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    for instance in fleet.instances {
        match instance_plan(instance, &schedules, from, until) {
            Outcome::Changes(found) => changes.extend(found),
            Outcome::Unchanged(quiet) => unchanged.push(quiet),
        }
    }
    unchanged.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    order::apply(fleet.instances, &mut changes, &mut unchanged);
    PlanReport {
        api_version: API_VERSION,
        kind: "PowerPlan",
        from,
        until,
        changes,
        unchanged,
    }
}

/// What the plan says of one instance.
enum Outcome {
    Changes(Vec<Change>),
    /// No change, and why.
    Unchanged(Unchanged),
}

/// The changes of one instance, or why there are none.
fn instance_plan(
    instance: &EcsInstance,
    schedules: &ByName,
    from: Timestamp,
    until: Timestamp,
) -> Outcome {
    let namespace = instance.namespace().unwrap_or_default();
    let name = instance.name_any();
    let unchanged = |state, reason: &str, message: String| Unchanged {
        namespace: namespace.clone(),
        name: name.clone(),
        instance_id: instance.spec.instance_id.clone(),
        state,
        reason: reason.to_string(),
        message,
        power_state: None,
        next: None,
    };
    if instance.is_paused() {
        return Outcome::Unchanged(unchanged(
            UnchangedState::Paused,
            "Paused",
            format!(
                "paused (annotation {}=true): the controller starts and stops nothing; `kubectl ecsi resume {name} -n {namespace}` lets it act again",
                crate::api::PAUSED_ANNOTATION
            ),
        ));
    }
    let annotations = instance.annotations();
    let resolved = desired::resolve(&instance.spec, annotations, &namespace, schedules, from);
    if let Err(problem) = &resolved {
        let reason = match problem {
            Problem::NotFound { .. } => "ScheduleNotFound",
            // As the controller says it: the schedule cannot be followed as it is.
            Problem::Invalid { .. } | Problem::CalendarNotFound { .. } => "ScheduleInvalid",
            Problem::NeitherOrBoth => "InvalidSpec",
        };
        return Outcome::Unchanged(unchanged(
            UnchangedState::Stalled,
            reason,
            problem.to_string(),
        ));
    }
    if let Some((reason, message)) = stalled_condition(instance) {
        return Outcome::Unchanged(unchanged(
            UnchangedState::Stalled,
            &reason,
            format!("{message} (its Stalled condition: nothing changes until a person fixes it)"),
        ));
    }
    let Some(reference) = &instance.spec.schedule_ref else {
        let state = instance.spec.power_state.unwrap_or(PowerState::Running);
        return Outcome::Unchanged(Unchanged {
            power_state: Some(state),
            ..unchanged(
                UnchangedState::Fixed,
                "FixedPowerState",
                format!(
                    "spec.powerState {}: no schedule, nothing changes by itself",
                    state.as_str()
                ),
            )
        });
    };
    // `resolve` found and compiled it.
    let Some(schedule) = schedules.compiled(&namespace, &reference.name) else {
        return Outcome::Changes(Vec::new());
    };
    let change = |at: Timestamp, power_state: PowerState, cause: CauseReport, why: String| Change {
        time: at,
        local_time: local_rfc3339(schedule.zone(), at),
        time_zone: schedule.zone_name().to_string(),
        namespace: namespace.clone(),
        name: name.clone(),
        instance_id: instance.spec.instance_id.clone(),
        power_state,
        schedule: reference.name.clone(),
        cause,
        why: if instance.spec.dry_run {
            format!("{why}; dry run: ECS only checks the call, the VM stays as it is")
        } else {
            why
        },
        dry_run: instance.spec.dry_run,
        after: Vec::new(),
        waits_for: Vec::new(),
        zone: schedule.zone().clone(),
    };
    let schedule_change = |t: &Transition| {
        change(
            t.at,
            t.power_state,
            CauseReport::from(&t.cause),
            match t.cause {
                // `calendar cn-holidays: New Year`: the calendar says why, not the schedule.
                Cause::Calendar { .. } | Cause::CalendarOver { .. } => preview::why(t),
                _ => format!("schedule {}: {}", reference.name, preview::why(t)),
            },
        )
    };
    let mut found = Vec::new();
    let mut schedule_from = from;
    let mut state = schedule.state_at(from);
    if let Override::Active {
        power_state,
        until: end,
    } = Override::read(Some(annotations), from)
    {
        if end > until {
            return Outcome::Unchanged(Unchanged {
                power_state: Some(power_state),
                next: None,
                ..unchanged(
                    UnchangedState::Steady,
                    "OverrideHolds",
                    format!(
                        "held {} by an override until {end} (annotation {OVERRIDE_UNTIL})",
                        power_state.as_str()
                    ),
                )
            });
        }
        let after = schedule.state_at(end);
        if after != power_state {
            found.push(change(
                end,
                after,
                CauseReport::OverrideEnds,
                format!(
                    "override ends (annotation {OVERRIDE_UNTIL}): schedule {} says {}",
                    reference.name,
                    after.as_str()
                ),
            ));
        }
        schedule_from = end;
        state = after;
    }
    found.extend(
        schedule
            .transitions(schedule_from, until)
            .map(|t| schedule_change(&t)),
    );
    if found.is_empty() {
        return Outcome::Unchanged(Unchanged {
            power_state: Some(state),
            next: schedule
                .next_transition(until)
                .map(|t| NextChange::of(schedule.zone(), &t)),
            ..unchanged(
                UnchangedState::Steady,
                "NoBoundary",
                format!(
                    "schedule {} says {} throughout",
                    reference.name,
                    state.as_str()
                ),
            )
        });
    }
    Outcome::Changes(found)
}

/// The reason and message of the object's `Stalled=True` condition, unless the plan works
/// that reason out itself.
fn stalled_condition(instance: &EcsInstance) -> Option<(String, String)> {
    let condition = instance
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")?;
    (!RECOMPUTED_REASONS.contains(&condition.reason.as_str()))
        .then(|| (condition.reason.clone(), condition.message.clone()))
}

/// The fleet's schedules and calendars by namespace and name, as the controller's caches serve
/// them.
struct ByName {
    schedules: HashMap<(String, String), Arc<EcsPowerSchedule>>,
    calendars: HashMap<(String, String), Arc<EcsHolidayCalendar>>,
}

/// `objects` by (namespace, name).
fn by_name<K: kube::Resource + Clone>(objects: &[K]) -> HashMap<(String, String), Arc<K>> {
    objects
        .iter()
        .map(|o| {
            (
                (o.namespace().unwrap_or_default(), o.name_any()),
                Arc::new(o.clone()),
            )
        })
        .collect()
}

impl ByName {
    fn new(schedules: &[EcsPowerSchedule], calendars: &[EcsHolidayCalendar]) -> Self {
        Self {
            schedules: by_name(schedules),
            calendars: by_name(calendars),
        }
    }

    /// The schedule `name` compiled with its calendars, as the controller compiles it.
    fn compiled(&self, namespace: &str, name: &str) -> Option<Schedule> {
        let object = self.get(namespace, name)?;
        desired::compile(&object.spec, namespace, self).ok()
    }
}

#[async_trait]
impl Schedules for ByName {
    async fn ready(&self) -> bool {
        true
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<EcsPowerSchedule>> {
        self.schedules
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn calendar(&self, namespace: &str, name: &str) -> Option<Arc<EcsHolidayCalendar>> {
        self.calendars
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}
