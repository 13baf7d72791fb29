//! Building the next status (and the events that go with it) from what happened.
//!
//! Pure: the reconciler feeds it the observation, the decision and the call's outcome, and
//! writes out what it builds. Every change of status goes through a method here (its fields are
//! private), so what a reconcile may change is listed in one place: what ECS showed, the token
//! bookkeeping, the intent before a call, the call carried out or not sent, and the backoff.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::runtime::events::{Event, EventType};

use crate::api::{
    DriftPolicy, DriftStatus, EcsInstanceSpec, EcsInstanceStatus, LastAction, OverrideState,
    PowerState, RebootInFlight, RebootOutcome, RetryStatus,
};
use crate::controller::admission::Refusal;
use crate::controller::admission::owners::claim_time;
use crate::controller::reconcile::conditions::{self, Progress, Stall, Verdict};
use crate::controller::reconcile::decide::{Decision, Direction, Drift, Mutation, Settled, Step};
use crate::controller::reconcile::desired::{Desired, Problem};
use crate::controller::reconcile::ecs_retry::retry_delay;
use crate::controller::reconcile::tokens;
use crate::controller::truncate::{CODE_LIMIT, truncated, truncated_to};
use ecs_client::{Accepted, EcsError, ErrorClass, Instance, InstanceStatus, PowerAction};

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
pub(crate) struct NextStatus {
    status: EcsInstanceStatus,
    previous_conditions: Vec<Condition>,
    /// The drift the decision found, if any (see [`NextStatus::settle`]).
    drift: Option<Drift>,
    /// A drift to count in `ecs_power_controller_drift_corrections_total` (its event is out).
    drift_counted: Option<Direction>,
    generation: Option<i64>,
    now: Timestamp,
    /// In `[0, 1)`: spreads the retries of many objects apart.
    jitter: f64,
    /// `None`: keep the conditions as they are.
    verdict: Option<Verdict>,
    /// Another object owns the instance: this one holds no claim on it.
    duplicate: bool,
    /// The desired state this reconcile works towards (see [`NextStatus::desired`]).
    desired: Option<PowerState>,
    events: Vec<Event>,
}

impl NextStatus {
    pub(crate) fn new(
        previous: &EcsInstanceStatus,
        generation: Option<i64>,
        now: Timestamp,
        jitter: f64,
    ) -> Self {
        let mut status = previous.clone();
        status.observed_generation = generation;
        Self {
            previous_conditions: previous.conditions.clone(),
            drift: None,
            drift_counted: None,
            status,
            generation,
            now,
            jitter,
            verdict: None,
            duplicate: false,
            desired: None,
            events: Vec::new(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }

    /// Forget the backoff (the spec or the credentials changed).
    pub(crate) fn reset_backoff(&mut self) {
        self.status.retry = RetryStatus::default();
    }

    /// The desired state, its next change and the override, as resolved now. An override that
    /// has just expired or is invalid is reported by one event: the status remembers it, so
    /// later looks stay quiet.
    pub(crate) fn desired(&mut self, desired: &Desired) {
        self.desired = Some(desired.power_state);
        self.status.desired_power_state = Some(desired.power_state);
        self.status.next_transition = desired.next_transition.clone();
        let now = desired.power_override.clone();
        let changed = self.status.power_override != now;
        self.status.power_override = now;
        let Some(ov) = desired.power_override.as_ref().filter(|_| changed) else {
            return;
        };
        let until = ov
            .until
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let state = ov.power_state.map_or("-", PowerState::as_str);
        match ov.state {
            OverrideState::Active => self.event(
                EventType::Normal,
                "OverrideActive",
                "Override",
                format!(
                    "Held {state} until {until} by the override annotations, whatever the schedule says."
                ),
            ),
            OverrideState::Expired => self.event(
                EventType::Normal,
                "OverrideExpired",
                "Override",
                format!(
                    "The override to {state} ended at {until} and is ignored: the schedule decides again. Remove the override annotations to tidy up."
                ),
            ),
            OverrideState::Invalid => self.event(
                EventType::Warning,
                "OverrideInvalid",
                "Override",
                format!(
                    "Override ignored: {}",
                    ov.message.as_deref().unwrap_or("invalid annotations")
                ),
            ),
        }
    }

    /// The schedule cannot be followed: no desired state, and the object is stalled until
    /// the schedule exists and is valid. The backoff is left as it is.
    pub(crate) fn schedule_problem(&mut self, problem: &Problem) {
        self.status.desired_power_state = None;
        self.status.next_transition = None;
        let why = match problem {
            Problem::NotFound { .. } => Stall::ScheduleNotFound,
            Problem::Invalid { .. } | Problem::CalendarNotFound { .. } => Stall::ScheduleInvalid,
            Problem::NeitherOrBoth => Stall::InvalidSpec,
        };
        self.verdict = Some(Verdict::Stalled {
            why,
            message: problem.to_string(),
        });
    }

    /// What ECS reported of the instance.
    pub(crate) fn observed(&mut self, instance: Option<&Instance>) {
        match instance {
            Some(i) => {
                self.status.instance_status = Some(i.status);
                self.status.start_time = i.start_time.clone();
                self.status.lock_reasons = i.lock_reasons();
            }
            None => {
                self.status.instance_status = Some(InstanceStatus::Unknown);
                self.status.lock_reasons.clear();
            }
        }
    }

    /// Token bookkeeping the decision settled, and the drift it found, whatever the step's
    /// outcome. Drift is recorded as first seen; under `Report` its first sight is reported
    /// (under `Correct`, the correction is: [`NextStatus::carried_out`]).
    pub(crate) fn settle(&mut self, decision: &Decision, spec: &EcsInstanceSpec) {
        if decision.clear_in_flight {
            self.status.reboot_in_flight = None;
        }
        for (token, how) in &decision.settled {
            self.settle_token(token, *how);
        }
        self.status.pending_reboot_token = decision.pending.clone();
        self.drift = decision.drift;
        let Some(drift) = decision.drift else {
            self.status.drift = None;
            return;
        };
        if self.status.drift.is_some() {
            return;
        }
        self.status.drift = Some(DriftStatus {
            instance_status: drift.seen,
            seen_at: Time(self.now),
        });
        if spec.drift_policy == DriftPolicy::Report {
            let note = format!(
                "{} Not set back: spec.driftPolicy is Report.",
                self.drift_seen(drift, spec)
            );
            self.event(EventType::Warning, "DriftDetected", "Drift", note);
            self.drift_counted = Some(drift.direction);
        }
    }

    /// What was seen and when, for a drift event.
    fn drift_seen(&self, drift: Drift, spec: &EcsInstanceSpec) -> String {
        let (seen, at) = self
            .status
            .drift
            .as_ref()
            .map_or((drift.seen, self.now), |d| (d.instance_status, d.seen_at.0));
        let desired = self
            .desired
            .or(spec.power_state)
            .unwrap_or(PowerState::Running);
        let was = match drift.direction {
            Direction::Started => "started",
            Direction::Stopped => "stopped",
        };
        format!(
            "Instance {} was {was} outside the controller: seen {seen} at {at}, while {} is desired and the controller had brought it there.",
            spec.instance_id,
            desired.as_str(),
        )
    }

    /// A drift whose event went out this reconcile, to count in the drift metric.
    pub(crate) fn drift_counted(&self) -> Option<Direction> {
        self.drift_counted
    }

    /// Records one token settled without a call, with the event that says why.
    fn settle_token(&mut self, token: &str, how: Settled) {
        let in_flight = self.status.reboot_in_flight.take_if(|f| f.token == token);
        let now = Time(self.now);
        let (outcome, reason, note) = match how {
            Settled::Superseded => {
                tokens::supersede(&mut self.status, token, now);
                let note = format!(
                    "Reboot token {token:?} was replaced in the spec before it was carried out: recorded as superseded (setting it again will not reboot)."
                );
                self.event(EventType::Normal, "RebootTokenSuperseded", "Reboot", note);
                return;
            }
            // Done when it was sent (and recorded then, when the call's answer came back).
            Settled::Rebooted => {
                if tokens::recorded(&self.status, token).is_none() {
                    let sent = in_flight.map_or(now, |f| f.requested_at);
                    tokens::remember(&mut self.status, token, RebootOutcome::Rebooted, sent);
                }
                return;
            }
            Settled::AlreadyDone => {
                let note = match tokens::recorded(&self.status, token) {
                    Some(r) => format!(
                        "Reboot token {token:?} was already settled at {} ({}): not rebooting again. Set a new token to reboot.",
                        r.time.0,
                        r.outcome.as_str()
                    ),
                    None => {
                        format!("Reboot token {token:?} was already settled: not rebooting again.")
                    }
                };
                // The spec's token is settled; the history keeps when it was carried out.
                self.status.last_reboot_token = Some(token.to_string());
                self.event(EventType::Normal, "RebootTokenAlreadyDone", "Reboot", note);
                return;
            }
            Settled::SkippedWhileStopped => (
                RebootOutcome::Skipped,
                "RebootSkipped",
                format!(
                    "Reboot token {token:?} recorded without a reboot: the desired power state is Stopped."
                ),
            ),
            Settled::BootedAfter => (
                RebootOutcome::BootedAfter,
                "RebootTokenSatisfied",
                format!(
                    "Reboot token {token:?} recorded without a reboot: the instance booted after that time (StartTime {}).",
                    self.status.start_time.as_deref().unwrap_or("unknown")
                ),
            ),
            Settled::Adopted => (
                RebootOutcome::Adopted,
                "RebootTokenAdopted",
                format!(
                    "Reboot token {token:?} was already in the spec when the controller first saw this object: recorded as done without a reboot. Set a new token to reboot."
                ),
            ),
        };
        tokens::remember(&mut self.status, token, outcome, now);
        self.event(EventType::Normal, reason, "Reboot", note);
    }

    /// A step that makes no call: its verdict (a backoff keeps the conditions as they are, so
    /// they still say why). Converging ends the backoff.
    pub(crate) fn step(
        &mut self,
        step: &Step,
        spec: &EcsInstanceSpec,
        instance: Option<&Instance>,
    ) {
        if *step == Step::Converged {
            self.status.retry = RetryStatus::default();
        }
        let rebooting = self.status.reboot_in_flight.is_some()
            || self
                .status
                .last_action
                .as_ref()
                .is_some_and(|a| a.action == PowerAction::Reboot && !a.dry_run);
        let desired = self
            .desired
            .or(spec.power_state)
            .unwrap_or(PowerState::Running);
        self.verdict = Verdict::for_step(step, spec, desired, instance, rebooting);
    }

    /// Before a call that carries out a reboot token (RebootInstance, or a StartInstance that
    /// satisfies one): the intent, recorded here and returned so the reconciler can persist it
    /// before the call. `None`: the call carries no token and needs no intent.
    pub(crate) fn intend(
        &mut self,
        mutation: &Mutation,
        instance: Option<&Instance>,
    ) -> Option<RebootInFlight> {
        let token = mutation.carried_token()?;
        let intent = RebootInFlight {
            token: token.to_string(),
            start_time_before: instance.and_then(|i| i.start_time.clone()),
            requested_at: Time(self.now),
        };
        self.status.reboot_in_flight = Some(intent.clone());
        Some(intent)
    }

    /// The call was not sent (the gates closed while it waited in a batch): a reboot's intent is
    /// taken back, nothing reached ECS.
    pub(crate) fn not_sent(&mut self, mutation: &Mutation) {
        if let Some(token) = mutation.carried_token() {
            self.status.reboot_in_flight.take_if(|f| f.token == token);
        }
    }

    /// ECS accepted the call (for real: see [`NextStatus::dry_run_passed`]). `spec` words the drift
    /// event.
    pub(crate) fn carried_out(
        &mut self,
        mutation: &Mutation,
        accepted: &Accepted,
        spec: &EcsInstanceSpec,
    ) {
        let action = mutation.action();
        let name = action.single();
        let request_id = accepted.request_id.as_str();
        let token = match mutation {
            Mutation::Start {
                satisfies_token, ..
            } => satisfies_token.clone(),
            Mutation::Stop { .. } => None,
            Mutation::Reboot { token, .. } => Some(token.clone()),
        };
        if let Some(token) = &token {
            let outcome = match action {
                PowerAction::Reboot => RebootOutcome::Rebooted,
                _ => RebootOutcome::Started,
            };
            tokens::remember(&mut self.status, token, outcome, Time(self.now));
            // The intent stays until ECS shows the boot: until then a new StartTime may be this
            // one, and is no evidence of a boot after a newer token (see `tokens`).
        }
        // A correction of drift: reported with what was seen and when, counted, and over (the
        // instance now moves by the controller's hand).
        if let Some(drift) = self.drift.take()
            && matches!(action, PowerAction::Start | PowerAction::Stop)
        {
            let note = format!(
                "{} Setting it back to {} (RequestId {request_id}).",
                self.drift_seen(drift, spec),
                action_target(action)
            );
            self.event(EventType::Warning, "DriftCorrected", name, note);
            self.drift_counted = Some(drift.direction);
            self.status.drift = None;
        }
        let reason = match action {
            PowerAction::Start => "Starting",
            PowerAction::Stop => "Stopping",
            PowerAction::Reboot => "Rebooting",
        };
        self.event(
            EventType::Normal,
            reason,
            name,
            format!("{name} accepted (RequestId {request_id})"),
        );
        self.last_action(action, request_id, token, false);
        self.verdict = Some(Verdict::accepted(action, request_id));
    }

    /// `spec.dryRun`: ECS checked the call and changed nothing.
    pub(crate) fn dry_run_passed(&mut self, mutation: &Mutation, accepted: &Accepted) {
        let action = mutation.action();
        let name = action.single();
        let request_id = accepted.request_id.as_str();
        self.last_action(action, request_id, None, true);
        self.event(
            EventType::Normal,
            "DryRun",
            name,
            format!("Dry run of {name} passed (RequestId {request_id}); nothing changed."),
        );
        self.verdict = Some(Verdict::dry_run(action, request_id));
    }

    /// ECS refused the call, or its answer was lost. A token-carrying call that may have gone
    /// out stays recorded as in flight (the next look decides from the instance); one that
    /// surely was not carried out is forgotten so it is sent again. Returns how long to wait.
    pub(crate) fn not_carried_out(
        &mut self,
        mutation: &Mutation,
        err: &EcsError,
        secret_version: Option<String>,
    ) -> Duration {
        if mutation.carried_token().is_some() && !may_have_executed(err) {
            self.status.reboot_in_flight = None;
        }
        self.failed(mutation.action().single(), err, secret_version)
    }

    /// A call failed. Records the backoff and the verdict, and returns how long to wait.
    pub(crate) fn failed(
        &mut self,
        what: &str,
        err: &EcsError,
        secret_version: Option<String>,
    ) -> Duration {
        let verdict = Verdict::for_error(err);
        // Out of capacity is rare and unfamiliar: its event says what to do, as the condition.
        let note = match &verdict {
            Verdict::Progressing {
                why: Progress::InsufficientCapacity,
                message,
            } => format!("{what} failed: {message}"),
            _ => format!("{what} failed: {err}"),
        };
        self.fail(
            Failure {
                code: err.code(),
                class: err.class(),
                retry_after: err.as_api().and_then(|api| api.retry_after),
                action: what,
                note,
                verdict,
            },
            secret_version,
        )
    }

    /// A problem with the credentials Secret itself (missing, or missing a key).
    pub(crate) fn credentials_problem(
        &mut self,
        message: String,
        secret_version: Option<String>,
    ) -> Duration {
        self.fail(
            Failure {
                code: "CredentialsInvalid",
                class: ErrorClass::Credentials,
                retry_after: None,
                action: "LoadCredentials",
                note: message.clone(),
                verdict: Verdict::credentials(message),
            },
            secret_version,
        )
    }

    /// The object's claim on its instance, recorded (before a call) at `at`.
    pub(crate) fn claimed(&mut self, at: Timestamp) {
        self.status.claimed_at = Some(MicroTime(at));
    }

    /// The gates refused the object the use of ECS (see `admission`): stalled, and a Warning
    /// event when it was not already stalled for this reason. A duplicate withdraws its claim.
    pub(crate) fn refused(&mut self, refusal: &Refusal, spec: &EcsInstanceSpec) {
        if let Refusal::DuplicateInstance { .. } = refusal {
            self.duplicate = true;
            self.status.claimed_at = None;
        }
        let verdict = Verdict::refused(refusal, spec);
        if let Verdict::Stalled { why, message } = &verdict {
            let reason = why.reason();
            let already = self.previous_conditions.iter().any(|c| {
                c.type_ == conditions::STALLED && c.status == "True" && c.reason == reason
            });
            if !already {
                self.event(EventType::Warning, reason, "Admission", message.clone());
            }
        }
        self.verdict = Some(verdict);
    }

    /// The call went through: the backoff is over.
    fn last_action(
        &mut self,
        action: PowerAction,
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
        self.status.retry = RetryStatus::default();
    }

    /// The backoff, a Warning event (once per new error code) and the verdict of a failure.
    fn fail(&mut self, failure: Failure<'_>, secret_version: Option<String>) -> Duration {
        let count = self.status.retry.count.saturating_add(1);
        let delay = retry_delay(failure.class, count, failure.retry_after, self.jitter);
        // The code is ECS's text too: bounded like a message, to the length of a reason.
        let code = truncated_to(failure.code.to_string(), CODE_LIMIT);
        let repeated = self.status.retry.last_error_code.as_ref() == Some(&code);
        self.status.retry = RetryStatus {
            count,
            next_attempt_after: Some(Time(self.after(delay))),
            last_error_code: Some(code.clone()),
            secret_version,
        };
        if !repeated {
            self.event(EventType::Warning, &code, failure.action, failure.note);
        }
        self.verdict = Some(failure.verdict);
        delay
    }

    fn event(&mut self, type_: EventType, reason: &str, action: &str, note: String) {
        self.events.push(Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncated(note)),
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

    /// The finished status and the events to publish. An owner that has not claimed its
    /// instance yet claims it now (see `admission::owners`).
    pub(crate) fn finish(mut self) -> (EcsInstanceStatus, Vec<Event>) {
        if !self.duplicate && self.status.claimed_at.is_none() {
            self.status.claimed_at = Some(MicroTime(claim_time(self.now)));
        }
        if let Some(verdict) = &self.verdict {
            self.status.conditions = conditions::conditions(
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

/// The state an accepted Start or Stop sets the instance back to.
fn action_target(action: PowerAction) -> &'static str {
    match action {
        PowerAction::Stop => PowerState::Stopped.as_str(),
        PowerAction::Start | PowerAction::Reboot => PowerState::Running.as_str(),
    }
}

/// Transient failures (5xx, no answer, unreadable answer) leave a mutation's fate unknown;
/// not a failure before the request left (no connection, no credentials): ECS never saw it.
fn may_have_executed(err: &EcsError) -> bool {
    err.class() == ErrorClass::Transient && !ecs_client::retry::proves_not_executed(err)
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

    fn reboot(token: &str) -> Mutation {
        Mutation::Reboot {
            options: Default::default(),
            token: token.into(),
            start_time_before: Some("2026-11-22T09:00Z".into()),
        }
    }

    /// A reboot whose connection was never made was not sent: its token is not kept in flight
    /// (that would wait out the grace for a reboot that cannot have happened), while one whose
    /// answer was lost may have been carried out and stays in flight.
    #[test]
    fn a_reboot_that_never_left_is_not_in_flight_but_a_lost_answer_is() {
        let now: Timestamp = "2026-11-22T10:30:00Z".parse().unwrap();
        let connect = EcsError::Connect {
            action: "RebootInstance".into(),
            endpoint: "https://ecs.cn-hangzhou.aliyuncs.com".into(),
            detail: "connection refused".into(),
        };
        let lost = EcsError::Transport {
            action: "RebootInstance".into(),
            endpoint: "https://ecs.cn-hangzhou.aliyuncs.com".into(),
            detail: "connection reset".into(),
        };
        for (err, in_flight) in [(connect, false), (lost, true)] {
            let status = EcsInstanceStatus {
                reboot_in_flight: Some(crate::api::RebootInFlight {
                    token: "t1".into(),
                    start_time_before: Some("2026-11-22T09:00Z".into()),
                    requested_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
                }),
                ..EcsInstanceStatus::default()
            };
            let mut record = NextStatus::new(&status, Some(1), now, 0.5);
            record.not_carried_out(&reboot("t1"), &err, None);
            let (next, _) = record.finish();
            assert_eq!(next.reboot_in_flight.is_some(), in_flight, "{err}");
        }
    }

    /// The controller looks again exactly when the window it records ends: the requeue delay a
    /// failure returns is `nextAttemptAfter - now`. With `ecs_retry::retry_delay` this is when a
    /// retry comes (5–6 s, then 10–12 s for InstanceNotReady).
    #[test]
    fn a_failure_requeues_for_exactly_the_window_it_records() {
        let now: Timestamp = "2026-11-22T10:30:00Z".parse().unwrap();
        let mut status = EcsInstanceStatus::default();
        for (failures, (low, high)) in [(1, (5, 6)), (2, (10, 12))] {
            let mut record = NextStatus::new(&status, Some(1), now, 0.7);
            let delay = record.failed("StartInstance", &refused("InstanceNotReady", 403), None);
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
