//! Prometheus metrics: reconciles by result, ECS calls by action and code, ECS latency,
//! objects by condition, stalled objects by namespace and reason, reboots not yet carried out,
//! whether this replica leads, and the instance-seconds power schedules hold instances stopped.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    pub action: String,
    /// `OK`, or the ECS error code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConditionLabels {
    /// `Ready`, `Reconciling`, `Stalled`, or `Unknown` for objects not yet reconciled.
    pub condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ScheduleLabels {
    pub namespace: String,
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StalledLabels {
    pub namespace: String,
    /// The `Stalled` condition's reason (`CredentialsInvalid`, `ScheduleInvalid`, ...).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DriftLabels {
    pub namespace: String,
    /// What the other hand did: `started` (while `Stopped` is desired) or `stopped`.
    pub direction: String,
}

/// Every metric the controller exports. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<ResultLabels, Counter>,
    ecs_calls: Family<CallLabels, Counter>,
    ecs_latency: Family<ActionLabels, Histogram>,
    objects: Family<ConditionLabels, Gauge>,
    held_stopped: Family<ScheduleLabels, Counter<f64, AtomicU64>>,
    stalled: Family<StalledLabels, Gauge>,
    reboots_pending: Family<NamespaceLabels, Gauge>,
    drift: Family<DriftLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ecs_power_controller");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let ecs_calls = Family::<CallLabels, Counter>::default();
        let ecs_latency = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let objects = Family::<ConditionLabels, Gauge>::default();
        let held_stopped = Family::<ScheduleLabels, Counter<f64, AtomicU64>>::default();
        let stalled = Family::<StalledLabels, Gauge>::default();
        let reboots_pending = Family::<NamespaceLabels, Gauge>::default();
        let drift = Family::<DriftLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciliations by result",
            reconciles.clone(),
        );
        registry.register(
            "ecs_calls",
            "ECS API calls by action and answer code",
            ecs_calls.clone(),
        );
        registry.register(
            "ecs_call_duration_seconds",
            "ECS API call latency by action",
            ecs_latency.clone(),
        );
        registry.register(
            "objects",
            "EcsInstance objects by the condition that is True",
            objects.clone(),
        );
        registry.register(
            "schedule_held_stopped_instance_seconds",
            "Instance-seconds EcsInstances were held stopped by their power schedule (no override), by namespace and schedule: the time not paid for running",
            held_stopped.clone(),
        );
        registry.register(
            "stalled_objects",
            "EcsInstance objects with Stalled=True, by namespace and the condition's reason",
            stalled.clone(),
        );
        registry.register(
            "reboots_pending",
            "EcsInstance objects whose spec.reboot token is not yet carried out (not settled in status), by namespace",
            reboots_pending.clone(),
        );
        registry.register(
            "drift_corrections",
            "Instances found out of the desired state the controller had brought them to (started or stopped by another hand), by namespace and direction: set back (spec.driftPolicy Correct) or reported (Report)",
            drift.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica reconciles (holds the Lease, or runs without leader election), else 0",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            ecs_calls,
            ecs_latency,
            objects,
            held_stopped,
            stalled,
            reboots_pending,
            drift,
            leader,
        }
    }
}

impl Metrics {
    pub(crate) fn reconciled(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// One ECS call: its answer code (`OK` on success) and how long it took.
    pub(crate) fn ecs_call(&self, action: &str, code: &str, took: Duration) {
        self.ecs_calls
            .get_or_create(&CallLabels {
                action: action.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.ecs_latency
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Replaces the per-condition object counts.
    pub(crate) fn set_objects(&self, counts: &[(&str, i64)]) {
        self.objects.clear();
        for (condition, count) in counts {
            self.objects
                .get_or_create(&ConditionLabels {
                    condition: condition.to_string(),
                })
                .set(*count);
        }
    }

    /// Replaces the stalled-object counts: one `(namespace, reason)` per Stalled object.
    pub(crate) fn set_stalled<'a>(&self, stalled: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.stalled.clear();
        for (namespace, reason) in stalled {
            self.stalled
                .get_or_create(&StalledLabels {
                    namespace: namespace.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Replaces the pending-reboot counts: one namespace per object whose reboot is pending.
    pub(crate) fn set_reboots_pending<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) {
        self.reboots_pending.clear();
        for namespace in namespaces {
            self.reboots_pending
                .get_or_create(&NamespaceLabels {
                    namespace: namespace.to_string(),
                })
                .inc();
        }
    }

    /// One drift corrected (or, under `spec.driftPolicy: Report`, reported) in `namespace`;
    /// `direction`: `started` or `stopped`.
    pub(crate) fn drift_corrected(&self, namespace: &str, direction: &str) {
        self.drift
            .get_or_create(&DriftLabels {
                namespace: namespace.to_string(),
                direction: direction.to_string(),
            })
            .inc();
    }

    /// Whether this replica reconciles now.
    pub(crate) fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// `seconds` more of one instance held stopped by `schedule` in `namespace`.
    pub(crate) fn held_stopped(&self, namespace: &str, schedule: &str, seconds: f64) {
        self.held_stopped
            .get_or_create(&ScheduleLabels {
                namespace: namespace.to_string(),
                schedule: schedule.to_string(),
            })
            .inc_by(seconds);
    }

    /// Total ECS calls so far for `action` with answer `code`.
    pub fn ecs_call_count(&self, action: &str, code: &str) -> u64 {
        self.ecs_calls
            .get_or_create(&CallLabels {
                action: action.to_string(),
                code: code.to_string(),
            })
            .get()
    }

    /// Drift corrected (or reported) so far in `namespace`, by `direction`.
    pub fn drift_count(&self, namespace: &str, direction: &str) -> u64 {
        self.drift
            .get_or_create(&DriftLabels {
                namespace: namespace.to_string(),
                direction: direction.to_string(),
            })
            .get()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_show_up_in_the_exposition() {
        let m = Metrics::default();
        m.ecs_call("StartInstance", "OK", Duration::from_millis(20));
        m.ecs_call(
            "StartInstance",
            "InstanceNotReady",
            Duration::from_millis(20),
        );
        m.reconciled("ok");
        m.set_objects(&[("Ready", 3)]);
        m.held_stopped("team", "office-hours", 10.0);
        m.held_stopped("team", "office-hours", 2.5);
        m.set_stalled([
            ("team", "CredentialsInvalid"),
            ("team", "CredentialsInvalid"),
        ]);
        m.set_reboots_pending(["team"]);
        m.set_leader(true);
        m.drift_corrected("team", "started");
        let text = m.encode();
        assert!(text.contains(
            r#"ecs_power_controller_drift_corrections_total{namespace="team",direction="started"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"ecs_power_controller_stalled_objects{namespace="team",reason="CredentialsInvalid"} 2"#
        ), "{text}");
        assert!(text.contains(r#"ecs_power_controller_reboots_pending{namespace="team"} 1"#));
        assert!(text.contains("ecs_power_controller_leader 1"));
        // A refresh replaces: a namespace whose objects recovered leaves the gauge.
        m.set_stalled([]);
        m.set_reboots_pending([]);
        m.set_leader(false);
        let text = m.encode();
        assert!(
            !text.contains("ecs_power_controller_stalled_objects{"),
            "{text}"
        );
        assert!(
            !text.contains("ecs_power_controller_reboots_pending{"),
            "{text}"
        );
        assert!(text.contains("ecs_power_controller_leader 0"));
        assert!(text.contains(
            r#"ecs_power_controller_ecs_calls_total{action="StartInstance",code="InstanceNotReady"} 1"#
        ));
        assert!(text.contains(r#"ecs_power_controller_reconciles_total{result="ok"} 1"#));
        assert!(text.contains(r#"ecs_power_controller_objects{condition="Ready"} 3"#));
        assert!(text.contains(
            r#"ecs_power_controller_schedule_held_stopped_instance_seconds_total{namespace="team",schedule="office-hours"} 12.5"#
        ), "{text}");
        assert_eq!(m.ecs_call_count("StartInstance", "OK"), 1);
    }
}
