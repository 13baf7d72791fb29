//! What an EcsInstance's conditions say: every [`Verdict`] the controller can reach, with the
//! text a person reads, and the three kstatus conditions, `Ready`, `Reconciling` and `Stalled`,
//! built from it.
//!
//! `kubectl wait --for=condition=Ready`, Flux and Argo CD read these. Exactly one verdict holds
//! at a time, so the conditions can never contradict each other. This is the one module that
//! maps a decision's [`Step`], a call's outcome or a failure to a verdict.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{EcsInstanceSpec, PAUSED_ANNOTATION, PowerState};
use crate::controller::admission::Refusal;
use crate::controller::reconcile::decide::{Blocker, Mutation, Step, WaitReason};
use crate::controller::truncate::truncated;
use crate::ordering::Hold;
use ecs_client::{EcsError, ErrorClass, Instance, InstanceStatus, PowerAction};

pub(crate) const READY: &str = "Ready";
pub(crate) const RECONCILING: &str = "Reconciling";
pub(crate) const STALLED: &str = "Stalled";

/// Why a change is under way (`Reconciling=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    Starting,
    Stopping,
    Rebooting,
    WaitingForInstance,
    Retrying,
    /// ECS has no stock (or quota) to start the instance now; retried slowly.
    InsufficientCapacity,
    /// `spec.startAfter`: a start or stop waits for other EcsInstances.
    WaitingForDependency,
}

/// Why progress needs a person (`Stalled=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    InstanceLockedForSecurity,
    InstanceLocked,
    InstanceNotFound,
    InsufficientBalance,
    InstanceExpired,
    CredentialsInvalid,
    Forbidden,
    DiskError,
    InvalidSpec,
    DuplicateInstance,
    CredentialsNotPermitted,
    InstanceNotClaimed,
    ScheduleNotFound,
    ScheduleInvalid,
    /// An EcsPowerSchedule uses an EcsHolidayCalendar that does not exist (the schedule's own
    /// status; its followers say `ScheduleInvalid`).
    CalendarNotFound,
    /// `spec.startAfter` forms a cycle through this object.
    DependencyCycle,
}

impl Progress {
    fn reason(self) -> &'static str {
        match self {
            Self::Starting => "Starting",
            Self::Stopping => "Stopping",
            Self::Rebooting => "Rebooting",
            Self::WaitingForInstance => "WaitingForInstance",
            Self::Retrying => "Retrying",
            Self::InsufficientCapacity => "InsufficientCapacity",
            Self::WaitingForDependency => "WaitingForDependency",
        }
    }
}

impl Stall {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::InstanceLockedForSecurity => "InstanceLockedForSecurity",
            Self::InstanceLocked => "InstanceLocked",
            Self::InstanceNotFound => "InstanceNotFound",
            Self::InsufficientBalance => "InsufficientBalance",
            Self::InstanceExpired => "InstanceExpired",
            Self::CredentialsInvalid => "CredentialsInvalid",
            Self::Forbidden => "Forbidden",
            Self::DiskError => "DiskError",
            Self::InvalidSpec => "InvalidSpec",
            Self::DuplicateInstance => "DuplicateInstance",
            Self::CredentialsNotPermitted => "CredentialsNotPermitted",
            Self::InstanceNotClaimed => "InstanceNotClaimed",
            Self::ScheduleNotFound => "ScheduleNotFound",
            Self::ScheduleInvalid => "ScheduleInvalid",
            Self::CalendarNotFound => "CalendarNotFound",
            Self::DependencyCycle => "DependencyCycle",
        }
    }
}

/// The one thing that is true of an EcsInstance right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// In the desired state, nothing pending, no lock.
    Ready {
        reason: &'static str,
        message: String,
    },
    /// A change is under way.
    Progressing { why: Progress, message: String },
    /// Needs a person.
    Stalled { why: Stall, message: String },
    /// Not ready, not moving, not stuck: paused by annotation, or a dry run.
    Idle {
        reason: &'static str,
        message: String,
    },
}

impl Verdict {
    /// The verdict of a step that makes no call. `None` for [`Step::Backoff`] (the conditions
    /// of the failure that opened the window still say why) and for [`Step::Call`] (its
    /// verdict comes from the call's outcome: [`Verdict::accepted`], [`Verdict::dry_run`],
    /// [`Verdict::for_error`]).
    ///
    /// `rebooting`: a reboot is in flight or was the last real action, so a transition is the
    /// reboot's.
    pub(crate) fn for_step(
        step: &Step,
        spec: &EcsInstanceSpec,
        desired: PowerState,
        instance: Option<&Instance>,
        rebooting: bool,
    ) -> Option<Verdict> {
        Some(match step {
            Step::Converged => Verdict::Ready {
                reason: match desired {
                    PowerState::Running => "InstanceRunning",
                    PowerState::Stopped => "InstanceStopped",
                },
                message: format!(
                    "Instance {} is {} as desired{}.",
                    spec.instance_id,
                    desired.as_str(),
                    spec.schedule_ref
                        .as_ref()
                        .map_or(String::new(), |r| format!(" (schedule {})", r.name))
                ),
            },
            Step::Wait { reason, .. } => waiting(*reason, instance, rebooting),
            Step::Blocked(blocker) => blocked(blocker, spec),
            Step::Paused { due } => Verdict::Idle {
                reason: "Paused",
                message: format!(
                    "Paused by the {PAUSED_ANNOTATION} annotation; due: {}. Remove the annotation to act.",
                    due.as_ref()
                        .map_or("nothing", |m: &Mutation| m.action().single())
                ),
            },
            Step::Drifted { due } => drifted(spec, desired, instance, due.as_ref()),
            Step::Held(hold @ Hold::Waiting { .. }) => Verdict::Progressing {
                why: Progress::WaitingForDependency,
                message: hold.to_string(),
            },
            Step::Held(hold @ Hold::Cycle(_)) => Verdict::Stalled {
                why: Stall::DependencyCycle,
                message: hold.to_string(),
            },
            Step::Backoff { .. } | Step::Call(_) => return None,
        })
    }

    /// ECS accepted a power action: the instance is on its way.
    pub(crate) fn accepted(action: PowerAction, request_id: &str) -> Verdict {
        Verdict::Progressing {
            why: match action {
                PowerAction::Start => Progress::Starting,
                PowerAction::Stop => Progress::Stopping,
                PowerAction::Reboot => Progress::Rebooting,
            },
            message: format!(
                "{} accepted (RequestId {request_id}); waiting for the instance.",
                action.single()
            ),
        }
    }

    /// `spec.dryRun`: ECS checked the action and changed nothing.
    pub(crate) fn dry_run(action: PowerAction, request_id: &str) -> Verdict {
        Verdict::Idle {
            reason: "DryRun",
            message: format!(
                "spec.dryRun is set: {} would be accepted (RequestId {request_id}); the instance was not changed.",
                action.single()
            ),
        }
    }

    /// The credentials Secret is missing or incomplete.
    pub(crate) fn credentials(message: String) -> Verdict {
        Verdict::Stalled {
            why: Stall::CredentialsInvalid,
            message,
        }
    }

    /// The gates refused the object the use of ECS (see `admission`).
    pub(crate) fn refused(refusal: &Refusal, spec: &EcsInstanceSpec) -> Verdict {
        let id = &spec.instance_id;
        let (why, message) = match refusal {
            Refusal::DuplicateInstance { owner } => (
                Stall::DuplicateInstance,
                format!(
                    "Instance {id} ({}) is managed by EcsInstance {owner}, the oldest that names it: this one makes no ECS call while that one exists. Delete one of the two (deleting {owner} hands the instance to the next oldest).",
                    spec.region_id
                ),
            ),
            Refusal::CredentialsNotPermitted {
                namespace,
                selector,
            } => (
                Stall::CredentialsNotPermitted,
                format!(
                    "Namespace {namespace} does not match the shared credentials selector {selector:?}: EcsInstances here may not use the controller's own credentials, and no ECS request was made. Set spec.credentialsSecretRef to a Secret in {namespace}, or have the cluster administrator label the namespace."
                ),
            ),
            Refusal::InstanceNotClaimed { tag, namespace } => (
                Stall::InstanceNotClaimed,
                format!(
                    "Instance {id}'s ECS tag {tag:?} does not list namespace {namespace}: the controller only reads it (no start, stop or reboot). Add {namespace} to the tag's comma-separated value (or *) in ECS to claim the instance."
                ),
            ),
        };
        Verdict::Stalled { why, message }
    }

    /// What an ECS error means for the object, with a message that says what to do.
    pub(crate) fn for_error(err: &EcsError) -> Verdict {
        let what = err.to_string();
        let progressing = |why, hint: &str| Verdict::Progressing {
            why,
            message: format!("{what}. {hint}"),
        };
        let stalled = |why, hint: &str| Verdict::Stalled {
            why,
            message: format!("{what}. {hint}"),
        };
        match err.class() {
            ErrorClass::NotReady | ErrorClass::WrongState => progressing(
                Progress::WaitingForInstance,
                "The instance is busy; the controller retries with backoff.",
            ),
            ErrorClass::Throttled => progressing(
                Progress::Retrying,
                "ECS is throttling this account; the controller backs off. Lower --qps if this persists.",
            ),
            ErrorClass::Transient => progressing(
                Progress::Retrying,
                "A temporary failure; the controller retries with backoff.",
            ),
            ErrorClass::Capacity if err.code().starts_with("QuotaExceed") => progressing(
                Progress::InsufficientCapacity,
                "The account's quota for this instance type is used up: an instance stopped with StopCharging counts against it again when it starts. The controller retries with a backoff of 1 to 30 minutes. Raise the quota in the Quota Center, or stop with spec.stop.stoppedMode: KeepCharging (the resources stay reserved, and billed, while stopped).",
            ),
            ErrorClass::Capacity => progressing(
                Progress::InsufficientCapacity,
                "The zone has no stock of this instance type now: an instance stopped with StopCharging gave up its vCPU and memory and must find them again to start. The controller retries with a backoff of 1 to 30 minutes; capacity usually returns within minutes to hours. To keep the resources across stops, set spec.stop.stoppedMode: KeepCharging (billed while stopped); to start now, change the instance type in ECS.",
            ),
            ErrorClass::Locked => stalled(
                Stall::InstanceLockedForSecurity,
                "The instance is locked for security reasons: resolve it in the Alibaba Cloud Security Center.",
            ),
            ErrorClass::Billing if err.code() == "InsufficientBalance" => stalled(
                Stall::InsufficientBalance,
                "Top up the account; the controller rechecks every 10-30 minutes.",
            ),
            ErrorClass::Billing => stalled(
                Stall::InstanceExpired,
                "Renew the instance or settle the overdue payment; the controller rechecks every 10-30 minutes.",
            ),
            ErrorClass::NotFound => stalled(
                Stall::InstanceNotFound,
                "Check spec.instanceId and spec.regionId.",
            ),
            ErrorClass::Credentials => stalled(
                Stall::CredentialsInvalid,
                "Check the AccessKey in the credentials Secret (or the controller's RAM identity); updating the Secret retries at once.",
            ),
            ErrorClass::Forbidden => stalled(
                Stall::Forbidden,
                "Grant the RAM identity ecs:DescribeInstances, ecs:StartInstance, ecs:StopInstance and ecs:RebootInstance (and ECS access to KMS for encrypted disks).",
            ),
            ErrorClass::Disk => stalled(
                Stall::DiskError,
                "A disk of the instance is in an abnormal state: check it in the ECS console.",
            ),
            ErrorClass::InvalidRequest => stalled(
                Stall::InvalidSpec,
                "ECS refused the request as invalid: check the spec (e.g. start.initLocalDisk applies to D1, I1 and I2 only).",
            ),
            ErrorClass::DryRunPassed => Verdict::Idle {
                reason: "DryRun",
                message: format!("Dry run passed ({what}); nothing was changed."),
            },
        }
    }
}

fn waiting(reason: WaitReason, instance: Option<&Instance>, rebooting: bool) -> Verdict {
    let status = instance.map_or(InstanceStatus::Unknown, |i| i.status);
    let (why, message) = match reason {
        WaitReason::Transition(InstanceStatus::Pending) => (
            Progress::WaitingForInstance,
            "The instance is being created (Pending).".to_string(),
        ),
        WaitReason::Transition(s) if rebooting => (
            Progress::Rebooting,
            format!("The instance is rebooting ({s})."),
        ),
        WaitReason::Transition(InstanceStatus::Starting) => (
            Progress::Starting,
            "The instance is starting.".to_string(),
        ),
        WaitReason::Transition(InstanceStatus::Stopping) => (
            Progress::Stopping,
            "The instance is stopping.".to_string(),
        ),
        WaitReason::Transition(s) => (
            Progress::WaitingForInstance,
            format!("Waiting for the instance ({s})."),
        ),
        WaitReason::RebootUnconfirmed => (
            Progress::Rebooting,
            "A reboot was requested; waiting for ECS to show it.".to_string(),
        ),
        WaitReason::RecentStart if status == InstanceStatus::Stopped => (
            Progress::Starting,
            "The instance started within the last minute; the start that carries the reboot token is sent once that minute is over, so it can be proven.".to_string(),
        ),
        WaitReason::RecentStart => (
            Progress::Rebooting,
            "The instance started within the last minute; the reboot is sent once that minute is over, so it can be proven.".to_string(),
        ),
        WaitReason::UnknownStatus => (
            Progress::WaitingForInstance,
            format!("ECS reports a status this controller does not know ({status})."),
        ),
    };
    Verdict::Progressing { why, message }
}

/// `spec.driftPolicy: Report` and the instance drifted: not ready, not moving, not stuck.
fn drifted(
    spec: &EcsInstanceSpec,
    desired: PowerState,
    instance: Option<&Instance>,
    due: Option<&Mutation>,
) -> Verdict {
    let status = instance.map_or(InstanceStatus::Unknown, |i| i.status);
    let due = due.map_or(String::new(), |m| {
        format!(" ({} not sent)", m.action().single())
    });
    Verdict::Idle {
        reason: "Drifted",
        message: format!(
            "Instance {} is {status} but {} is desired: it was changed outside the controller. spec.driftPolicy is Report, so the controller leaves it{due}; the object is Ready again once the instance is {} again. Set spec.driftPolicy: Correct to have it set back.",
            spec.instance_id,
            desired.as_str(),
            desired.as_str(),
        ),
    }
}

fn blocked(blocker: &Blocker, spec: &EcsInstanceSpec) -> Verdict {
    match blocker {
        Blocker::InstanceNotFound => Verdict::Stalled {
            why: Stall::InstanceNotFound,
            message: format!(
                "DescribeInstances in {} does not list {}: check spec.instanceId and spec.regionId.",
                spec.region_id, spec.instance_id
            ),
        },
        Blocker::SecurityLock => Verdict::Stalled {
            why: Stall::InstanceLockedForSecurity,
            message: "The instance is locked for security reasons (OperationLocks: security); Start and Reboot are refused until it is lifted in the Alibaba Cloud Security Center.".to_string(),
        },
        Blocker::Locked(reasons) => Verdict::Stalled {
            why: Stall::InstanceLocked,
            message: format!(
                "The instance is locked ({}): settle the account or renew the instance.",
                reasons.join(", ")
            ),
        },
    }
}

/// The three conditions for `verdict`, keeping `lastTransitionTime` of any condition whose
/// status did not flip.
pub(crate) fn conditions(
    verdict: &Verdict,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let (ready, reconciling, stalled) = match verdict {
        Verdict::Ready { reason, message } => (
            (true, *reason, message.as_str()),
            (false, *reason, ""),
            (false, *reason, ""),
        ),
        Verdict::Progressing { why, message } => (
            (false, why.reason(), message.as_str()),
            (true, why.reason(), message.as_str()),
            (false, why.reason(), ""),
        ),
        Verdict::Stalled { why, message } => (
            (false, why.reason(), message.as_str()),
            (false, why.reason(), ""),
            (true, why.reason(), message.as_str()),
        ),
        Verdict::Idle { reason, message } => (
            (false, *reason, message.as_str()),
            (false, *reason, ""),
            (false, *reason, ""),
        ),
    };
    [
        (READY, ready),
        (RECONCILING, reconciling),
        (STALLED, stalled),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let status = if status { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: truncated(message.to_string()),
            observed_generation: generation,
            last_transition_time,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::api_error;

    fn get<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn every_seed_error_code_has_a_verdict_naming_the_request() {
        let cases = [
            ("InstanceNotReady", 403, "WaitingForInstance", false),
            ("InstanceNotReady", 500, "WaitingForInstance", false),
            ("IncorrectInstanceStatus", 403, "WaitingForInstance", false),
            ("InternalError", 500, "Retrying", false),
            ("Throttling.User", 400, "Retrying", false),
            (
                "InstanceLockedForSecurity",
                403,
                "InstanceLockedForSecurity",
                true,
            ),
            ("InsufficientBalance", 403, "InsufficientBalance", true),
            ("InstanceExpired", 403, "InstanceExpired", true),
            ("InstanceExpiredOrInArrears", 403, "InstanceExpired", true),
            ("InvalidInstanceId.NotFound", 404, "InstanceNotFound", true),
            ("DiskError", 403, "DiskError", true),
            (
                "InvalidParameter.KMSKeyId.KMSUnauthorized",
                403,
                "Forbidden",
                true,
            ),
            ("MissingParameter", 400, "InvalidSpec", true),
            (
                "InvalidAccessKeyId.NotFound",
                404,
                "CredentialsInvalid",
                true,
            ),
            ("SignatureDoesNotMatch", 400, "CredentialsInvalid", true),
            ("Forbidden.RAM", 403, "Forbidden", true),
            (
                "OperationDenied.NoStock",
                403,
                "InsufficientCapacity",
                false,
            ),
            (
                "QuotaExceed.ElasticQuota",
                403,
                "InsufficientCapacity",
                false,
            ),
        ];
        for (code, status, reason, stalled) in cases {
            let verdict = Verdict::for_error(&api_error(code, status));
            let conds = conditions(&verdict, Some(1), &[], Timestamp::UNIX_EPOCH);
            assert_eq!(get(&conds, READY).status, "False", "{code}");
            assert_eq!(get(&conds, READY).reason, reason, "{code}");
            assert!(get(&conds, READY).message.contains("req-err"), "{code}");
            let (s, r) = if stalled {
                ("True", "False")
            } else {
                ("False", "True")
            };
            assert_eq!(get(&conds, STALLED).status, s, "{code}");
            assert_eq!(get(&conds, RECONCILING).status, r, "{code}");
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).unwrap();
        let progressing = Verdict::Progressing {
            why: Progress::Starting,
            message: "starting".into(),
        };
        let first = conditions(&progressing, Some(1), &[], t0);
        // Same statuses, other reason: times stay.
        let waiting = Verdict::Progressing {
            why: Progress::WaitingForInstance,
            message: "waiting".into(),
        };
        let second = conditions(&waiting, Some(2), &first, t1);
        assert!(second.iter().all(|c| c.last_transition_time.0 == t0));
        assert!(second.iter().all(|c| c.observed_generation == Some(2)));
        // Ready flips: its time moves, Stalled's does not.
        let ready = Verdict::Ready {
            reason: "InstanceRunning",
            message: "running".into(),
        };
        let third = conditions(&ready, Some(2), &second, t1);
        assert_eq!(get(&third, READY).last_transition_time.0, t1);
        assert_eq!(get(&third, RECONCILING).last_transition_time.0, t1);
        assert_eq!(get(&third, STALLED).last_transition_time.0, t0);
    }

    #[test]
    fn never_reconciling_and_stalled_at_once() {
        let verdicts = [
            Verdict::Ready {
                reason: "r",
                message: String::new(),
            },
            Verdict::Progressing {
                why: Progress::Retrying,
                message: String::new(),
            },
            Verdict::Stalled {
                why: Stall::DiskError,
                message: String::new(),
            },
            Verdict::Idle {
                reason: "Paused",
                message: String::new(),
            },
        ];
        for v in &verdicts {
            let c = conditions(v, None, &[], Timestamp::UNIX_EPOCH);
            let trues = c.iter().filter(|c| c.status == "True").count();
            assert!(trues <= 1, "{v:?}");
        }
    }
}
