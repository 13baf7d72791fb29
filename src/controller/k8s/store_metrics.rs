//! Metrics read from the EcsInstance watch cache rather than counted as things happen: the
//! objects by condition, and the instance-seconds schedules hold instances stopped.

use std::time::Duration;

use kube::runtime::reflector::Store;

use crate::api::EcsInstance;
use crate::controller::k8s::schedule_cache;
use crate::controller::reconcile::conditions;
use crate::telemetry::Metrics;

/// One pass over the store every `every`: keeps the `objects{condition}` gauge current, and adds
/// the seconds since the last pass to the savings counter for each instance its schedule holds
/// stopped (see [`schedule_cache::held_stopped`]).
pub(crate) async fn count(store: Store<EcsInstance>, metrics: Metrics, every: Duration) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let now = tokio::time::Instant::now();
        let seconds = now.duration_since(last).as_secs_f64();
        last = now;
        let mut counts = [
            (conditions::READY, 0i64),
            (conditions::RECONCILING, 0),
            (conditions::STALLED, 0),
            ("Unknown", 0),
        ];
        for obj in store.state() {
            let conditions = obj
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            let index = [
                conditions::READY,
                conditions::RECONCILING,
                conditions::STALLED,
            ]
            .iter()
            .position(|t| {
                conditions
                    .iter()
                    .any(|c| c.type_ == *t && c.status == "True")
            })
            .unwrap_or(3);
            counts[index].1 += 1;
            if let Some((namespace, schedule)) = schedule_cache::held_stopped(&obj) {
                metrics.held_stopped(&namespace, &schedule, seconds);
            }
        }
        metrics.set_objects(&counts);
    }
}
