//! The controller end to end, over HTTP: the in-process Kubernetes API server, the ECS
//! simulator, and the real controller between them. Power state, drift, dry run, pause,
//! credentials.

mod support;

use std::time::Duration;

use ecs_power_controller::api::{PAUSED_ANNOTATION, PowerState, SecretReference};
use ecs_power_controller::ecs::{InstanceStatus, StoppedMode};
use ecs_power_controller::sim::{Action, Outcome};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::scenario::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_stopped_instance_is_started_and_reported_ready() {
    let sb = sandbox(vec![instance("i-stopped1", InstanceStatus::Stopped)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &ecs_instance("web", "i-stopped1", PowerState::Running),
    )
    .await;

    let obj = wait_for(&sb.client, "web", WAIT, is_ready).await;
    let status = obj.status.unwrap();
    assert_eq!(status.instance_status, Some(InstanceStatus::Running));
    assert_eq!(cond_of(&status, "Reconciling"), "False");
    assert_eq!(cond_of(&status, "Stalled"), "False");
    let last = status.last_action.expect("the start is recorded");
    assert!(!last.request_id.is_empty());
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StartInstance, "i-stopped1", Outcome::Ok),
        1
    );
    assert!(
        event_reasons(&sb.client, "web")
            .await
            .contains(&"Starting".to_string())
    );
    controller.stop().await.unwrap();
}

fn cond_of(status: &ecs_power_controller::api::EcsInstanceStatus, t: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_running_instance_is_stopped_with_the_requested_mode() {
    let sb = sandbox(vec![instance("i-running1", InstanceStatus::Running)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    let mut obj = ecs_instance("batch", "i-running1", PowerState::Stopped);
    obj.spec.stop = Some(ecs_power_controller::api::StopSpec {
        force: true,
        stopped_mode: StoppedMode::StopCharging,
    });
    create(&sb.client, &obj).await;

    wait_for(&sb.client, "batch", WAIT, is_ready).await;
    let view = sb.sim.instance("i-running1").unwrap();
    assert_eq!(view.status, InstanceStatus::Stopped);
    assert_eq!(view.stopped_mode, "StopCharging");
    assert_eq!(
        sb.sim.calls().count_all(Action::StopInstance, "i-running1"),
        1
    );
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn an_instance_stopped_behind_our_back_is_started_again() {
    let sb = sandbox(vec![instance("i-drift1", InstanceStatus::Stopped)]).await;
    let mut options = fast_options();
    options.settings.resync = Duration::from_millis(500);
    let controller = sb.spawn_controller(options).unwrap();
    create(
        &sb.client,
        &ecs_instance("web", "i-drift1", PowerState::Running),
    )
    .await;
    wait_for(&sb.client, "web", WAIT, is_ready).await;

    // Someone stops it in the console.
    sb.sim
        .set_status("i-drift1", InstanceStatus::Stopped)
        .unwrap();
    wait_for(&sb.client, "web", WAIT, |_| {
        sb.sim
            .calls()
            .count(Action::StartInstance, "i-drift1", Outcome::Ok)
            == 2
    })
    .await;
    wait_for(&sb.client, "web", WAIT, is_ready).await;
    assert!(
        event_reasons(&sb.client, "web")
            .await
            .contains(&"DriftDetected".to_string())
    );
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn dry_run_checks_with_ecs_and_never_changes_the_instance() {
    let sb = sandbox(vec![instance("i-dry1", InstanceStatus::Running)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    let mut obj = ecs_instance("canary", "i-dry1", PowerState::Stopped);
    obj.spec.dry_run = true;
    create(&sb.client, &obj).await;

    let obj = wait_for_reason(&sb.client, "canary", "Ready", "False", "DryRun").await;
    assert!(
        condition(&obj, "Ready")
            .unwrap()
            .message
            .contains("StopInstance")
    );
    assert_eq!(cond(&obj, "Reconciling").0, "False");
    assert_eq!(cond(&obj, "Stalled").0, "False");
    assert!(obj.status.unwrap().last_action.unwrap().dry_run);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sb.sim.status("i-dry1"), Some(InstanceStatus::Running));
    assert_eq!(
        sb.sim.calls().count(
            Action::StopInstance,
            "i-dry1",
            Outcome::error("DryRunOperation")
        ),
        1,
        "one dry run per resync, not a loop"
    );
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StopInstance, "i-dry1", Outcome::Ok),
        0
    );
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn the_paused_annotation_stops_mutations_until_removed() {
    let sb = sandbox(vec![instance("i-paused1", InstanceStatus::Running)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    let mut obj = ecs_instance("maint", "i-paused1", PowerState::Stopped);
    obj.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    create(&sb.client, &obj).await;

    let obj = wait_for_reason(&sb.client, "maint", "Ready", "False", "Paused").await;
    assert!(
        condition(&obj, "Ready")
            .unwrap()
            .message
            .contains("StopInstance")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sb.sim.calls().count_all(Action::StopInstance, "i-paused1"),
        0
    );
    assert_eq!(sb.sim.status("i-paused1"), Some(InstanceStatus::Running));

    // Unpausing acts at once (an annotation change triggers a reconcile).
    api(&sb.client)
        .patch(
            "maint",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}})),
        )
        .await
        .unwrap();
    wait_for(&sb.client, "maint", WAIT, is_ready).await;
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StopInstance, "i-paused1", Outcome::Ok),
        1
    );
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_instance_is_stalled_with_instance_not_found() {
    let sb = sandbox(vec![]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &ecs_instance("ghost", "i-doesnotexist", PowerState::Running),
    )
    .await;
    let obj = wait_for_reason(&sb.client, "ghost", "Stalled", "True", "InstanceNotFound").await;
    assert!(
        condition(&obj, "Stalled")
            .unwrap()
            .message
            .contains("spec.instanceId")
    );
    assert_eq!(cond(&obj, "Ready").0, "False");
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn a_security_lock_is_stalled_and_never_started() {
    let sb = sandbox(vec![
        instance("i-locked1", InstanceStatus::Stopped).lock("security"),
    ])
    .await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &ecs_instance("q", "i-locked1", PowerState::Running),
    )
    .await;
    wait_for_reason(
        &sb.client,
        "q",
        "Stalled",
        "True",
        "InstanceLockedForSecurity",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sb.sim.calls().count_all(Action::StartInstance, "i-locked1"),
        0
    );

    // Lifting the lock: the next look (the slow recheck, or any spec change) starts it.
    sb.sim.clear_locks("i-locked1").unwrap();
    patch_spec(&sb.client, "q", json!({"start": {"initLocalDisk": false}})).await;
    wait_for(&sb.client, "q", WAIT, is_ready).await;
    controller.stop().await.unwrap();
}

async fn create_secret(client: &kube::Client, name: &str, id: &str, secret: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "stringData": {"accessKeyId": id, "accessKeySecret": secret},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_secret_stalls_and_rotating_it_fixes_without_a_restart() {
    let sb = sandbox(vec![instance("i-cred1", InstanceStatus::Stopped)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    let (key_id, key_secret) = sb.sim.access_key();
    create_secret(&sb.client, "ecs-credentials", &key_id, "not-the-secret").await;
    let mut obj = ecs_instance("db", "i-cred1", PowerState::Running);
    obj.spec.credentials_secret_ref = Some(SecretReference {
        name: "ecs-credentials".into(),
    });
    create(&sb.client, &obj).await;

    let obj = wait_for_reason(&sb.client, "db", "Stalled", "True", "CredentialsInvalid").await;
    let message = condition(&obj, "Stalled").unwrap().message;
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(
        !message.contains("not-the-secret"),
        "the secret leaked: {message}"
    );
    let retry = obj.status.unwrap().retry;
    assert_eq!(retry.count, 1);

    // Rotate the Secret: the controller notices (Secret watch) and acts at once, despite the
    // 10-minute recheck it had scheduled.
    Api::<Secret>::namespaced(sb.client.clone(), NS)
        .patch(
            "ecs-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"accessKeySecret": key_secret}})),
        )
        .await
        .unwrap();
    wait_for(&sb.client, "db", WAIT, is_ready).await;
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_secret_names_the_secret_and_the_keys_it_needs() {
    let sb = sandbox(vec![instance("i-cred2", InstanceStatus::Stopped)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    let mut obj = ecs_instance("db2", "i-cred2", PowerState::Running);
    obj.spec.credentials_secret_ref = Some(SecretReference {
        name: "nowhere".into(),
    });
    create(&sb.client, &obj).await;
    let obj = wait_for_reason(&sb.client, "db2", "Stalled", "True", "CredentialsInvalid").await;
    let message = condition(&obj, "Stalled").unwrap().message;
    assert!(
        message.contains("default/nowhere") && message.contains("accessKeyId"),
        "{message}"
    );

    // Creating it fixes it.
    let (id, secret) = sb.sim.access_key();
    create_secret(&sb.client, "nowhere", &id, &secret).await;
    wait_for(&sb.client, "db2", WAIT, is_ready).await;
    controller.stop().await.unwrap();
}
