//! The retry policy after a reconcile failed on the Kubernetes side (a status write refused, the
//! Secret unreadable), kept in memory per object.
//!
//! The ECS backoff lives in `status.retry` so that a restarted controller keeps it; but when the
//! status write itself fails, that window is never recorded, and a fixed requeue would make the
//! next mutating call a few seconds later, again and again. This memory is the floor under it:
//! exponential, capped, jittered, and forgotten on the first success or when the spec changes.
//! An object deleted while failing never succeeds: its entry is dropped once it has not failed
//! for [`FORGET_AFTER`], so the map does not grow with every such delete.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use tokio::time::Instant;

use crate::api::EcsInstance;
use crate::controller::reconcile::ecs_retry::RetryPolicy;

/// After one failure 5 s, doubling up to 5 minutes.
pub(crate) const POLICY: RetryPolicy = RetryPolicy {
    first: Duration::from_secs(5),
    ceiling: Duration::from_secs(300),
};

/// An object still failing is looked at again within [`POLICY`]'s ceiling; one whose last
/// failure is this old is gone (deleted, or moved to another replica).
const FORGET_AFTER: Duration = POLICY.ceiling.saturating_mul(3);

/// One object: namespace, name and uid (a recreated object starts afresh).
type Key = (Option<String>, String, Option<String>);

/// Consecutive failures of one object, at one generation of its spec.
struct Failures {
    generation: Option<i64>,
    count: u32,
    last: Instant,
}

/// Consecutive Kubernetes-side failures, per object.
#[derive(Default)]
pub(crate) struct ApiRetry {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl ApiRetry {
    /// Counts a failure of `obj`; returns how long to wait before looking again (`jitter` in
    /// `[0, 1)`). A changed spec (generation) starts the count again.
    pub(crate) fn failed(&self, obj: &EcsInstance, jitter: f64) -> Duration {
        let now = Instant::now();
        let mut failures = self.lock();
        failures.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        let fresh = Failures {
            generation: obj.metadata.generation,
            count: 0,
            last: now,
        };
        let entry = failures.entry(key(obj)).or_insert(fresh);
        if entry.generation != obj.metadata.generation {
            entry.generation = obj.metadata.generation;
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        POLICY.delay(entry.count, jitter)
    }

    /// A reconcile of `obj` went through: forget its failures.
    pub(crate) fn succeeded(&self, obj: &EcsInstance) {
        self.lock().remove(&key(obj));
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        // The map holds counters only: a panic elsewhere cannot leave it inconsistent.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(obj: &EcsInstance) -> Key {
    (obj.namespace(), obj.name_any(), obj.uid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceSpec, PowerState};

    fn object(generation: i64) -> EcsInstance {
        let spec = EcsInstanceSpec::minimal("i-web1", PowerState::Running);
        let mut obj = EcsInstance::new("web-1", spec);
        obj.metadata.namespace = Some("default".into());
        obj.metadata.uid = Some("uid-1".into());
        obj.metadata.generation = Some(generation);
        obj
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn failures_double_from_five_seconds_up_to_five_minutes() {
        let backoff = ApiRetry::default();
        let obj = object(1);
        let delays: Vec<_> = (0..9).map(|_| backoff.failed(&obj, 0.0)).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300].map(secs));
    }

    #[test]
    fn jitter_spreads_objects_apart_but_never_passes_the_ceiling() {
        let backoff = ApiRetry::default();
        let obj = object(1);
        assert_eq!(backoff.failed(&obj, 0.999), Duration::from_millis(5999));
        for _ in 0..20 {
            assert!(backoff.failed(&obj, 0.999) <= secs(300));
        }
    }

    #[test]
    fn a_success_or_a_spec_change_starts_afresh_and_objects_are_counted_apart() {
        let backoff = ApiRetry::default();
        let obj = object(1);
        backoff.failed(&obj, 0.0);
        assert_eq!(backoff.failed(&obj, 0.0), secs(10));
        backoff.succeeded(&obj);
        assert_eq!(backoff.failed(&obj, 0.0), secs(5));

        assert_eq!(backoff.failed(&object(2), 0.0), secs(5), "spec changed");

        let mut other = object(2);
        other.metadata.name = Some("web-2".into());
        assert_eq!(backoff.failed(&other, 0.0), secs(5));
        let mut recreated = object(2);
        recreated.metadata.uid = Some("uid-2".into());
        assert_eq!(backoff.failed(&recreated, 0.0), secs(5));
    }

    /// An object deleted while its reconciles kept failing: its entry goes once nothing has
    /// failed for it in three ceilings, and one that keeps failing keeps its count.
    #[tokio::test(start_paused = true)]
    async fn a_deleted_objects_failures_are_forgotten_and_a_failing_ones_are_not() {
        let backoff = ApiRetry::default();
        let deleted = object(1);
        let mut failing = object(1);
        failing.metadata.name = Some("web-2".into());
        backoff.failed(&deleted, 0.0);
        for _ in 0..8 {
            backoff.failed(&failing, 0.0);
            tokio::time::advance(POLICY.ceiling).await;
        }
        assert_eq!(
            backoff.remembered(),
            1,
            "only the failing object is remembered"
        );
        assert_eq!(
            backoff.failed(&failing, 0.0),
            secs(300),
            "its count was kept"
        );
    }
}
