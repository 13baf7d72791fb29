//! The decision: a pure function of (spec, observed instance, previous status, now).
//!
//! Nothing here does I/O, so every rule is tested exhaustively in this file. The reconciler
//! observes, calls [`decide`], carries out the [`Step`] and records the outcome.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{DriftPolicy, EcsInstanceSpec, EcsInstanceStatus, PowerState, RebootMode};
use crate::controller::clock::elapsed;
use crate::controller::config::Timings;
use crate::controller::reconcile::conditions;
use crate::controller::reconcile::tokens::{self, Judged};
use crate::ordering::{self, Change, Hold, Peers};
use ecs_client::{
    Instance, InstanceStatus, PowerAction, PowerRequest, RebootOptions, StartOptions, StopOptions,
};

/// Everything a decision is made from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts<'a> {
    pub spec: &'a EcsInstanceSpec,
    /// The power state to converge to: `spec.powerState`, or what the schedule (or an override)
    /// says now. Resolved by the reconciler, so the decision never reads a clock or a schedule.
    pub desired: PowerState,
    pub paused: bool,
    /// `metadata.generation` of the object decided on (a token is adopted only as created).
    pub generation: Option<i64>,
    /// Its `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    pub status: &'a EcsInstanceStatus,
    /// `None`: DescribeInstances does not know the instance.
    pub instance: Option<&'a Instance>,
    pub now: Timestamp,
    /// The backoff window no longer applies (the spec or the credentials changed).
    pub backoff_reset: bool,
    pub timings: &'a Timings,
}

/// A mutating ECS call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// StartInstance. `satisfies_token`: a pending reboot token that the boot fulfils.
    Start {
        options: StartOptions,
        satisfies_token: Option<String>,
    },
    /// StopInstance.
    Stop { options: StopOptions },
    /// RebootInstance, carrying out `token`. `start_time_before` is recorded (with the token) in
    /// status before the call.
    Reboot {
        options: RebootOptions,
        token: String,
        start_time_before: Option<String>,
    },
}

impl Mutation {
    /// The ECS call this mutation makes.
    pub(crate) fn request(&self) -> PowerRequest {
        match self {
            Self::Start { options, .. } => PowerRequest::Start(*options),
            Self::Stop { options } => PowerRequest::Stop(*options),
            Self::Reboot { options, .. } => PowerRequest::Reboot(*options),
        }
    }

    pub(crate) fn action(&self) -> PowerAction {
        self.request().action()
    }

    /// The reboot token this call carries out (a reboot, or a start that boots the instance),
    /// when it is for real (not a dry run). Such a call is recorded as in flight first.
    pub(crate) fn carried_token(&self) -> Option<&str> {
        match self {
            Self::Start {
                options,
                satisfies_token,
            } if !options.dry_run => satisfies_token.as_deref(),
            Self::Reboot { options, token, .. } if !options.dry_run => Some(token),
            _ => None,
        }
    }
}

/// Why the controller is waiting on the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// Starting, Stopping or Pending.
    Transition(InstanceStatus),
    /// A reboot was recorded as in flight and ECS does not show it yet.
    RebootUnconfirmed,
    /// The instance started inside the current minute: a reboot now could not be proven later.
    RecentStart,
    /// ECS reports a status this controller does not know.
    UnknownStatus,
}

/// What stops progress until a person acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Blocker {
    InstanceNotFound,
    /// A `security` lock (refuses Start and Reboot).
    SecurityLock,
    /// Any other operation lock (`financial`, `recycling`, …), by reason.
    Locked(Vec<String>),
}

/// The one thing to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The instance is where the spec wants it.
    Converged,
    /// Look again after `after`.
    Wait { reason: WaitReason, after: Duration },
    /// Call ECS.
    Call(Mutation),
    /// A call is due, but the backoff window of an earlier failure is still open.
    Backoff { until: Timestamp, due: Mutation },
    /// Progress needs a person.
    Blocked(Blocker),
    /// The paused annotation is set and a change would be due: report, don't act.
    Paused { due: Option<Mutation> },
    /// `spec.driftPolicy: Report` and the instance drifted: report, don't act. `due`: what
    /// `Correct` would call now (`None` while the instance is still moving away).
    Drifted { due: Option<Mutation> },
    /// A start or stop is due, and `spec.startAfter` holds it (see [`ordered`]).
    Held(Hold),
}

/// Which way an instance drifted: what the other hand did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Started (or starting) while `Stopped` is desired.
    Started,
    /// Stopped (or stopping) while `Running` is desired.
    Stopped,
}

impl Direction {
    /// The metric's `direction` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Stopped => "stopped",
        }
    }
}

/// The instance left the desired state the controller had brought it to, and not by the
/// controller's hand (see [`drift`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Drift {
    pub direction: Direction,
    /// What ECS shows now.
    pub seen: InstanceStatus,
}

/// How a reboot token came to be settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// ECS shows the reboot that was in flight (a later StartTime, or a transition).
    Rebooted,
    /// The desired state is Stopped: a reboot makes no sense, the token is recorded as skipped.
    SkippedWhileStopped,
    /// In the history: done before, never again (a GitOps revert is not a request).
    AlreadyDone,
    /// A time token the instance booted after.
    BootedAfter,
    /// Present when the controller first saw the object.
    Adopted,
    /// Seen pending, and the spec moved on to another token before it was carried out.
    Superseded,
}

/// The decision: a step, plus bookkeeping that holds whatever the step's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub step: Step,
    /// Reboot tokens to record as settled (the one in flight, the spec's), without a call.
    pub settled: Vec<(String, Settled)>,
    /// The in-flight reboot record is stale (no evidence after the grace): forget it.
    pub clear_in_flight: bool,
    /// The spec's token when it is a request not settled by this decision: recorded as seen
    /// (`status.pendingRebootToken`), so that if the spec moves on before it is carried out, it
    /// is superseded, not forgotten.
    pub pending: Option<String>,
    /// The instance drifted (whatever the policy made of it).
    pub drift: Option<Drift>,
}

/// The spec's reboot token and what [`tokens::judge`] says of it.
fn judged<'a>(facts: &Facts<'a>) -> Judged<'a> {
    let token = facts.spec.reboot.as_ref().map(|r| r.token.as_str());
    let seen = tokens::Seen {
        instance: facts.instance,
        generation: facts.generation,
        created: facts.created,
        now: facts.now,
    };
    tokens::judge(token, facts.status, seen)
}

/// The token the status saw pending, when the spec no longer asks for it and it is not settled:
/// superseded by the spec's newer token (or its removal).
fn superseded(facts: &Facts<'_>) -> Option<(String, Settled)> {
    let pending = facts.status.pending_reboot_token.as_deref()?;
    let spec_token = facts.spec.reboot.as_ref().map(|r| r.token.as_str());
    let in_flight = facts
        .status
        .reboot_in_flight
        .as_ref()
        .map(|f| f.token.as_str());
    (spec_token != Some(pending) && in_flight != Some(pending))
        .then(|| (pending.to_string(), Settled::Superseded))
}

/// A settlement without a call for what [`tokens::judge`] found, if any.
fn settled_without_call(judged: Judged<'_>) -> Option<(String, Settled)> {
    let (token, how) = match judged {
        Judged::Settled | Judged::Pending(_) => return None,
        Judged::AlreadyDone(t) => (t, Settled::AlreadyDone),
        Judged::BootedAfter(t) => (t, Settled::BootedAfter),
        Judged::Adopted(t) => (t, Settled::Adopted),
    };
    Some((token.to_string(), how))
}

/// Decides the next step. See the module docs and the tests for the rules.
pub(crate) fn decide(facts: &Facts<'_>) -> Decision {
    let Some(instance) = facts.instance else {
        // A token present at first sight is adopted even before ECS knows the instance.
        let judged = judged(facts);
        return Decision {
            step: Step::Blocked(Blocker::InstanceNotFound),
            settled: superseded(facts)
                .into_iter()
                .chain(settled_without_call(judged))
                .collect(),
            clear_in_flight: false,
            pending: pending_of(judged),
            drift: None,
        };
    };

    // 1. An in-flight reboot is settled from the instance alone, never from memory; a token
    //    seen pending that the spec no longer asks for is superseded.
    let mut settled: Vec<(String, Settled)> = superseded(facts).into_iter().collect();
    let mut clear_in_flight = false;
    if let Some(in_flight) = &facts.status.reboot_in_flight {
        if reboot_evident(instance, in_flight.start_time_before.as_deref()) {
            settled.push((in_flight.token.clone(), Settled::Rebooted));
        } else if elapsed(facts.now, in_flight.requested_at.0)
            < facts.timings.reboot_confirmation_grace
        {
            let wait = Step::Wait {
                reason: WaitReason::RebootUnconfirmed,
                after: facts.timings.transition_poll,
            };
            // A newer token waits too, seen: if the spec moves on, it is superseded.
            let pending = pending_of(judged(facts)).filter(|t| *t != in_flight.token);
            return Decision {
                step: wait,
                settled,
                clear_in_flight: false,
                pending,
                drift: None,
            };
        } else {
            clear_in_flight = true;
        }
    }

    // 2. The spec's token: done already (history, a later boot, adoption), or pending.
    let settled_now = settled
        .iter()
        .find(|(_, how)| *how == Settled::Rebooted)
        .map(|(t, _)| t.clone());
    let judged = judged(facts);
    let mut token = None;
    match judged {
        Judged::Pending(t) if Some(t) == settled_now.as_deref() => {}
        // Desired Stopped: a new token is skipped, not carried out.
        Judged::Pending(t) if facts.desired == PowerState::Stopped => {
            settled.push((t.to_string(), Settled::SkippedWhileStopped));
        }
        Judged::Pending(t) => token = Some(t),
        other => settled
            .extend(settled_without_call(other).filter(|(t, _)| Some(t) != settled_now.as_ref())),
    }

    let step = next_step(facts, instance, token);
    let drift = drift(facts, instance);
    let step = match step {
        // Report: what Correct would do, not done.
        Step::Call(due) if drift.is_some() && facts.spec.drift_policy == DriftPolicy::Report => {
            Step::Drifted { due: Some(due) }
        }
        Step::Wait {
            reason: WaitReason::Transition(_),
            ..
        } if drift.is_some() && facts.spec.drift_policy == DriftPolicy::Report => {
            Step::Drifted { due: None }
        }
        Step::Call(due) if facts.paused => Step::Paused { due: Some(due) },
        Step::Call(due) => match facts.status.retry.next_attempt_after.as_ref() {
            Some(until) if !facts.backoff_reset && until.0 > facts.now => Step::Backoff {
                until: until.0,
                due,
            },
            _ => Step::Call(due),
        },
        other => other,
    };
    Decision {
        step,
        settled,
        clear_in_flight,
        pending: token.map(str::to_string),
        drift,
    }
}

/// The ordered power change `step` is about to make: a start or a stop (never a reboot).
pub(crate) fn power_change(step: &Step) -> Option<Change> {
    match step {
        Step::Call(Mutation::Start { .. }) => Some(Change::Start),
        Step::Call(Mutation::Stop { .. }) => Some(Change::Stop),
        _ => None,
    }
}

/// `spec.startAfter` over a decision: a start or stop that must wait for its neighbours in
/// `peers` (the namespace's EcsInstances, or those [`Peers::gather`] picked) is
/// [`Step::Held`], with no call. Everything else the decision settled (tokens, drift) stands:
/// only the call waits. Reboots are not ordered.
pub(crate) fn ordered(mut decision: Decision, name: &str, peers: &Peers) -> Decision {
    if let Some(hold) =
        power_change(&decision.step).and_then(|change| ordering::hold(name, change, peers))
    {
        decision.step = Step::Held(hold);
    }
    decision
}

/// The token `judged` leaves pending.
fn pending_of(judged: Judged<'_>) -> Option<String> {
    match judged {
        Judged::Pending(t) => Some(t.to_string()),
        _ => None,
    }
}

/// Drift: the instance is out of (or moving out of) the desired state, while the status shows
/// the controller had brought it there for this same desired state and generation (Ready, or
/// drift already recorded), with no action of the controller's in flight. A new desired state
/// (a spec change, a schedule boundary, an override) is never drift: the status then describes
/// another generation or another desired state.
pub(crate) fn drift(facts: &Facts<'_>, instance: &Instance) -> Option<Drift> {
    use InstanceStatus::*;
    let direction = match (facts.desired, instance.status) {
        (PowerState::Stopped, Running | Starting) => Direction::Started,
        (PowerState::Running, Stopped | Stopping) => Direction::Stopped,
        _ => return None,
    };
    let status = facts.status;
    let same_target = status.observed_generation == facts.generation
        && status.desired_power_state == Some(facts.desired)
        && status.reboot_in_flight.is_none();
    let reached = match facts.desired {
        PowerState::Running => Running,
        PowerState::Stopped => Stopped,
    };
    let was_converged =
        status.drift.is_some() || (status.instance_status == Some(reached) && was_ready(status));
    (same_target && was_converged).then_some(Drift {
        direction,
        seen: instance.status,
    })
}

/// The status said Ready=True (the instance was in the desired state, nothing pending).
fn was_ready(status: &EcsInstanceStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == conditions::READY && c.status == "True")
}

fn next_step(facts: &Facts<'_>, instance: &Instance, token: Option<&str>) -> Step {
    let spec = facts.spec;
    let wait = |reason| Step::Wait {
        reason,
        after: facts.timings.transition_poll,
    };
    match (facts.desired, instance.status) {
        (_, InstanceStatus::Unknown) => wait(WaitReason::UnknownStatus),
        (
            _,
            status
            @ (InstanceStatus::Pending | InstanceStatus::Starting | InstanceStatus::Stopping),
        ) => wait(WaitReason::Transition(status)),
        (PowerState::Stopped, InstanceStatus::Stopped) => Step::Converged,
        (PowerState::Stopped, InstanceStatus::Running) => Step::Call(Mutation::Stop {
            options: stop_options(spec),
        }),
        (PowerState::Running, InstanceStatus::Stopped) => {
            if instance.is_security_locked() {
                return Step::Blocked(Blocker::SecurityLock);
            }
            // A start that carries a token is proven like a reboot, by a later StartTime.
            let wait = token.and_then(|_| recent_start(facts, instance));
            wait.unwrap_or_else(|| {
                Step::Call(Mutation::Start {
                    options: start_options(spec),
                    satisfies_token: token.map(str::to_string),
                })
            })
        }
        (PowerState::Running, InstanceStatus::Running) => match token {
            _ if instance.is_security_locked() => Step::Blocked(Blocker::SecurityLock),
            Some(token) => match recent_start(facts, instance) {
                Some(wait) => wait,
                None => Step::Call(Mutation::Reboot {
                    options: RebootOptions {
                        force: spec.reboot.as_ref().map(|r| r.mode) == Some(RebootMode::Hard),
                        dry_run: spec.dry_run,
                    },
                    token: token.to_string(),
                    start_time_before: instance.start_time.clone(),
                }),
            },
            None if !instance.locks.is_empty() => {
                Step::Blocked(Blocker::Locked(instance.lock_reasons()))
            }
            None => Step::Converged,
        },
    }
}

fn start_options(spec: &EcsInstanceSpec) -> StartOptions {
    StartOptions {
        init_local_disk: spec.start.as_ref().is_some_and(|s| s.init_local_disk),
        dry_run: spec.dry_run,
    }
}

fn stop_options(spec: &EcsInstanceSpec) -> StopOptions {
    StopOptions {
        force: spec.stop.as_ref().is_some_and(|s| s.force),
        stopped_mode: spec.stop.as_ref().map(|s| s.stopped_mode),
        dry_run: spec.dry_run,
    }
}

/// Evidence that a reboot happened since `start_time_before` was seen: a later StartTime, or the
/// instance caught in the middle of it.
fn reboot_evident(instance: &Instance, start_time_before: Option<&str>) -> bool {
    if matches!(
        instance.status,
        InstanceStatus::Stopping | InstanceStatus::Starting
    ) {
        return true;
    }
    let before = start_time_before.and_then(ecs_client::types::parse_ecs_time);
    match (instance.start_timestamp(), before) {
        (Some(now), Some(before)) => now > before,
        (Some(_), None) => true,
        _ => false,
    }
}

/// A wait while the instance's StartTime minute lasts: a boot sent now (a reboot, or a start
/// that carries a token) would get the same StartTime, so a later look could not prove it.
fn recent_start(facts: &Facts<'_>, instance: &Instance) -> Option<Step> {
    let not_before = reboot_not_before(instance, facts.timings)?;
    (not_before > facts.now).then(|| Step::Wait {
        reason: WaitReason::RecentStart,
        after: elapsed(not_before, facts.now).max(Duration::from_secs(1)),
    })
}

/// The earliest time a reboot may be sent: past the end of the StartTime minute plus a margin.
fn reboot_not_before(instance: &Instance, timings: &Timings) -> Option<Timestamp> {
    let start = instance.start_timestamp()?;
    let minute_end = start
        .checked_add(jiff::SignedDuration::from_secs(60))
        .ok()?;
    minute_end
        .checked_add(jiff::SignedDuration::try_from(timings.start_time_margin).ok()?)
        .ok()
}

#[cfg(test)]
mod tests;
