//! The EcsHolidayCalendar status controller: each calendar's `status` (how many days, the next
//! one on or after today, Ready or Stalled when a date is not a real date), requeued at the next
//! UTC midnight so that `Next` (a printer column) is true every day.
//!
//! A third kube-runtime Controller in the same leader-elected run as the EcsInstance and the
//! schedule status ones. It reads the time from the same [`ScheduleClock`] (the demo and the
//! tests move it), and the dates are checked by the same function a schedule's compile uses
//! ([`calendar_days`]), so a calendar Ready here never stalls a schedule for its dates.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use crate::api::{EcsHolidayCalendar, EcsHolidayCalendarStatus};
use crate::controller::clock::{ScheduleClock, elapsed};
use crate::controller::config::Config;
use crate::controller::k8s::cluster::{Written, patch_status_of, scoped_api};
use crate::controller::reconcile::conditions::{self, Stall, Verdict};
use crate::schedule::calendar_days;

struct StatusContext {
    client: Client,
    clock: ScheduleClock,
    resync: Duration,
}

#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("EcsHolidayCalendar {0} has no namespace")]
    NoNamespace(String),
    #[error("writing status: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the calendar status controller until it is dropped (with the run).
pub(crate) async fn run(client: Client, config: &Config, clock: ScheduleClock) {
    let api = scoped_api(client.clone(), config.namespace.as_deref());
    let ctx = Arc::new(StatusContext {
        client,
        clock,
        resync: config.resync,
    });
    Controller::new(api, watcher::Config::default())
        .run(reconcile_status, status_error, ctx)
        .for_each(|result| {
            match result {
                Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                Err(err) => warn!(error = %err, "calendar status controller"),
            }
            std::future::ready(())
        })
        .await;
}

async fn reconcile_status(
    obj: Arc<EcsHolidayCalendar>,
    ctx: Arc<StatusContext>,
) -> Result<Action, StatusError> {
    let namespace = obj
        .namespace()
        .ok_or_else(|| StatusError::NoNamespace(obj.name_any()))?;
    let now = ctx.clock.now();
    let (status, midnight) = status_at(&obj, now);
    if obj.status.as_ref() != Some(&status)
        && patch_status_of(ctx.client.clone(), &namespace, obj.as_ref(), &status).await?
            == Written::Conflict
    {
        debug!(calendar = %obj.name_any(), "changed since it was read; looking again");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(elapsed(midnight, now).min(ctx.resync)))
}

fn status_error(obj: Arc<EcsHolidayCalendar>, err: &StatusError, _: Arc<StatusContext>) -> Action {
    warn!(calendar = %obj.name_any(), error = %err, "calendar status not written; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The status of `obj` at `now`, and the next UTC midnight (when `next` may change).
pub(crate) fn status_at(
    obj: &EcsHolidayCalendar,
    now: Timestamp,
) -> (EcsHolidayCalendarStatus, Timestamp) {
    let generation = obj.metadata.generation;
    let previous = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let today = now.to_zoned(TimeZone::UTC).date();
    let midnight = today
        .tomorrow()
        .ok()
        .and_then(|day| day.to_zoned(TimeZone::UTC).ok())
        .map_or(Timestamp::MAX, |zoned| zoned.timestamp());
    let (next, verdict) = match calendar_days(&obj.name_any(), &obj.spec) {
        Ok(days) => {
            let next = days
                .range(today..)
                .next()
                .map(|(_, index)| obj.spec.days[*index].clone());
            let message = match &next {
                Some(day) => format!(
                    "{} days; the next: {}{}.",
                    days.len(),
                    day.date,
                    day.name
                        .as_ref()
                        .map(|name| format!(" ({name})"))
                        .unwrap_or_default()
                ),
                None => format!("{} days, none on or after today (UTC).", days.len()),
            };
            let verdict = Verdict::Ready {
                reason: "CalendarValid",
                message,
            };
            (next, verdict)
        }
        Err(errors) => {
            let verdict = Verdict::Stalled {
                why: Stall::InvalidSpec,
                message: format!(
                    "{}. The EcsPowerSchedules that use this calendar are stalled until it is fixed.",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            (None, verdict)
        }
    };
    let status = EcsHolidayCalendarStatus {
        observed_generation: generation,
        days: Some(u32::try_from(obj.spec.days.len()).unwrap_or(u32::MAX)),
        next,
        conditions: conditions::conditions(&verdict, generation, previous, now)
            .into_iter()
            .filter(|c| c.type_ != conditions::RECONCILING)
            .collect(),
    };
    (status, midnight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CalendarDay, EcsHolidayCalendarSpec};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn calendar(days: &[(&str, Option<&str>)]) -> EcsHolidayCalendar {
        let mut obj = EcsHolidayCalendar::new(
            "cn-holidays",
            EcsHolidayCalendarSpec {
                days: days
                    .iter()
                    .map(|(date, name)| CalendarDay {
                        date: date.to_string(),
                        name: name.map(str::to_string),
                    })
                    .collect(),
            },
        );
        obj.metadata.namespace = Some("team".into());
        obj.metadata.generation = Some(2);
        obj
    }

    fn condition<'a>(status: &'a EcsHolidayCalendarStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    /// On 2027-09-30 (UTC) the next day is National Day; on its day it still is (a day counts
    /// until it is over); the requeue is at the next UTC midnight.
    #[test]
    fn a_calendar_counts_its_days_and_names_the_next_one_on_or_after_today() {
        let obj = calendar(&[
            ("2027-01-01", Some("New Year")),
            ("2027-10-01", Some("National Day")),
            ("2027-10-02", None),
        ]);
        let (status, midnight) = status_at(&obj, at("2027-09-30T18:00:00Z"));
        assert_eq!(status.days, Some(3));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(
            status
                .next
                .as_ref()
                .map(|d| (d.date.as_str(), d.name.as_deref())),
            Some(("2027-10-01", Some("National Day")))
        );
        assert_eq!(midnight, at("2027-10-01T00:00:00Z"));
        assert_eq!(condition(&status, "Ready"), ("True", "CalendarValid"));
        let (status, _) = status_at(&obj, at("2027-10-01T23:59:00Z"));
        assert_eq!(status.next.unwrap().date, "2027-10-01");
        let (status, _) = status_at(&obj, at("2027-10-03T00:00:00Z"));
        assert_eq!(status.next, None, "every day is past");
    }

    #[test]
    fn a_date_that_is_not_a_real_date_stalls_the_calendar_naming_the_field() {
        let obj = calendar(&[("2027-01-01", None), ("2027-02-30", Some("Nope"))]);
        let (status, _) = status_at(&obj, at("2027-01-01T00:00:00Z"));
        assert_eq!(condition(&status, "Stalled"), ("True", "InvalidSpec"));
        let message = &status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .unwrap()
            .message;
        assert!(
            message.contains(
                "EcsHolidayCalendar cn-holidays spec.days[1].date: \"2027-02-30\" is not a date"
            ),
            "{message}"
        );
        assert_eq!(status.next, None);
        assert_eq!(status.days, Some(2));
    }
}
