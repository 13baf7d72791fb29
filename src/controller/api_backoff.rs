//! The backoff after a reconcile failed on the Kubernetes side (a status write refused, the
//! Secret unreadable), kept in memory per object.
//!
//! The ECS backoff lives in `status.retry` so that a restarted controller keeps it; but when the
//! status write itself fails, that window is never recorded, and a fixed requeue would make the
//! next mutating call a few seconds later, again and again. This memory is the floor under it:
//! exponential, capped, jittered, and forgotten on the first success or when the spec changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;

use super::backoff::Schedule;
use crate::api::EcsInstance;

/// After one failure 5 s, doubling up to 5 minutes.
pub(crate) const SCHEDULE: Schedule = Schedule {
    first: Duration::from_secs(5),
    ceiling: Duration::from_secs(300),
};

/// One object: namespace, name and uid (a recreated object starts afresh).
type Key = (Option<String>, String, Option<String>);

/// Consecutive failures of one object, at one generation of its spec.
struct Failures {
    generation: Option<i64>,
    count: u32,
}

/// Consecutive Kubernetes-side failures, per object.
#[derive(Default)]
pub(crate) struct ApiBackoff {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl ApiBackoff {
    /// Counts a failure of `obj`; returns how long to wait before looking again (`jitter` in
    /// `[0, 1)`). A changed spec (generation) starts the count again.
    pub(crate) fn failed(&self, obj: &EcsInstance, jitter: f64) -> Duration {
        let mut failures = self.lock();
        let entry = failures.entry(key(obj)).or_insert(Failures {
            generation: obj.metadata.generation,
            count: 0,
        });
        if entry.generation != obj.metadata.generation {
            *entry = Failures {
                generation: obj.metadata.generation,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
        SCHEDULE.delay(entry.count, jitter)
    }

    /// A reconcile of `obj` went through: forget its failures.
    pub(crate) fn succeeded(&self, obj: &EcsInstance) {
        self.lock().remove(&key(obj));
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
        let backoff = ApiBackoff::default();
        let obj = object(1);
        let delays: Vec<_> = (0..9).map(|_| backoff.failed(&obj, 0.0)).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300].map(secs));
    }

    #[test]
    fn jitter_spreads_objects_apart_but_never_passes_the_ceiling() {
        let backoff = ApiBackoff::default();
        let obj = object(1);
        assert_eq!(backoff.failed(&obj, 0.999), Duration::from_millis(5999));
        for _ in 0..20 {
            assert!(backoff.failed(&obj, 0.999) <= secs(300));
        }
    }

    #[test]
    fn a_success_or_a_spec_change_starts_afresh_and_objects_are_counted_apart() {
        let backoff = ApiBackoff::default();
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
}
