//! A fault only a real API server has: kube-apiserver restarts (stopped, then started again on
//! the same etcd and port, as in a control-plane upgrade) while the controller is in the middle
//! of a reboot. The instance is rebooted exactly once, the reboot is recorded once the server is
//! back, and the controller's watch resumes (a later edit is acted on).
//!
//! A server of its own (crates/envtest, from `KUBEBUILDER_ASSETS`), since it is stopped; skipped
//! with a line when `KUBEBUILDER_ASSETS` is unset outside CI.

use std::time::Duration;

use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_power_controller::demo::Sandbox;
use ecs_sim::{Action, SimConfig, TransitionTimes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_restarts_mid_reboot_one_reboot_and_the_watch_resumes() {
    let Some(mut env) = envtest::Envtest::from_env(envtest::Options::default())
        .await
        .unwrap()
    else {
        eprintln!("API server restart: skipped, no real API server (set KUBEBUILDER_ASSETS)");
        return;
    };
    // A reboot that takes a few seconds (the stop half, then the start), so the server can go
    // down while it is under way.
    let sim = SimConfig::instant()
        .with_instance(instance("i-restart01", InstanceStatus::Running))
        .with_transitions(TransitionTimes {
            stopping: Duration::from_secs(3),
            starting: Duration::from_secs(1),
            ..TransitionTimes::ZERO
        });
    let sb = Sandbox::on_cluster(env.client().await.unwrap(), sim)
        .await
        .unwrap();
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(
        &sb,
        &ecs_instance("web", "i-restart01", PowerState::Running),
    )
    .await;
    wait_for(&sb, "web", WAIT, is_ready).await;

    // The operator asks for a reboot; as soon as ECS has the RebootInstance call, the API
    // server goes away.
    let api = kube::Api::<ecs_power_controller::api::EcsInstance>::namespaced(
        sb.client.clone(),
        &sb.namespace,
    );
    api.patch(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"reboot": {"token": "release-42"}}})),
    )
    .await
    .unwrap();
    let reboots = || {
        sb.sim
            .calls()
            .count_all(Action::RebootInstance, "i-restart01")
    };
    let deadline = std::time::Instant::now() + WAIT;
    while reboots() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no RebootInstance call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| env.stop_apiserver());
    // Down for a while: the reboot finishes in ECS meanwhile, the controller cannot write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.start_apiserver().await.unwrap();

    // Back: the reboot is recorded, and it was the only one.
    // The controller retries its status write on its API backoff (5 s, doubling): a liveness bound
    // that covers a few of those.
    let done = wait_for(&sb, "web", WAIT * 4, token_done("release-42")).await;
    assert_eq!(
        done.status.as_ref().and_then(|s| s.instance_status),
        Some(InstanceStatus::Running)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(), 1, "exactly one RebootInstance");

    // The watch resumed: an edit after the restart is acted on (once the watcher's backoff
    // through the outage lets it try again: `WAIT` alone failed on a loaded CI machine).
    api.patch(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"powerState": "Stopped"}})),
    )
    .await
    .unwrap();
    wait_for(&sb, "web", WAIT_AFTER_OUTAGE, |o| {
        is_ready(o)
            && o.status.as_ref().and_then(|s| s.instance_status) == Some(InstanceStatus::Stopped)
    })
    .await;
    assert_eq!(reboots(), 1, "still exactly one RebootInstance");
    controller
        .stop()
        .await
        .expect("the controller stops cleanly");
    sb.shutdown().await;
    drop(env);
}
