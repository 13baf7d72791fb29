//! Typed views of the ECS resources and call options this project uses.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An instance's `Status` as ECS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InstanceStatus {
    /// Being created; every power action answers `InstanceNotReady`.
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    /// A status this project does not know (ECS added one, or the instance is gone).
    Unknown,
}

impl InstanceStatus {
    /// Starting, Stopping and Pending: the instance is moving and must be waited for.
    pub fn is_transitional(self) -> bool {
        matches!(self, Self::Pending | Self::Starting | Self::Stopping)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceStatus {
    type Err = std::convert::Infallible;

    /// Never fails: a status ECS may add later reads as `Unknown`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "Pending" => Self::Pending,
            "Starting" => Self::Starting,
            "Running" => Self::Running,
            "Stopping" => Self::Stopping,
            "Stopped" => Self::Stopped,
            _ => Self::Unknown,
        })
    }
}

/// One entry of `OperationLocks.LockReason[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationLock {
    /// `financial`, `security`, `recycling`, `dedicatedhostfinancial`, `refunded`, …
    pub reason: String,
    pub message: Option<String>,
}

impl OperationLock {
    /// A `security` lock refuses Start and Reboot (ECS compares case-insensitively).
    pub fn is_security(&self) -> bool {
        self.reason.eq_ignore_ascii_case("security")
    }
}

/// What DescribeInstances says of one instance (the fields this project reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    pub region_id: String,
    pub status: InstanceStatus,
    /// Last start, as ECS reports it (`yyyy-MM-ddTHH:mmZ`, minute precision).
    pub start_time: Option<String>,
    pub stopped_mode: Option<String>,
    pub instance_type_family: Option<String>,
    pub instance_charge_type: Option<String>,
    pub expired_time: Option<String>,
    pub locks: Vec<OperationLock>,
    /// `Tags.Tag[]`: `TagKey` → `TagValue` (a tag guard reads the owner's consent here).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// The lock reasons alone, as status reports them.
    pub fn lock_reasons(&self) -> Vec<String> {
        self.locks.iter().map(|l| l.reason.clone()).collect()
    }

    pub fn is_security_locked(&self) -> bool {
        self.locks.iter().any(OperationLock::is_security)
    }

    /// StartTime parsed; accepts the minute form ECS sends and the form with seconds.
    pub fn start_timestamp(&self) -> Option<jiff::Timestamp> {
        self.start_time.as_deref().and_then(parse_ecs_time)
    }
}

/// Parses `yyyy-MM-ddTHH:mmZ` or `yyyy-MM-ddTHH:mm:ssZ` (ECS uses both).
pub fn parse_ecs_time(s: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let trimmed = s.strip_suffix('Z')?;
    format!("{trimmed}:00Z").parse().ok()
}

/// `StoppedMode` of StopInstance(s).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum StoppedMode {
    /// Keep the instance's resources and keep paying for them (the ECS default).
    #[default]
    KeepCharging,
    /// Release vCPU and memory while stopped (VPC pay-as-you-go); a later start may find no stock.
    StopCharging,
}

impl StoppedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepCharging => "KeepCharging",
            Self::StopCharging => "StopCharging",
        }
    }
}

/// Options of StartInstance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StartOptions {
    /// Recover local disks (D1, I1, I2 families only).
    pub init_local_disk: bool,
    pub dry_run: bool,
}

/// Options of StopInstance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StopOptions {
    pub force: bool,
    pub stopped_mode: Option<StoppedMode>,
    pub dry_run: bool,
}

/// Options of RebootInstance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RebootOptions {
    pub force: bool,
    pub dry_run: bool,
}

// The three power actions, each with its single-instance and batch ECS action.
//
// The one encoding of "start, stop or reboot" in the project: the client's calls, the
// controller's status (`lastAction.action`, hence the serde and schema derives), metrics and
// the simulator's call log all name power actions with it. (A comment, not a doc comment: the
// schema would carry a doc comment into the CRD, whose `lastAction.action` has no description.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PowerAction {
    Start,
    Stop,
    Reboot,
}

impl PowerAction {
    pub const ALL: [PowerAction; 3] = [Self::Start, Self::Stop, Self::Reboot];

    /// The ECS action acting on one instance: `StartInstance`, `StopInstance`, `RebootInstance`.
    pub fn single(self) -> &'static str {
        match self {
            Self::Start => "StartInstance",
            Self::Stop => "StopInstance",
            Self::Reboot => "RebootInstance",
        }
    }

    /// The ECS action acting on up to 100: `StartInstances`, `StopInstances`, `RebootInstances`.
    pub fn batch(self) -> &'static str {
        match self {
            Self::Start => "StartInstances",
            Self::Stop => "StopInstances",
            Self::Reboot => "RebootInstances",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.single())
    }
}

/// A power action with its options: everything a Start/Stop/Reboot call sends besides the
/// instance ids. Calls that agree on all of it may share a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerRequest {
    Start(StartOptions),
    Stop(StopOptions),
    Reboot(RebootOptions),
}

impl PowerRequest {
    pub fn action(self) -> PowerAction {
        match self {
            Self::Start(_) => PowerAction::Start,
            Self::Stop(_) => PowerAction::Stop,
            Self::Reboot(_) => PowerAction::Reboot,
        }
    }

    /// `DryRun=true`: ECS checks the request and changes nothing.
    pub fn dry_run(self) -> bool {
        match self {
            Self::Start(o) => o.dry_run,
            Self::Stop(o) => o.dry_run,
            Self::Reboot(o) => o.dry_run,
        }
    }
}

/// A power action ECS accepted, or (`dry_run`) whose checks passed without changing anything.
///
/// A passed dry run is an answer, not a failure: ECS signals it with the `DryRunOperation`
/// error code, and the client turns that into `Accepted { dry_run: true, .. }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub request_id: String,
    pub dry_run: bool,
}

/// One instance's answer inside a batch (StartInstances, StopInstances, RebootInstances).
#[derive(Clone, Debug)]
pub struct BatchItem {
    pub instance_id: String,
    /// `Ok` for `Code` 200; otherwise the error as the single call would have returned it.
    pub result: Result<(), crate::EcsError>,
    pub previous_status: Option<InstanceStatus>,
    pub current_status: Option<InstanceStatus>,
}

/// The answer to a batch call.
#[derive(Clone, Debug)]
pub struct BatchAccepted {
    pub request_id: String,
    pub items: Vec<BatchItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_times_parse_with_and_without_seconds() {
        let minute = parse_ecs_time("2026-11-22T10:01Z").unwrap();
        let second = parse_ecs_time("2026-11-22T10:01:00Z").unwrap();
        assert_eq!(minute, second);
        assert!(parse_ecs_time("yesterday").is_none());
        assert!(parse_ecs_time("").is_none());
    }

    #[test]
    fn unknown_statuses_never_fail_to_parse() {
        assert_eq!(
            "Running".parse::<InstanceStatus>().unwrap(),
            InstanceStatus::Running
        );
        assert_eq!(
            "Migrating".parse::<InstanceStatus>().unwrap(),
            InstanceStatus::Unknown
        );
    }

    #[test]
    fn security_locks_are_case_insensitive() {
        let lock = OperationLock {
            reason: "Security".into(),
            message: None,
        };
        assert!(lock.is_security());
    }
}
