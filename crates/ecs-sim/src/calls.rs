//! The request log and counters: what reached the simulator, per action, instance and outcome.
//!
//! Tests assert on these ("exactly one RebootInstance reached i-x"), so every request that got
//! an answer is counted, including those refused by authentication, quotas or faults.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use ecs_client::PowerAction;
use serde::{Deserialize, Serialize};

/// The ECS actions the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    DescribeInstances,
    DescribeInstanceStatus,
    StartInstance,
    StopInstance,
    RebootInstance,
    StartInstances,
    StopInstances,
    RebootInstances,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Self::DescribeInstances,
        Self::DescribeInstanceStatus,
        Self::StartInstance,
        Self::StopInstance,
        Self::RebootInstance,
        Self::StartInstances,
        Self::StopInstances,
        Self::RebootInstances,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DescribeInstances => "DescribeInstances",
            Self::DescribeInstanceStatus => "DescribeInstanceStatus",
            Self::StartInstance => "StartInstance",
            Self::StopInstance => "StopInstance",
            Self::RebootInstance => "RebootInstance",
            Self::StartInstances => "StartInstances",
            Self::StopInstances => "StopInstances",
            Self::RebootInstances => "RebootInstances",
        }
    }
}

impl Action {
    /// The action that carries out `power` on one instance, or (`batch`) on up to 100.
    pub fn power(power: PowerAction, batch: bool) -> Self {
        match (power, batch) {
            (PowerAction::Start, false) => Self::StartInstance,
            (PowerAction::Stop, false) => Self::StopInstance,
            (PowerAction::Reboot, false) => Self::RebootInstance,
            (PowerAction::Start, true) => Self::StartInstances,
            (PowerAction::Stop, true) => Self::StopInstances,
            (PowerAction::Reboot, true) => Self::RebootInstances,
        }
    }

    /// The power action this action carries out, and whether it is the batch form; `None` for
    /// the reads.
    pub fn power_action(self) -> Option<(PowerAction, bool)> {
        PowerAction::ALL
            .into_iter()
            .flat_map(|p| [(p, false), (p, true)])
            .find(|(p, batch)| Self::power(*p, *batch) == self)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}; known: {:?}", Self::ALL))
    }
}

/// How a call ended, for one instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The call succeeded (for a mutation: it took effect).
    Ok,
    /// The call was answered with this error code (`DryRunOperation` included).
    Error(String),
}

impl Outcome {
    pub fn error(code: impl Into<String>) -> Self {
        Self::Error(code.into())
    }

    /// `Ok` or the error code: the form the admin API and the log use.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ok => "Ok",
            Self::Error(code) => code,
        }
    }

    fn parse(s: &str) -> Self {
        if s == "Ok" {
            Self::Ok
        } else {
            Self::Error(s.to_string())
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// Which signature a request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signature {
    V1,
    V3,
}

/// One request as the log keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallRecord {
    /// Increases by one per request, from 1.
    pub seq: u64,
    pub request_id: String,
    /// RFC 3339, wall clock.
    pub time: String,
    /// `None` when the action was missing or unknown.
    pub action: Option<Action>,
    /// The instances the call named, with each one's outcome (empty for an unfiltered
    /// DescribeInstances, or when the request was refused before its parameters were read).
    pub instances: Vec<(String, Outcome)>,
    /// The outcome of the request as a whole (what the HTTP answer said).
    pub outcome: Outcome,
    pub http_status: u16,
    pub signature: Option<Signature>,
    pub access_key_id: Option<String>,
}

/// One counter: how many times `action` answered `outcome` for `instance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    pub action: Action,
    /// Empty for calls that named no instance (an unfiltered DescribeInstances, a refused
    /// request whose parameters were never read).
    pub instance: String,
    pub outcome: Outcome,
    pub count: u64,
}

/// Counters (kept forever, cheap) and the most recent requests (bounded).
pub struct CallLog {
    inner: Mutex<Inner>,
}

struct Inner {
    counters: HashMap<(Action, String, Outcome), u64>,
    log: VecDeque<CallRecord>,
    capacity: usize,
    seq: u64,
}

impl CallLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                counters: HashMap::new(),
                log: VecDeque::new(),
                capacity,
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters inconsistent beyond one
        // entry; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record(&self, mut record: CallRecord) {
        let mut inner = self.lock();
        inner.seq += 1;
        record.seq = inner.seq;
        if let Some(action) = record.action {
            if record.instances.is_empty() {
                *inner
                    .counters
                    .entry((action, String::new(), record.outcome.clone()))
                    .or_default() += 1;
            }
            for (id, outcome) in &record.instances {
                *inner
                    .counters
                    .entry((action, id.clone(), outcome.clone()))
                    .or_default() += 1;
            }
        }
        if inner.capacity > 0 {
            if inner.log.len() >= inner.capacity {
                inner.log.pop_front();
            }
            inner.log.push_back(record);
        }
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.counters.clear();
        inner.log.clear();
    }

    /// How many calls of `action` for `instance` ended with `outcome`.
    pub fn count(&self, action: Action, instance: &str, outcome: Outcome) -> u64 {
        let inner = self.lock();
        inner
            .counters
            .get(&(action, instance.to_string(), outcome))
            .copied()
            .unwrap_or(0)
    }

    /// How many calls of `action` named `instance`, whatever their outcome.
    pub fn count_all(&self, action: Action, instance: &str) -> u64 {
        self.lock()
            .counters
            .iter()
            .filter(|((a, id, _), _)| *a == action && id == instance)
            .map(|(_, n)| n)
            .sum()
    }

    /// How many requests of `action` there were in all (a batch call counts once per instance).
    pub fn total(&self, action: Action) -> u64 {
        self.lock()
            .counters
            .iter()
            .filter(|((a, _, _), _)| *a == action)
            .map(|(_, n)| n)
            .sum()
    }

    /// The counters, filtered by whichever of action, instance and outcome are given, sorted.
    pub fn counters(
        &self,
        action: Option<Action>,
        instance: Option<&str>,
        outcome: Option<&Outcome>,
    ) -> Vec<CallCount> {
        let mut out: Vec<CallCount> = self
            .lock()
            .counters
            .iter()
            .filter(|((a, id, o), _)| {
                action.is_none_or(|want| want == *a)
                    && instance.is_none_or(|want| want == id)
                    && outcome.is_none_or(|want| want == o)
            })
            .map(|((a, id, o), n)| CallCount {
                action: *a,
                instance: id.clone(),
                outcome: o.clone(),
                count: *n,
            })
            .collect();
        out.sort_by(|x, y| {
            (x.action, &x.instance, &x.outcome).cmp(&(y.action, &y.instance, &y.outcome))
        });
        out
    }

    /// The most recent requests, oldest first (at most the log's capacity).
    pub fn log(&self) -> Vec<CallRecord> {
        self.lock().log.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: Action, instances: &[(&str, Outcome)]) -> CallRecord {
        CallRecord {
            seq: 0,
            request_id: "r".into(),
            time: String::new(),
            action: Some(action),
            instances: instances
                .iter()
                .map(|(i, o)| (i.to_string(), o.clone()))
                .collect(),
            outcome: Outcome::Ok,
            http_status: 200,
            signature: None,
            access_key_id: None,
        }
    }

    #[test]
    fn counts_per_action_instance_and_outcome() {
        let log = CallLog::new(2);
        log.record(record(Action::RebootInstance, &[("i-a", Outcome::Ok)]));
        log.record(record(
            Action::RebootInstance,
            &[("i-a", Outcome::error("IncorrectInstanceStatus"))],
        ));
        log.record(record(
            Action::StartInstances,
            &[("i-a", Outcome::Ok), ("i-b", Outcome::Ok)],
        ));
        assert_eq!(log.count(Action::RebootInstance, "i-a", Outcome::Ok), 1);
        assert_eq!(log.count_all(Action::RebootInstance, "i-a"), 2);
        assert_eq!(log.total(Action::StartInstances), 2);
        assert_eq!(log.count(Action::RebootInstance, "i-b", Outcome::Ok), 0);
        // The log is bounded; the counters are not.
        let kept = log.log();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].seq, 2);
    }

    #[test]
    fn power_actions_keep_the_clients_ecs_names() {
        for power in PowerAction::ALL {
            let single = Action::power(power, false);
            let batch = Action::power(power, true);
            assert_eq!(single.as_str(), power.single());
            assert_eq!(batch.as_str(), power.batch());
            assert_eq!(single.power_action(), Some((power, false)));
            assert_eq!(batch.power_action(), Some((power, true)));
        }
        assert_eq!(Action::DescribeInstances.power_action(), None);
    }
}
