//! In-process inspection and control of a running simulator: what tests and the demo call, and
//! what the admin API offers over HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::calls::{Action, CallLog};
use crate::config::{ErrorRates, FaultSpec, InstanceSpec, KeySpec, Latency, TransitionTimes};
use crate::faults::{FaultState, Faults, WireFault};
use crate::fleet::{Flags, InstanceView};
use crate::state::{Shared, build_fleet, lock};
use ecs_client::types::InstanceStatus;

/// Why a handle operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("no instance {0:?} in the simulator")]
    /// No instance has this id.
    NoSuchInstance(String),
    #[error("{0}")]
    /// The value was refused; the message says why.
    Invalid(String),
}

/// In-process inspection and control of a simulator (what the admin API offers over HTTP).
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl SimHandle {
    /// The first configured access key (the default key when none was configured).
    pub fn access_key(&self) -> (String, String) {
        let key = self
            .shared
            .config
            .effective_keys()
            .into_iter()
            .next()
            .unwrap_or_else(|| KeySpec {
                id: crate::config::DEFAULT_ACCESS_KEY_ID.into(),
                secret: crate::config::DEFAULT_ACCESS_KEY_SECRET.into(),
                security_token: None,
            });
        (key.id, key.secret)
    }

    /// One instance as DescribeInstances would show it now.
    pub fn instance(&self, id: &str) -> Option<InstanceView> {
        let now = self.shared.clock.now();
        lock(&self.shared.fleet).get(id).map(|r| r.view(now))
    }

    /// Every instance, in id order.
    pub fn instances(&self) -> Vec<InstanceView> {
        let now = self.shared.clock.now();
        lock(&self.shared.fleet).views(now)
    }

    /// The instance's status now, `None` if there is no such instance.
    pub fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.instance(id).map(|v| v.status)
    }

    /// How many instances the fleet has.
    pub fn instance_count(&self) -> usize {
        lock(&self.shared.fleet).len()
    }

    /// Adds (or replaces) an instance.
    pub fn add_instance(&self, spec: InstanceSpec) -> Result<(), HandleError> {
        spec.validate("instance")
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        let now = self.shared.clock.now();
        let mut faults = lock(&self.shared.faults);
        for fault in &spec.faults {
            let mut fault = fault.clone();
            fault.instance = Some(spec.id.clone());
            faults.add(fault);
        }
        drop(faults);
        lock(&self.shared.fleet).insert(&spec, now);
        Ok(())
    }

    /// Adds many instances at once (one lock; for large fleets).
    pub fn add_instances(
        &self,
        specs: impl IntoIterator<Item = InstanceSpec>,
    ) -> Result<(), HandleError> {
        let now = self.shared.clock.now();
        let mut faults = lock(&self.shared.faults);
        let mut fleet = lock(&self.shared.fleet);
        for spec in specs {
            spec.validate("instance")
                .map_err(|e| HandleError::Invalid(e.to_string()))?;
            for fault in &spec.faults {
                let mut fault = fault.clone();
                fault.instance = Some(spec.id.clone());
                faults.add(fault);
            }
            fleet.insert(&spec, now);
        }
        Ok(())
    }

    fn with_instance<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut crate::fleet::InstanceRecord, Timestamp) -> T,
    ) -> Result<T, HandleError> {
        let now = self.shared.clock.now();
        let mut fleet = lock(&self.shared.fleet);
        let record = fleet
            .get_mut(id)
            .ok_or_else(|| HandleError::NoSuchInstance(id.to_string()))?;
        Ok(f(record, now))
    }

    /// Puts an instance in a stable status now, cancelling any transition.
    pub fn set_status(&self, id: &str, status: InstanceStatus) -> Result<(), HandleError> {
        if status == InstanceStatus::Unknown {
            return Err(HandleError::Invalid("status Unknown cannot be set".into()));
        }
        self.with_instance(id, |r, now| r.force_status(now, status))
    }

    /// Sets the instance's StartTime, e.g. to make it look started long ago.
    pub fn set_start_time(&self, id: &str, at: jiff::Timestamp) -> Result<(), HandleError> {
        self.with_instance(id, |r, now| r.force_start_time(now, at))
    }

    /// Replaces the instance's `OperationLocks` reasons.
    pub fn set_locks(&self, id: &str, reasons: &[&str]) -> Result<(), HandleError> {
        self.with_instance(id, |r, _| {
            r.locks = reasons.iter().map(|s| s.to_string()).collect();
        })
    }

    /// Replaces the tags of the instance (`TagKey` → `TagValue`), as the console's tag editor.
    pub fn set_tags(&self, id: &str, tags: BTreeMap<String, String>) -> Result<(), HandleError> {
        self.with_instance(id, |r, _| r.tags = tags)
    }

    /// Removes all `OperationLocks` of the instance.
    pub fn clear_locks(&self, id: &str) -> Result<(), HandleError> {
        self.set_locks(id, &[])
    }

    /// Sets the account and disk conditions of the instance (overdue, expired, disk fault).
    pub fn set_flags(&self, id: &str, flags: Flags) -> Result<(), HandleError> {
        self.with_instance(id, |r, _| r.flags = flags)
    }

    /// The account and disk conditions of the instance.
    pub fn flags(&self, id: &str) -> Result<Flags, HandleError> {
        self.with_instance(id, |r, _| r.flags)
    }

    /// Adds a scripted fault (see [`FaultSpec`]).
    pub fn inject(&self, fault: FaultSpec) -> Result<(), HandleError> {
        fault
            .validate("fault")
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        lock(&self.shared.faults).add(fault);
        Ok(())
    }

    /// Removes every scripted fault still pending.
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.shared.faults);
        faults.state.scripted.clear();
        faults.state.wire.clear();
        faults.state.omitted.clear();
    }

    /// Leaves instance `id` out of the next `times` DescribeInstances answers that would show
    /// it (the call succeeds; its row is just missing, as an eventually consistent read may
    /// have it).
    pub fn omit_from_describe(&self, id: &str, times: u32) {
        lock(&self.shared.faults).omit(id, times);
    }

    /// Adds a fault of the HTTP answer itself (see [`WireFault`]).
    pub fn inject_wire(&self, fault: WireFault) {
        lock(&self.shared.faults).add_wire(fault);
    }

    /// The fault settings in force.
    pub fn faults(&self) -> FaultState {
        lock(&self.shared.faults).state.clone()
    }

    /// Replaces the random error rates (each in `0..=1`).
    pub fn set_error_rates(&self, rates: ErrorRates) -> Result<(), HandleError> {
        rates
            .validate()
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        lock(&self.shared.faults).state.error_rates = rates;
        Ok(())
    }

    /// Requests per second for `action`; `None` removes the quota.
    pub fn set_quota(&self, action: Action, per_second: Option<u32>) {
        let mut faults = lock(&self.shared.faults);
        match per_second {
            Some(q) => faults.state.quotas.insert(action, q),
            None => faults.state.quotas.remove(&action),
        };
    }

    /// Replaces the added latency.
    pub fn set_latency(&self, latency: Latency) {
        lock(&self.shared.faults).state.latency = latency;
    }

    /// Transition times for actions accepted from now on.
    pub fn set_transitions(&self, times: TransitionTimes) {
        lock(&self.shared.fleet).transitions = times;
    }

    /// The transition times in force.
    pub fn transitions(&self) -> TransitionTimes {
        lock(&self.shared.fleet).transitions
    }

    /// Moves the simulator's clock forward: transitions in progress progress by `by`.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Accepts one more AccessKey pair.
    pub fn add_key(&self, key: KeySpec) {
        self.shared.verifier.add_key(key);
    }

    /// Counters and request log.
    pub fn calls(&self) -> &CallLog {
        &self.shared.calls
    }

    /// Back to the start-up configuration: fleet, keys, faults, clock; counters and log cleared.
    pub fn reset(&self) {
        let config = &self.shared.config;
        self.shared.clock.reset();
        *lock(&self.shared.fleet) = build_fleet(config, Timestamp::now());
        *lock(&self.shared.faults) = Faults::from_config(config);
        self.shared.verifier.replace_keys(config.effective_keys());
        self.shared.calls.clear();
    }
}
