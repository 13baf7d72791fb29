//! Building the next status (and the events that go with it) from what happened.
//!
//! Pure: the reconciler feeds it the observation, the decision and the call's outcome, and
//! writes out what it builds.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};

use super::backoff::retry_delay;
use super::decide::{Decision, Settled};
use super::health::{self, Verdict, verdict_for_error};
use crate::api::{ActionKind, EcsInstanceStatus, LastAction, RetryStatus};
use ecs_client::{EcsError, ErrorClass, Instance};

/// What a failure records: its code and class (for the backoff), the event, the verdict.
struct Failure<'a> {
    code: &'a str,
    class: ErrorClass,
    retry_after: Option<Duration>,
    action: &'a str,
    note: String,
    verdict: Verdict,
}

/// The next status of one object, under construction.
pub struct Record {
    pub status: EcsInstanceStatus,
    previous_conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    generation: Option<i64>,
    now: Timestamp,
    verdict: Option<Verdict>,
    events: Vec<Event>,
}

impl Record {
    pub fn new(previous: &EcsInstanceStatus, generation: Option<i64>, now: Timestamp) -> Self {
        let mut status = previous.clone();
        status.observed_generation = generation;
        Self {
            previous_conditions: previous.conditions.clone(),
            status,
            generation,
            now,
            verdict: None,
            events: Vec::new(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Forget the backoff (the spec or the credentials changed).
    pub fn reset_backoff(&mut self) {
        self.status.retry = RetryStatus::default();
    }

    /// What ECS reported of the instance.
    pub fn observed(&mut self, instance: Option<&Instance>) {
        match instance {
            Some(i) => {
                self.status.instance_status = Some(i.status);
                self.status.start_time = i.start_time.clone();
                self.status.lock_reasons = i.lock_reasons();
            }
            None => {
                self.status.instance_status = Some(ecs_client::InstanceStatus::Unknown);
                self.status.lock_reasons.clear();
            }
        }
    }

    /// Token bookkeeping the decision settled, whatever the step's outcome.
    pub fn settle(&mut self, decision: &Decision) {
        if decision.clear_in_flight {
            self.status.reboot_in_flight = None;
        }
        if let Some((token, how)) = &decision.settle_token {
            self.status.last_reboot_token = Some(token.clone());
            if self
                .status
                .reboot_in_flight
                .as_ref()
                .is_some_and(|f| &f.token == token)
            {
                self.status.reboot_in_flight = None;
            }
            if *how == Settled::SkippedWhileStopped {
                self.event(
                    EventType::Normal,
                    "RebootSkipped",
                    "Reboot",
                    format!(
                        "Reboot token {token:?} recorded without a reboot: the desired power state is Stopped."
                    ),
                );
            }
        }
    }

    pub fn verdict(&mut self, verdict: Verdict) {
        self.verdict = Some(verdict);
    }

    /// Keep the conditions as they are (a backoff window is open; they still describe why).
    pub fn keep_conditions(&mut self) {
        self.verdict = None;
    }

    /// A mutating call (or a step) went through: the backoff is over.
    pub fn succeeded(&mut self) {
        self.status.retry = RetryStatus::default();
    }

    /// ECS accepted a mutating call.
    pub fn accepted(
        &mut self,
        action: ActionKind,
        request_id: &str,
        token: Option<String>,
        dry_run: bool,
    ) {
        self.status.last_action = Some(LastAction {
            action,
            request_id: request_id.to_string(),
            time: Time(self.now),
            token,
            dry_run,
        });
        self.succeeded();
    }

    /// A call failed. Records the backoff and the verdict, and returns how long to wait.
    /// `jitter` in `[0, 1)` spreads retries of many objects apart.
    pub fn failed(
        &mut self,
        what: &str,
        err: &EcsError,
        secret_version: Option<String>,
        jitter: f64,
    ) -> Duration {
        self.fail(
            Failure {
                code: err.code(),
                class: err.class(),
                retry_after: err.as_api().and_then(|api| api.retry_after),
                action: what,
                note: format!("{what} failed: {err}"),
                verdict: verdict_for_error(err),
            },
            secret_version,
            jitter,
        )
    }

    /// A problem with the credentials Secret itself (missing, or missing a key).
    pub fn credentials_problem(
        &mut self,
        message: String,
        secret_version: Option<String>,
        jitter: f64,
    ) -> Duration {
        self.fail(
            Failure {
                code: "CredentialsInvalid",
                class: ErrorClass::Credentials,
                retry_after: None,
                action: "LoadCredentials",
                note: message.clone(),
                verdict: Verdict::Stalled {
                    why: health::Stall::CredentialsInvalid,
                    message,
                },
            },
            secret_version,
            jitter,
        )
    }

    /// The backoff, a Warning event (once per new error code) and the verdict of a failure.
    fn fail(
        &mut self,
        failure: Failure<'_>,
        secret_version: Option<String>,
        jitter: f64,
    ) -> Duration {
        let count = self.status.retry.count.saturating_add(1);
        let delay = retry_delay(failure.class, count, failure.retry_after, jitter);
        let repeated = self.status.retry.last_error_code.as_deref() == Some(failure.code);
        self.status.retry = RetryStatus {
            count,
            next_attempt_after: Some(Time(self.after(delay))),
            last_error_code: Some(failure.code.to_string()),
            secret_version,
        };
        if !repeated {
            self.event(
                EventType::Warning,
                failure.code,
                failure.action,
                failure.note,
            );
        }
        self.verdict(failure.verdict);
        delay
    }

    pub fn event(&mut self, type_: EventType, reason: &str, action: &str, note: String) {
        self.events.push(Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        });
    }

    fn after(&self, delay: Duration) -> Timestamp {
        jiff::SignedDuration::try_from(delay)
            .ok()
            .and_then(|d| self.now.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX)
    }

    /// The finished status and the events to publish.
    pub fn finish(mut self) -> (EcsInstanceStatus, Vec<Event>) {
        if let Some(verdict) = &self.verdict {
            self.status.conditions = health::conditions(
                verdict,
                self.generation,
                &self.previous_conditions,
                self.now,
            );
        } else {
            // Conditions kept: only their observedGeneration follows the spec.
            for c in &mut self.status.conditions {
                c.observed_generation = self.generation;
            }
        }
        (self.status, self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecs_client::ApiError;

    fn refused(code: &str, http_status: u16) -> EcsError {
        EcsError::Api(ApiError {
            code: code.into(),
            message: "refused".into(),
            request_id: "req-1".into(),
            http_status,
            recommend: None,
            retry_after: None,
        })
    }

    /// The controller looks again exactly when the window it records ends: the requeue delay a
    /// failure returns is `nextAttemptAfter - now`. With `backoff::retry_delay` this is when a
    /// retry comes (5–6 s, then 10–12 s for InstanceNotReady).
    #[test]
    fn a_failure_requeues_for_exactly_the_window_it_records() {
        let now: Timestamp = "2026-11-22T10:30:00Z".parse().unwrap();
        let mut status = EcsInstanceStatus::default();
        for (failures, (low, high)) in [(1, (5, 6)), (2, (10, 12))] {
            let mut record = Record::new(&status, Some(1), now);
            let delay = record.failed(
                "StartInstance",
                &refused("InstanceNotReady", 403),
                None,
                0.7,
            );
            let (next, _) = record.finish();
            let until = next.retry.next_attempt_after.as_ref().expect("a window").0;
            assert_eq!(
                until,
                now.checked_add(jiff::SignedDuration::try_from(delay).unwrap())
                    .unwrap()
            );
            assert_eq!(next.retry.count, failures);
            assert!(
                delay >= Duration::from_secs(low) && delay <= Duration::from_secs(high),
                "failure {failures}: {delay:?}"
            );
            status = next;
        }
    }
}
