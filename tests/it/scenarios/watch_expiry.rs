//! A fault only a real API server has: the controller's watch cannot resume because etcd has
//! compacted its history past the controller's resourceVersion (`410 Gone`), as after a long
//! network partition. The controller must re-list: a spec change made while it was cut off is
//! acted on, and nothing it already did is done again.
//!
//! A server of its own (crates/envtest), started with `--watch-cache=false`: a resumed watch
//! then reaches etcd, so a compaction alone makes it expire, exactly (with the watch cache the
//! expiry depends on how many events the cache holds, as on a busy cluster). The controller talks
//! to the server through a TCP proxy the test cuts (the partition) and heals; the test's own
//! admin client talks to the server directly. Skipped with a line when `KUBEBUILDER_ASSETS` is
//! unset outside CI.

use std::net::SocketAddr;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};

use crate::support::proxy::Proxy;
use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::api::{EcsInstance, PowerState};
use ecs_power_controller::demo::Sandbox;
use ecs_sim::{Action, SimConfig};

const ID: &str = "i-expiry001";

/// The mutating calls that named the instance, single or batched.
fn calls(sb: &Sandbox, actions: [Action; 2]) -> u64 {
    actions
        .iter()
        .map(|a| sb.sim.calls().count_all(*a, ID))
        .sum()
}

fn starts(sb: &Sandbox) -> u64 {
    calls(sb, [Action::StartInstance, Action::StartInstances])
}

fn stops(sb: &Sandbox) -> u64 {
    calls(sb, [Action::StopInstance, Action::StopInstances])
}

/// Whether a watch from `rv` now expires: `410 Gone`, as an answer or as the stream's first event.
async fn watch_expires(api: &Api<EcsInstance>, rv: &str) -> Result<(), String> {
    match api.watch(&WatchParams::default().timeout(5), rv).await {
        Err(kube::Error::Api(status)) if status.code == 410 => Ok(()),
        Err(e) => Err(format!("the watch failed otherwise: {e}")),
        Ok(stream) => match Box::pin(stream).next().await {
            Some(Ok(WatchEvent::Error(e))) if e.code == 410 => Ok(()),
            other => Err(format!("the watch resumed: {other:?}")),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_expired_by_etcd_compaction_is_relisted_and_nothing_is_missed_or_repeated() {
    let options = envtest::Options {
        extra_apiserver_args: vec!["--watch-cache=false".into()],
        ..envtest::Options::default()
    };
    let Some(env) = envtest::Envtest::from_env(options).await.unwrap() else {
        eprintln!("watch expiry: skipped, no real API server (set KUBEBUILDER_ASSETS)");
        return;
    };
    let sim = SimConfig::instant().with_instance(instance(ID, InstanceStatus::Stopped));
    let sb = Sandbox::on_cluster(env.client().await.unwrap(), sim)
        .await
        .unwrap();
    let upstream: SocketAddr = env.url().trim_start_matches("https://").parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let mut config = env.config().await.unwrap();
    config.cluster_url = proxy.url().parse().unwrap();
    let controller = sb
        .spawn_controller_on(kube::Client::try_from(config).unwrap(), fast_options(&sb))
        .unwrap();
    let api = Api::<EcsInstance>::namespaced(sb.client.clone(), &sb.namespace);

    create(&sb, &ecs_instance("web", ID, PowerState::Running)).await;
    let settled = wait_for(&sb, "web", WAIT, |o| {
        is_ready(o)
            && o.status.as_ref().and_then(|s| s.instance_status) == Some(InstanceStatus::Running)
    })
    .await;
    assert_eq!((starts(&sb), stops(&sb)), (1, 0));
    // The controller has seen at most this much of the history.
    let seen = settled.metadata.resource_version.clone().unwrap();

    // The partition: the controller's connections drop, and while it cannot reach the server
    // the spec changes and etcd compacts past everything it saw.
    proxy.cut();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"powerState": "Stopped"}})),
    )
    .await
    .unwrap();
    // One more write: etcd keeps the revision it compacts to, so the history must go past the
    // first write after the controller's view for a resumed watch to find it gone.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "during-the-cut"}}})),
    )
    .await
    .unwrap();
    tokio::task::block_in_place(|| env.compact_etcd()).unwrap();
    // The scenario holds: no watch can resume from what the controller saw.
    watch_expires(&api, &seen)
        .await
        .expect("a watch from the controller's resourceVersion expires (410)");

    // Healed: the controller's watch expires, it re-lists and finds the change.
    proxy.heal();
    wait_for(&sb, "web", WAIT_AFTER_OUTAGE, |o| {
        is_ready(o)
            && o.status.as_ref().and_then(|s| s.instance_status) == Some(InstanceStatus::Stopped)
    })
    .await;
    assert_eq!(
        (starts(&sb), stops(&sb)),
        (1, 1),
        "(starts, stops): the re-list repeated nothing and missed nothing"
    );

    // The new watch works: a later change is acted on, once.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"powerState": "Running"}})),
    )
    .await
    .unwrap();
    wait_for(&sb, "web", WAIT, |o| {
        is_ready(o)
            && o.status.as_ref().and_then(|s| s.instance_status) == Some(InstanceStatus::Running)
    })
    .await;
    assert_eq!((starts(&sb), stops(&sb)), (2, 1), "(starts, stops)");
    assert_eq!(
        sb.sim.calls().count_all(Action::RebootInstance, ID),
        0,
        "no reboot"
    );
    controller
        .stop()
        .await
        .expect("the controller stops cleanly");
    sb.shutdown().await;
    drop(proxy);
    drop(env);
}
