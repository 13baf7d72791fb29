//! The simulated instances and their power state machine.
//!
//! State is evaluated lazily: an accepted Start/Stop/Reboot records a timeline of timestamped
//! phases (e.g. Stopping now, Starting at t+20 s, Running at t+35 s) and a read computes the
//! status from the clock. No timer runs per instance, so an idle fleet of 100,000 costs nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::codes::SimError;
use crate::config::{ChargeType, InstanceSpec, TransitionTimes};
use ecs_client::types::{InstanceStatus, StoppedMode, parse_ecs_time};

/// The simulator's notion of "now": the wall clock plus an offset tests can advance, so a
/// transition of minutes can be skipped without waiting. Signature timestamps are always
/// checked against the real wall clock.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub(crate) fn now(&self) -> Timestamp {
        let offset = SignedDuration::from_millis(self.offset_ms.load(Ordering::Relaxed));
        Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    pub(crate) fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }
}

/// Run-time flags that make power actions fail (see the seed pages' error tables).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flags {
    /// Account in arrears: Start → `InsufficientBalance`, Reboot → `InstanceExpiredOrInArrears`.
    pub overdue: bool,
    /// Subscription expired: Start → `InstanceExpired`, Reboot → `InstanceExpiredOrInArrears`.
    pub expired: bool,
    /// Start and Reboot → `DiskError`.
    pub disk_fault: bool,
    /// The zone has no stock of the instance's type: Start of an instance stopped with
    /// `StopCharging` (its vCPU and memory released) → `OperationDenied.NoStock`; one stopped
    /// with `KeepCharging` kept them and starts.
    pub no_stock: bool,
}

/// A status that begins at a point in time.
#[derive(Clone, Copy, Debug)]
struct Phase {
    at: Timestamp,
    status: InstanceStatus,
}

/// One simulated instance.
#[derive(Clone, Debug)]
pub(crate) struct InstanceRecord {
    pub id: String,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub family: String,
    pub charge_type: ChargeType,
    pub creation_time: Timestamp,
    pub expired_time: String,
    pub locks: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub flags: Flags,
    /// The status before the first phase of `timeline`.
    base: InstanceStatus,
    /// Future (or not yet folded) phases, in time order.
    timeline: Vec<Phase>,
    /// Last start, before any phase of the timeline.
    start_time: Option<Timestamp>,
    stopped_mode: StoppedMode,
}

/// What a read of an instance shows at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The instance id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// Its zone.
    pub zone: String,
    /// Its status at this moment (transitions complete on the simulator's clock).
    pub status: InstanceStatus,
    /// `yyyy-MM-ddTHH:mmZ`, as ECS reports it.
    pub start_time: Option<String>,
    /// `KeepCharging`/`StopCharging` when Stopped, `Not-applicable` otherwise.
    pub stopped_mode: String,
    /// `InstanceType`, e.g. `ecs.g7.large`.
    pub instance_type: String,
    /// `InstanceTypeFamily`, e.g. `ecs.g7`.
    pub instance_type_family: String,
    /// `InstanceChargeType`: `PostPaid` or `PrePaid`.
    pub instance_charge_type: String,
    /// `ExpiredTime`, as ECS reports it.
    pub expired_time: String,
    /// `CreationTime`, as ECS reports it.
    pub creation_time: String,
    /// `OperationLocks` reasons.
    pub locks: Vec<String>,
    /// Tags, `TagKey` → `TagValue`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The account and disk conditions that make actions fail.
    pub flags: Flags,
}

/// ECS's minute-precision time format.
pub(crate) fn ecs_minute(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%MZ").to_string()
}

impl InstanceRecord {
    pub(crate) fn from_spec(spec: &InstanceSpec, now: Timestamp, times: &TransitionTimes) -> Self {
        let zone = spec
            .zone
            .clone()
            .unwrap_or_else(|| format!("{}-a", spec.region));
        let instance_type = spec
            .instance_type
            .clone()
            .unwrap_or_else(|| format!("{}.large", spec.instance_type_family));
        let start_time =
            spec.start_time
                .as_deref()
                .and_then(parse_ecs_time)
                .or(match spec.status {
                    InstanceStatus::Running | InstanceStatus::Stopping => Some(now),
                    _ => None,
                });
        let mut record = Self {
            id: spec.id.clone(),
            region: spec.region.clone(),
            zone,
            instance_type,
            family: spec.instance_type_family.clone(),
            charge_type: spec.charge_type,
            creation_time: now,
            expired_time: spec
                .expired_time
                .clone()
                .unwrap_or_else(|| "2099-12-31T15:59Z".into()),
            locks: spec.locks.clone(),
            tags: spec.tags.clone(),
            flags: Flags {
                overdue: spec.overdue,
                expired: spec.expired,
                disk_fault: spec.disk_fault,
                no_stock: spec.no_stock,
            },
            base: spec.status,
            timeline: Vec::new(),
            start_time,
            stopped_mode: spec.stopped_mode.unwrap_or_default(),
        };
        match spec.status {
            InstanceStatus::Pending => {
                record.plan(now, &[(times.pending, InstanceStatus::Stopped)])
            }
            InstanceStatus::Starting => {
                record.plan(now, &[(times.starting, InstanceStatus::Running)])
            }
            InstanceStatus::Stopping => {
                record.plan(now, &[(times.stopping, InstanceStatus::Stopped)])
            }
            _ => {}
        }
        record
    }

    /// Appends phases, each `delay` after the previous one (the first after `now`).
    fn plan(&mut self, now: Timestamp, steps: &[(Duration, InstanceStatus)]) {
        let mut at = now;
        for (delay, status) in steps {
            at = add(at, *delay);
            self.timeline.push(Phase {
                at,
                status: *status,
            });
        }
    }

    /// Status and last start as of `now`, without changing anything.
    fn evaluate(&self, now: Timestamp) -> (InstanceStatus, Option<Timestamp>) {
        let mut status = self.base;
        let mut start_time = self.start_time;
        for phase in self.timeline.iter().take_while(|p| p.at <= now) {
            status = phase.status;
            if phase.status == InstanceStatus::Starting {
                start_time = Some(phase.at);
            }
        }
        (status, start_time)
    }

    pub(crate) fn status(&self, now: Timestamp) -> InstanceStatus {
        self.evaluate(now).0
    }

    /// Folds the phases that have passed into the base state.
    fn settle(&mut self, now: Timestamp) {
        let (status, start_time) = self.evaluate(now);
        self.base = status;
        self.start_time = start_time;
        self.timeline.retain(|p| p.at > now);
    }

    pub(crate) fn view(&self, now: Timestamp) -> InstanceView {
        let (status, start_time) = self.evaluate(now);
        InstanceView {
            id: self.id.clone(),
            region: self.region.clone(),
            zone: self.zone.clone(),
            status,
            start_time: start_time.map(ecs_minute),
            stopped_mode: if status == InstanceStatus::Stopped {
                self.stopped_mode.as_str().to_string()
            } else {
                "Not-applicable".to_string()
            },
            instance_type: self.instance_type.clone(),
            instance_type_family: self.family.clone(),
            instance_charge_type: self.charge_type.as_str().to_string(),
            expired_time: self.expired_time.clone(),
            creation_time: ecs_minute(self.creation_time),
            locks: self.locks.clone(),
            tags: self.tags.clone(),
            flags: self.flags,
        }
    }

    pub(crate) fn is_security_locked(&self) -> bool {
        self.locks
            .iter()
            .any(|l| l.eq_ignore_ascii_case("security"))
    }

    /// Backdates (or moves) the last start, as if the instance had started at `at` (admin).
    pub(crate) fn force_start_time(&mut self, now: Timestamp, at: Timestamp) {
        self.settle(now);
        self.start_time = Some(at);
    }

    /// Forces a stable status now (admin), dropping any transition in progress.
    pub(crate) fn force_status(&mut self, now: Timestamp, status: InstanceStatus) {
        self.settle(now);
        self.timeline.clear();
        if status == InstanceStatus::Running && self.base != InstanceStatus::Running {
            self.start_time = Some(now);
        }
        self.base = status;
    }
}

fn add(ts: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| ts.checked_add(d).ok())
        .unwrap_or(ts)
}

/// A power action, with the options that change its timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PowerOp {
    Start,
    Stop {
        force: bool,
        mode: Option<StoppedMode>,
    },
    Reboot {
        force: bool,
    },
}

impl PowerOp {
    fn required_status(self) -> InstanceStatus {
        match self {
            Self::Start => InstanceStatus::Stopped,
            Self::Stop { .. } | Self::Reboot { .. } => InstanceStatus::Running,
        }
    }
}

/// The result of an accepted power action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub previous: InstanceStatus,
    pub current: InstanceStatus,
}

/// Every instance, by id, with a per-region index in id order (for paging).
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    instances: HashMap<String, InstanceRecord>,
    by_region: BTreeMap<String, BTreeSet<String>>,
    pub transitions: TransitionTimes,
}

impl Fleet {
    pub(crate) fn new(transitions: TransitionTimes) -> Self {
        Self {
            transitions,
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.instances.len()
    }

    /// Adds or replaces an instance.
    pub(crate) fn insert(&mut self, spec: &InstanceSpec, now: Timestamp) {
        let record = InstanceRecord::from_spec(spec, now, &self.transitions);
        if let Some(old) = self.instances.get(&spec.id)
            && let Some(ids) = self.by_region.get_mut(&old.region)
        {
            ids.remove(&spec.id);
        }
        self.by_region
            .entry(record.region.clone())
            .or_default()
            .insert(record.id.clone());
        self.instances.insert(record.id.clone(), record);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&InstanceRecord> {
        self.instances.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut InstanceRecord> {
        self.instances.get_mut(id)
    }

    /// Ids of a region in id order, starting after `after` (exclusive) when given.
    pub(crate) fn region_ids<'a>(
        &'a self,
        region: &str,
        after: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        match self.by_region.get(region) {
            None => Box::new(std::iter::empty()),
            Some(ids) => match after {
                None => Box::new(ids.iter()),
                Some(after) => Box::new(ids.range::<str, _>((
                    std::ops::Bound::Excluded(after),
                    std::ops::Bound::Unbounded,
                ))),
            },
        }
    }

    pub(crate) fn region_len(&self, region: &str) -> usize {
        self.by_region.get(region).map_or(0, BTreeSet::len)
    }

    pub(crate) fn views(&self, now: Timestamp) -> Vec<InstanceView> {
        let mut all: Vec<_> = self.instances.values().map(|r| r.view(now)).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Checks whether `op` may run on `id` now, in the order ECS reports problems. `Ok` carries
    /// the instance's current status.
    pub(crate) fn check(
        &self,
        id: &str,
        op: PowerOp,
        now: Timestamp,
    ) -> Result<InstanceStatus, SimError> {
        let record = self
            .instances
            .get(id)
            .ok_or_else(|| SimError::known("InvalidInstanceId.NotFound"))?;
        let status = record.status(now);
        let starts = matches!(op, PowerOp::Start | PowerOp::Reboot { .. });
        if starts && record.is_security_locked() {
            return Err(SimError::known("InstanceLockedForSecurity"));
        }
        match op {
            PowerOp::Start if record.flags.expired => {
                return Err(SimError::known("InstanceExpired"));
            }
            PowerOp::Start if record.flags.overdue => {
                return Err(SimError::known("InsufficientBalance"));
            }
            PowerOp::Reboot { .. } if record.flags.expired || record.flags.overdue => {
                return Err(SimError::known("InstanceExpiredOrInArrears"));
            }
            _ => {}
        }
        if starts && record.flags.disk_fault {
            return Err(SimError::known("DiskError"));
        }
        if status == InstanceStatus::Pending {
            return Err(SimError::known("InstanceNotReady"));
        }
        if matches!(op, PowerOp::Start)
            && record.flags.no_stock
            && status == InstanceStatus::Stopped
            && record.stopped_mode == StoppedMode::StopCharging
        {
            return Err(SimError::known("OperationDenied.NoStock"));
        }
        if status != op.required_status() {
            return Err(SimError::incorrect_status(status.as_str()));
        }
        Ok(status)
    }

    /// Applies `op` to `id` (already checked), recording its timeline from `now`.
    pub(crate) fn apply(&mut self, id: &str, op: PowerOp, now: Timestamp) -> Option<Transition> {
        let times = self.transitions;
        let record = self.instances.get_mut(id)?;
        record.settle(now);
        let previous = record.base;
        record.timeline.clear();
        match op {
            PowerOp::Start => {
                record.timeline.push(Phase {
                    at: now,
                    status: InstanceStatus::Starting,
                });
                record.plan(now, &[(times.starting, InstanceStatus::Running)]);
            }
            PowerOp::Stop { force, mode } => {
                record.stopped_mode = mode.unwrap_or_default();
                record.timeline.push(Phase {
                    at: now,
                    status: InstanceStatus::Stopping,
                });
                let stop = if force {
                    times.force_stopping
                } else {
                    times.stopping
                };
                record.plan(now, &[(stop, InstanceStatus::Stopped)]);
            }
            PowerOp::Reboot { force } => {
                record.timeline.push(Phase {
                    at: now,
                    status: InstanceStatus::Stopping,
                });
                let stop = if force {
                    times.force_stopping
                } else {
                    times.stopping
                };
                record.plan(
                    now,
                    &[
                        (stop, InstanceStatus::Starting),
                        (times.starting, InstanceStatus::Running),
                    ],
                );
            }
        }
        Some(Transition {
            previous,
            current: record.status(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(times: TransitionTimes) -> (Fleet, Timestamp) {
        let now: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let mut fleet = Fleet::new(times);
        fleet.insert(
            &InstanceSpec::new("i-a", "r").status(InstanceStatus::Running),
            now,
        );
        (fleet, now)
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    #[test]
    fn a_reboot_passes_through_stopping_and_starting_and_moves_start_time() {
        let (mut fleet, t0) = fleet(TransitionTimes {
            pending: Duration::ZERO,
            starting: Duration::from_secs(10),
            stopping: Duration::from_secs(60),
            force_stopping: Duration::from_secs(5),
        });
        fleet
            .check("i-a", PowerOp::Reboot { force: false }, t0)
            .unwrap();
        let t = fleet
            .apply("i-a", PowerOp::Reboot { force: false }, t0)
            .unwrap();
        assert_eq!(t.previous, InstanceStatus::Running);
        assert_eq!(t.current, InstanceStatus::Stopping);
        let rec = fleet.get("i-a").unwrap();
        assert_eq!(rec.status(t0 + secs(59)), InstanceStatus::Stopping);
        assert_eq!(rec.status(t0 + secs(60)), InstanceStatus::Starting);
        assert_eq!(rec.status(t0 + secs(70)), InstanceStatus::Running);
        assert_eq!(
            rec.view(t0 + secs(70)).start_time.as_deref(),
            Some("2026-01-01T10:01Z")
        );
        assert!(matches!(
            fleet.check("i-a", PowerOp::Start, t0 + secs(1)),
            Err(e) if e.code == "IncorrectInstanceStatus"
        ));
    }

    #[test]
    fn force_stop_is_shorter_and_records_the_stopped_mode() {
        let (mut fleet, t0) = fleet(TransitionTimes::uniform(Duration::from_secs(30)));
        fleet.transitions.force_stopping = Duration::from_secs(2);
        let op = PowerOp::Stop {
            force: true,
            mode: Some(StoppedMode::StopCharging),
        };
        fleet.apply("i-a", op, t0);
        let view = fleet.get("i-a").unwrap().view(t0 + secs(2));
        assert_eq!(view.status, InstanceStatus::Stopped);
        assert_eq!(view.stopped_mode, "StopCharging");
    }

    #[test]
    fn pending_becomes_stopped_and_refuses_power_actions_until_then() {
        let now: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let mut fleet = Fleet::new(TransitionTimes::uniform(Duration::from_secs(30)));
        fleet.insert(
            &InstanceSpec::new("i-p", "r").status(InstanceStatus::Pending),
            now,
        );
        assert_eq!(
            fleet.check("i-p", PowerOp::Start, now).unwrap_err().code,
            "InstanceNotReady"
        );
        assert!(fleet.check("i-p", PowerOp::Start, now + secs(30)).is_ok());
    }

    #[test]
    fn locks_and_flags_refuse_in_the_documented_way() {
        let (mut fleet, now) = fleet(TransitionTimes::ZERO);
        let rec = fleet.get_mut("i-a").unwrap();
        rec.locks.push("Security".into());
        let code = |f: &Fleet, op| f.check("i-a", op, now).unwrap_err().code;
        assert_eq!(
            code(&fleet, PowerOp::Reboot { force: false }),
            "InstanceLockedForSecurity"
        );
        // A security lock does not prevent a stop.
        let stop = PowerOp::Stop {
            force: false,
            mode: None,
        };
        assert!(fleet.check("i-a", stop, now).is_ok());
        let rec = fleet.get_mut("i-a").unwrap();
        rec.locks.clear();
        rec.flags.overdue = true;
        assert_eq!(
            code(&fleet, PowerOp::Reboot { force: false }),
            "InstanceExpiredOrInArrears"
        );
        fleet
            .get_mut("i-a")
            .unwrap()
            .force_status(now, InstanceStatus::Stopped);
        assert_eq!(code(&fleet, PowerOp::Start), "InsufficientBalance");
        let rec = fleet.get_mut("i-a").unwrap();
        rec.flags = Flags {
            expired: true,
            ..Flags::default()
        };
        assert_eq!(code(&fleet, PowerOp::Start), "InstanceExpired");
        fleet.get_mut("i-a").unwrap().flags = Flags {
            disk_fault: true,
            ..Flags::default()
        };
        assert_eq!(code(&fleet, PowerOp::Start), "DiskError");
        // No stock: only an instance that released its resources (StopCharging) misses them.
        let rec = fleet.get_mut("i-a").unwrap();
        rec.flags = Flags {
            no_stock: true,
            ..Flags::default()
        };
        rec.stopped_mode = StoppedMode::KeepCharging;
        assert!(fleet.check("i-a", PowerOp::Start, now).is_ok());
        fleet.get_mut("i-a").unwrap().stopped_mode = StoppedMode::StopCharging;
        assert_eq!(code(&fleet, PowerOp::Start), "OperationDenied.NoStock");
        assert_eq!(
            fleet
                .check("i-x", PowerOp::Start, now)
                .unwrap_err()
                .http_status,
            404
        );
    }
}
