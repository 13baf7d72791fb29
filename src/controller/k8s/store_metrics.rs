//! Metrics read from the EcsInstance watch cache rather than counted as things happen: the
//! objects by condition, and the instance-seconds schedules hold instances stopped.

use std::time::Duration;

use kube::runtime::reflector::Store;

use crate::api::EcsInstance;
use crate::controller::k8s::schedule_cache;
use crate::controller::reconcile::conditions;
use crate::telemetry::Metrics;

/// One pass over the store every `every`: keeps the `objects{condition}`,
/// `stalled_objects{namespace,reason}` and `reboots_pending{namespace}` gauges current, and adds
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
        let objects = store.state();
        let mut stalled = Vec::new();
        let mut reboots_pending = Vec::new();
        for obj in &objects {
            let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
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
            if let Some(c) = conditions
                .iter()
                .find(|c| c.type_ == conditions::STALLED && c.status == "True")
            {
                stalled.push((namespace, c.reason.as_str()));
            }
            if reboot_pending(obj) {
                reboots_pending.push(namespace);
            }
            if let Some((namespace, schedule)) = schedule_cache::held_stopped(obj) {
                metrics.held_stopped(&namespace, &schedule, seconds);
            }
        }
        metrics.set_objects(&counts);
        metrics.set_stalled(stalled);
        metrics.set_reboots_pending(reboots_pending);
    }
}

/// A reboot asked for and neither carried out nor otherwise settled (one in flight counts as
/// not yet carried out).
fn reboot_pending(obj: &EcsInstance) -> bool {
    let Some(reboot) = &obj.spec.reboot else {
        return false;
    };
    !obj.status.as_ref().is_some_and(|s| {
        s.last_reboot_token.as_deref() == Some(reboot.token.as_str())
            || s.reboot_history.iter().any(|r| r.token == reboot.token)
    })
}
