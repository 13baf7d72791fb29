//! The EcsPowerSchedule status controller: each schedule's `status` (what it says now, its
//! next transition, how many instances follow it, Ready or Stalled), requeued at the next
//! transition.
//!
//! A second kube-runtime Controller beside the EcsInstance one, in the same leader-elected run.
//! It is triggered by instances that start or stop following a schedule
//! ([`FollowerChanges`](crate::controller::k8s::schedule_cache::FollowerChanges)), so the count
//! is current without a second watch of EcsInstances, and by calendars that appear, change or
//! vanish ([`CalendarWatch`](crate::controller::k8s::calendar_cache::CalendarWatch)); it reads
//! the time from the same [`ScheduleClock`] and the calendars from the same cache as the
//! reconciles, so the two never disagree on which window is open.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use crate::api::power_schedule::{EcsPowerScheduleStatus, NextTransition};
use crate::api::{EcsInstance, EcsPowerSchedule};
use crate::controller::clock::{ScheduleClock, elapsed};
use crate::controller::config::Config;
use crate::controller::k8s::cluster::{Written, patch_status_of, scoped_api};
use crate::controller::k8s::schedule_cache::followers;
use crate::controller::listed::Listed;
use crate::controller::reconcile::conditions::{self, Stall, Verdict};
use crate::controller::reconcile::desired::{self, Schedules};
use crate::schedule::CompileError;

/// What the schedule status controller shares.
struct StatusContext {
    client: Client,
    instances: Store<EcsInstance>,
    instances_listed: Listed,
    /// The calendars (the schedule cache's): a schedule is compiled as its followers'
    /// reconciles compile it.
    schedules: Arc<dyn Schedules>,
    clock: ScheduleClock,
    resync: Duration,
}

#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("EcsPowerSchedule {0} has no namespace")]
    NoNamespace(String),
    #[error("writing status: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the schedule status controller until it is dropped (with the EcsInstance controller's
/// run). `followers_changed` names the schedules an instance started or stopped following;
/// `instances` is the EcsInstance store.
pub(crate) async fn run(
    client: Client,
    config: &Config,
    clock: ScheduleClock,
    instances: Store<EcsInstance>,
    instances_listed: Listed,
    followers_changed: impl Stream<Item = ObjectRef<EcsPowerSchedule>> + Send + 'static,
    schedules: Arc<dyn Schedules>,
) {
    let api = scoped_api(client.clone(), config.namespace.as_deref());
    let ctx = Arc::new(StatusContext {
        client,
        instances,
        instances_listed,
        schedules,
        clock,
        resync: config.resync,
    });
    Controller::new(api, watcher::Config::default())
        .reconcile_on(followers_changed)
        .run(reconcile_status, status_error, ctx)
        .for_each(|result| {
            match result {
                Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                Err(err) => warn!(error = %err, "schedule status controller"),
            }
            std::future::ready(())
        })
        .await;
}

async fn reconcile_status(
    obj: Arc<EcsPowerSchedule>,
    ctx: Arc<StatusContext>,
) -> Result<Action, StatusError> {
    let namespace = obj
        .namespace()
        .ok_or_else(|| StatusError::NoNamespace(obj.name_any()))?;
    // Before the calendars are listed, one not found may just not be known yet. If the run
    // ends first, they never will be: write nothing (the next run's status controller will).
    if !(ctx.instances_listed.wait().await && ctx.schedules.ready().await) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let now = ctx.clock.now();
    let count = followers(&ctx.instances, &obj).len();
    let (status, next) = status_at(
        &obj,
        ctx.schedules.as_ref(),
        u32::try_from(count).unwrap_or(u32::MAX),
        now,
    );
    if obj.status.as_ref() != Some(&status)
        && patch_status_of(ctx.client.clone(), &namespace, obj.as_ref(), &status).await?
            == Written::Conflict
    {
        debug!(schedule = %obj.name_any(), "changed since it was read; looking again");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let delay = next.map_or(ctx.resync, |at| elapsed(at, now).min(ctx.resync));
    Ok(Action::requeue(delay))
}

fn status_error(obj: Arc<EcsPowerSchedule>, err: &StatusError, _: Arc<StatusContext>) -> Action {
    warn!(schedule = %obj.name_any(), error = %err, "schedule status not written; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The status of `obj` at `now` (with the calendars `schedules` holds), followed by `instances`
/// EcsInstances, and when it next changes.
pub(crate) fn status_at(
    obj: &EcsPowerSchedule,
    schedules: &dyn Schedules,
    instances: u32,
    now: Timestamp,
) -> (EcsPowerScheduleStatus, Option<Timestamp>) {
    let generation = obj.metadata.generation;
    let previous = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let namespace = obj.namespace().unwrap_or_default();
    let (power_state, next_transition, verdict) = match desired::compile(
        &obj.spec, &namespace, schedules,
    ) {
        Ok(schedule) => {
            let state = schedule.state_at(now);
            let next = schedule.next_transition(now);
            let message = match &next {
                Some(t) => format!(
                    "{} now; {} from {} ({} local).",
                    state.as_str(),
                    t.power_state.as_str(),
                    t.at,
                    schedule
                        .zone()
                        .to_datetime(t.at)
                        .strftime("%a %Y-%m-%d %H:%M")
                ),
                None => format!("{} now; the state never changes.", state.as_str()),
            };
            let next = next.map(|t| NextTransition {
                power_state: t.power_state,
                time: Time(t.at),
            });
            let verdict = Verdict::Ready {
                reason: "ScheduleValid",
                message,
            };
            (Some(state), next, verdict)
        }
        Err(CompileError::CalendarNotFound { name, index }) => {
            let verdict = Verdict::Stalled {
                why: Stall::CalendarNotFound,
                message: format!(
                    "EcsHolidayCalendar {namespace}/{name} (spec.calendars[{index}]) does not exist: create it, or remove it from spec.calendars. The EcsInstances that follow this schedule are neither started nor stopped until then."
                ),
            };
            (None, None, verdict)
        }
        Err(CompileError::Invalid(invalid)) => {
            let verdict = Verdict::Stalled {
                why: Stall::ScheduleInvalid,
                message: format!(
                    "{invalid}. The EcsInstances that follow it are neither started nor stopped until it is fixed."
                ),
            };
            (None, None, verdict)
        }
    };
    let at = next_transition.as_ref().map(|t| t.time.0);
    let status = EcsPowerScheduleStatus {
        observed_generation: generation,
        power_state,
        next_transition,
        instances: Some(instances),
        conditions: conditions::conditions(&verdict, generation, previous, now)
            .into_iter()
            .filter(|c| c.type_ != conditions::RECONCILING)
            .collect(),
    };
    (status, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PowerState;
    use crate::testing::{FakeSchedules, office_hours};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn stalled(
        status: &EcsPowerScheduleStatus,
    ) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        let conditions = &status.conditions;
        conditions.iter().find(|c| c.type_ == "Stalled").unwrap()
    }

    fn schedule(spec: crate::api::EcsPowerScheduleSpec) -> EcsPowerSchedule {
        let mut obj = EcsPowerSchedule::new("office-hours", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.generation = Some(3);
        obj
    }

    #[test]
    fn a_valid_schedule_says_what_now_and_what_next() {
        let (status, next) = status_at(
            &schedule(office_hours()),
            &FakeSchedules::default(),
            12,
            at("2026-11-27T03:00:00Z"),
        );
        assert_eq!(status.power_state, Some(PowerState::Running));
        assert_eq!(status.instances, Some(12));
        assert_eq!(status.observed_generation, Some(3));
        let t = status.next_transition.unwrap();
        assert_eq!(
            (t.power_state, t.time.0),
            (PowerState::Stopped, at("2026-11-27T12:00:00Z"))
        );
        assert_eq!(next, Some(at("2026-11-27T12:00:00Z")));
        let types: Vec<_> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(types, [("Ready", "True"), ("Stalled", "False")]);
        assert!(
            status.conditions[0]
                .message
                .contains("Fri 2026-11-27 20:00"),
            "{}",
            status.conditions[0].message
        );
    }

    /// A missing calendar: `Stalled`, reason `CalendarNotFound`, naming it; once it exists, the
    /// calendar's day (today) is what the schedule says now.
    #[test]
    fn a_schedule_whose_calendar_is_missing_is_stalled_naming_it() {
        let mut spec = office_hours();
        spec.calendars.push(crate::api::CalendarReference {
            name: "cn-holidays".into(),
            power_state: PowerState::Stopped,
        });
        let schedules = FakeSchedules::default();
        let now = at("2026-11-27T03:00:00Z");
        let (status, next) = status_at(&schedule(spec.clone()), &schedules, 2, now);
        assert_eq!((status.power_state, next), (None, None));
        let stalled = stalled(&status);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "CalendarNotFound")
        );
        assert!(
            stalled.message.starts_with(
                "EcsHolidayCalendar team/cn-holidays (spec.calendars[0]) does not exist"
            ),
            "{}",
            stalled.message
        );

        schedules.put_calendar(
            "team",
            "cn-holidays",
            crate::api::EcsHolidayCalendarSpec {
                days: vec![crate::api::CalendarDay {
                    date: "2026-11-27".into(),
                    name: Some("Company day".into()),
                }],
            },
        );
        let (status, next) = status_at(&schedule(spec), &schedules, 2, now);
        assert_eq!(status.power_state, Some(PowerState::Stopped));
        assert_eq!(next, Some(at("2026-11-30T00:00:00Z")), "Monday 08:00 local");
    }

    #[test]
    fn an_invalid_schedule_is_stalled_with_the_field_named() {
        let mut spec = office_hours();
        spec.running[0].to = "25:00".into();
        let (status, next) = status_at(
            &schedule(spec),
            &FakeSchedules::default(),
            0,
            at("2026-11-27T03:00:00Z"),
        );
        assert_eq!(
            (status.power_state, &status.next_transition, next),
            (None, &None, None)
        );
        let stalled = stalled(&status);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "ScheduleInvalid")
        );
        assert!(
            stalled.message.contains("spec.running[0].to"),
            "{}",
            stalled.message
        );
    }
}
