//! Injected trouble: scripted per-call faults, faults of the HTTP answer itself (a huge or
//! dripping body, a redirect), random server errors, per-action quotas and added latency.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calls::Action;
use crate::codes::SimError;
use crate::config::{ErrorRates, FaultSpec, Latency, SimConfig};

/// The fault settings in force (also what `GET /_sim/faults` shows).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FaultState {
    /// Scripted faults still pending, with their remaining counts.
    pub scripted: Vec<FaultSpec>,
    /// Random error answers per action.
    pub error_rates: ErrorRates,
    /// Requests per second per action; above it `Throttling.User`.
    pub quotas: BTreeMap<Action, u32>,
    /// Added response latency.
    pub latency: Latency,
    /// Faults of the HTTP answer still pending.
    #[serde(default)]
    pub wire: Vec<WireFault>,
    /// Instances left out of the next DescribeInstances answers that would show them (a row
    /// missing, as an eventually consistent read may have it), with how many answers remain.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub omitted: BTreeMap<String, u32>,
}

/// The next `count` calls of `action` get a broken or hostile HTTP answer instead of ECS's:
/// what a gateway, a proxy or an impostor in front of ECS may send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireFault {
    /// The API action whose calls get the answer.
    pub action: Action,
    /// What they get.
    pub answer: WireAnswer,
    /// How many calls (default 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl WireFault {
    /// The next call of `action` gets `answer`.
    pub fn new(action: Action, answer: WireAnswer) -> Self {
        Self {
            action,
            answer,
            count: 1,
        }
    }

    /// The next `n` calls instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.count = n;
        self
    }
}

/// What a [`WireFault`] answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WireAnswer {
    /// `200 OK` with a well-formed answer padded to about `bytes` bytes, streamed in chunks
    /// without a `Content-Length` (the simulator never holds it in memory).
    HugeBody {
        /// The answer's approximate size.
        bytes: u64,
    },
    /// `200 OK` with a well-formed answer sent in `chunks` pieces, one every `interval_ms`.
    Drip {
        /// How many pieces.
        chunks: u32,
        /// The pause before each piece, in milliseconds.
        interval_ms: u64,
    },
    /// `307 Temporary Redirect` to `location` (ECS never redirects).
    Redirect {
        /// The `Location` header.
        location: String,
    },
}

/// A scripted fault that fired.
#[derive(Clone, Debug)]
pub(crate) struct Fired {
    pub error: SimError,
    /// The call takes effect anyway.
    pub apply: bool,
}

/// Faults plus the per-second windows of the quotas.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub state: FaultState,
    windows: HashMap<Action, (i64, u32)>,
}

impl Faults {
    pub(crate) fn from_config(config: &SimConfig) -> Self {
        let mut scripted = config.faults.clone();
        for instance in &config.instances {
            for fault in &instance.faults {
                let mut fault = fault.clone();
                fault.instance = Some(instance.id.clone());
                scripted.push(fault);
            }
        }
        Self {
            state: FaultState {
                scripted,
                error_rates: config.error_rates,
                quotas: config.quotas.clone(),
                latency: config.latency,
                wire: Vec::new(),
                omitted: BTreeMap::new(),
            },
            windows: HashMap::new(),
        }
    }

    pub(crate) fn add(&mut self, fault: FaultSpec) {
        if fault.count > 0 {
            self.state.scripted.push(fault);
        }
    }

    /// Consumes one count of the first scripted fault for `action` that matches `instance`
    /// (a fault without an instance matches every call of the action).
    pub(crate) fn take(&mut self, action: Action, instance: Option<&str>) -> Option<Fired> {
        let index = self.state.scripted.iter().position(|f| {
            f.action == action
                && f.count > 0
                && match (&f.instance, instance) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want == got,
                    (Some(_), None) => false,
                }
        })?;
        let fault = &mut self.state.scripted[index];
        fault.count -= 1;
        let mut error = SimError::known(&fault.code);
        if let Some(status) = fault.http_status {
            error.http_status = status;
        }
        if let Some(message) = &fault.message {
            error.message = message.clone();
        }
        error.headers = fault
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let fired = Fired {
            error,
            apply: fault.apply,
        };
        if fault.count == 0 {
            self.state.scripted.remove(index);
        }
        Some(fired)
    }

    /// Leaves `id` out of the next `times` DescribeInstances answers that would show it.
    pub(crate) fn omit(&mut self, id: &str, times: u32) {
        if times > 0 {
            *self.state.omitted.entry(id.to_string()).or_default() += times;
        }
    }

    /// Whether this answer leaves `id` out (consuming one count).
    pub(crate) fn take_omission(&mut self, id: &str) -> bool {
        let Some(left) = self.state.omitted.get_mut(id) else {
            return false;
        };
        *left -= 1;
        if *left == 0 {
            self.state.omitted.remove(id);
        }
        true
    }

    pub(crate) fn add_wire(&mut self, fault: WireFault) {
        if fault.count > 0 {
            self.state.wire.push(fault);
        }
    }

    /// Consumes one count of the first wire fault for `action`.
    pub(crate) fn take_wire(&mut self, action: Action) -> Option<WireAnswer> {
        let index = self
            .state
            .wire
            .iter()
            .position(|f| f.action == action && f.count > 0)?;
        let fault = &mut self.state.wire[index];
        fault.count -= 1;
        let answer = fault.answer.clone();
        if fault.count == 0 {
            self.state.wire.remove(index);
        }
        Some(answer)
    }

    /// Counts a request of `action` in the current one-second window; true when it is over the
    /// action's quota.
    pub(crate) fn over_quota(&mut self, action: Action, unix_second: i64) -> bool {
        let Some(&quota) = self.state.quotas.get(&action) else {
            return false;
        };
        let window = self.windows.entry(action).or_insert((unix_second, 0));
        if window.0 != unix_second {
            *window = (unix_second, 0);
        }
        window.1 += 1;
        window.1 > quota
    }

    /// A random server error, drawn with `draw` in `[0, 1)`.
    pub(crate) fn random_error(&self, draw: f64) -> Option<SimError> {
        let rates = self.state.error_rates;
        if draw < rates.internal_error {
            Some(SimError::known("InternalError"))
        } else if draw < rates.internal_error + rates.service_unavailable {
            Some(SimError::known("ServiceUnavailable"))
        } else {
            None
        }
    }

    /// Latency to add to a request, `jitter_draw` in `[0, 1)`.
    pub(crate) fn latency(&self, jitter_draw: f64) -> Duration {
        let l = self.state.latency;
        let jitter = (l.jitter_ms as f64 * jitter_draw).round() as u64;
        Duration::from_millis(l.fixed_ms.saturating_add(jitter))
    }
}

/// A small, lock-free, seedable random source (SplitMix64); plenty for fault draws.
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FaultSpec;

    #[test]
    fn scripted_faults_fire_the_given_number_of_times_for_their_instance() {
        let mut faults = Faults::default();
        faults.add(
            FaultSpec::new(Action::RebootInstance, "InternalError")
                .instance("i-a")
                .times(2),
        );
        assert!(faults.take(Action::RebootInstance, Some("i-b")).is_none());
        assert!(faults.take(Action::StartInstance, Some("i-a")).is_none());
        let fired = faults.take(Action::RebootInstance, Some("i-a")).unwrap();
        assert_eq!(
            (fired.error.code.as_str(), fired.error.http_status),
            ("InternalError", 500)
        );
        assert!(faults.take(Action::RebootInstance, Some("i-a")).is_some());
        assert!(faults.take(Action::RebootInstance, Some("i-a")).is_none());
        assert!(faults.state.scripted.is_empty());
    }

    #[test]
    fn wire_faults_fire_for_their_action_the_given_number_of_times() {
        let mut faults = Faults::default();
        let redirect = WireAnswer::Redirect {
            location: "http://elsewhere/".into(),
        };
        faults.add_wire(WireFault::new(Action::StopInstance, redirect.clone()).times(2));
        assert_eq!(faults.take_wire(Action::StartInstance), None);
        assert_eq!(
            faults.take_wire(Action::StopInstance),
            Some(redirect.clone())
        );
        assert_eq!(faults.take_wire(Action::StopInstance), Some(redirect));
        assert_eq!(faults.take_wire(Action::StopInstance), None);
        assert!(faults.state.wire.is_empty());
    }

    #[test]
    fn scripted_fault_headers_go_with_the_error() {
        let mut faults = Faults::default();
        faults.add(
            FaultSpec::new(Action::StartInstance, "ServiceUnavailable").header("Retry-After", "30"),
        );
        let fired = faults.take(Action::StartInstance, Some("i-a")).unwrap();
        assert_eq!(fired.error.http_status, 503);
        assert_eq!(
            fired.error.headers,
            [("Retry-After".to_string(), "30".to_string())]
        );
        assert!(
            FaultSpec::new(Action::StartInstance, "Throttling")
                .header("Retry After", "1")
                .validate("fault")
                .is_err()
        );
    }

    #[test]
    fn an_omission_leaves_its_instance_out_the_given_number_of_times() {
        let mut faults = Faults::default();
        faults.omit("i-a", 2);
        assert!(!faults.take_omission("i-b"));
        assert!(faults.take_omission("i-a"));
        assert!(faults.take_omission("i-a"));
        assert!(!faults.take_omission("i-a"));
        assert!(faults.state.omitted.is_empty());
    }

    #[test]
    fn quotas_count_per_second() {
        let mut faults = Faults::default();
        faults.state.quotas.insert(Action::StartInstance, 2);
        assert!(!faults.over_quota(Action::StartInstance, 10));
        assert!(!faults.over_quota(Action::StartInstance, 10));
        assert!(faults.over_quota(Action::StartInstance, 10));
        assert!(!faults.over_quota(Action::StartInstance, 11));
        assert!(!faults.over_quota(Action::StopInstance, 10));
    }

    #[test]
    fn error_rates_split_the_unit_interval() {
        let mut faults = Faults::default();
        faults.state.error_rates = ErrorRates {
            internal_error: 0.1,
            service_unavailable: 0.2,
        };
        assert_eq!(faults.random_error(0.05).unwrap().code, "InternalError");
        assert_eq!(faults.random_error(0.25).unwrap().http_status, 503);
        assert!(faults.random_error(0.31).is_none());
        let rng = Rng::new(1);
        assert!(
            (0..1000)
                .map(|_| rng.unit())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
