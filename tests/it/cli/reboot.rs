//! `ecs-power-controller reboot NAME [-n NS] [--hard]`: one fresh token per request, clear
//! errors when there is nothing to reboot.

use ecs_power_controller::api::{EcsInstance, RebootMode};
use ecs_power_controller::cli::{RebootError, RebootRequested, request_reboot};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, CustomResourceExt};
use kubesim::{KubeSim, KubeSimOptions, RequestFilter, Verb};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");

async fn cluster(with_crd: bool) -> (KubeSim, Client) {
    let api = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    let client = api.client().unwrap();
    if with_crd {
        Api::<CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &EcsInstance::crd())
            .await
            .unwrap();
    }
    let shop = Namespace {
        metadata: ObjectMeta {
            name: Some("shop".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &shop)
        .await
        .unwrap();
    (api, client)
}

async fn create(client: &Client, ns: &str, name: &str, reboot: Option<serde_json::Value>) {
    let mut spec = json!({
        "instanceId": "i-bp1reboot0001",
        "regionId": "cn-hangzhou",
        "powerState": "Running",
    });
    if let Some(r) = reboot {
        spec["reboot"] = r;
    }
    let obj: EcsInstance = serde_json::from_value(json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1",
        "kind": "EcsInstance",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    Api::<EcsInstance>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

async fn reboot_spec(client: &Client, ns: &str, name: &str) -> Option<(String, RebootMode)> {
    let obj = Api::<EcsInstance>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    obj.spec.reboot.map(|r| (r.token, r.mode))
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// `reboot web-1 -n shop` at the time `now`.
async fn ask(client: &Client, mode: RebootMode, now: &str) -> RebootRequested {
    request_reboot(client, "shop", "web-1", mode, at(now))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reboot_request_sets_a_timestamp_token_and_keeps_the_rest_of_the_spec() {
    let (sim, client) = cluster(true).await;
    create(&client, "shop", "web-1", None).await;
    let done = ask(&client, RebootMode::Soft, "2026-11-22T10:00:00.123Z").await;
    // The time of the request, to the nanosecond (a time token: satisfied by any later boot).
    assert_eq!(done.token, "2026-11-22T10:00:00.123Z");
    assert_eq!(done.previous_token, None);
    assert_eq!(done.superseded, None);
    assert_eq!(
        reboot_spec(&client, "shop", "web-1").await,
        Some(("2026-11-22T10:00:00.123Z".to_string(), RebootMode::Soft))
    );
    let obj = Api::<EcsInstance>::namespaced(client.clone(), "shop")
        .get("web-1")
        .await
        .unwrap();
    assert_eq!(obj.spec.instance_id, "i-bp1reboot0001");
    assert_eq!(obj.metadata.generation, Some(2), "the spec changed once");
    sim.shutdown().await;
}

#[tokio::test]
async fn every_request_asks_for_one_more_reboot_even_within_the_same_second() {
    let (sim, client) = cluster(true).await;
    create(&client, "shop", "web-1", Some(json!({"token": "old"}))).await;
    let first = ask(&client, RebootMode::Soft, "2026-11-22T10:00:00.1Z").await;
    assert_eq!(first.previous_token.as_deref(), Some("old"));
    // No controller has settled "old": the new request supersedes it, and says so.
    assert_eq!(first.superseded.as_deref(), Some("old"));
    let second = ask(&client, RebootMode::Hard, "2026-11-22T10:00:00.9Z").await;
    assert_ne!(
        second.token, first.token,
        "a repeated token would be ignored"
    );
    assert_eq!(second.token, "2026-11-22T10:00:00.9Z");
    assert_eq!(
        reboot_spec(&client, "shop", "web-1").await,
        Some((second.token.clone(), RebootMode::Hard))
    );
    sim.shutdown().await;
}

/// Another client's clock is ahead of ours: the new token still comes after the one it
/// replaces (a boot after it then satisfies both).
#[tokio::test]
async fn a_token_never_goes_back_in_time() {
    let (sim, client) = cluster(true).await;
    create(
        &client,
        "shop",
        "web-1",
        Some(json!({"token": "2026-11-22T10:05:00Z"})),
    )
    .await;
    let done = ask(&client, RebootMode::Soft, "2026-11-22T10:00:00Z").await;
    assert_eq!(done.token, "2026-11-22T10:05:00.000000001Z");
    sim.shutdown().await;
}

/// The token is written only over the one that was read: a write that lost a race (409) is
/// made again from a fresh read.
#[tokio::test]
async fn a_conflicting_write_is_tried_again_from_a_fresh_read() {
    let (sim, client) = cluster(true).await;
    create(&client, "shop", "web-1", None).await;
    let patches = RequestFilter::any()
        .verb(Verb::Patch)
        .resource("ecsinstances");
    sim.faults().conflict_next(2, patches);
    let done = ask(&client, RebootMode::Soft, "2026-11-22T10:00:00Z").await;
    // Two conflicts, three reads, three writes.
    assert_eq!(
        sim.faults().requests().count(Verb::Patch, "ecsinstances"),
        3
    );
    assert_eq!(sim.faults().requests().count(Verb::Get, "ecsinstances"), 3);
    assert_eq!(
        reboot_spec(&client, "shop", "web-1").await,
        Some((done.token, RebootMode::Soft))
    );
    sim.shutdown().await;
}

/// Three `reboot` commands at once, all reading the object before any writes (slow reads):
/// they still write one after another, each over the token the previous one wrote, and each
/// says which pending token it superseded. None is lost without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_requests_are_written_one_after_another() {
    let (sim, client) = cluster(true).await;
    create(&client, "shop", "web-1", None).await;
    sim.faults().delay(
        std::time::Duration::from_millis(300),
        RequestFilter::any()
            .verb(Verb::Get)
            .resource("ecsinstances"),
    );
    let requests = (0..3).map(|i| {
        let client = client.clone();
        async move {
            let now = at("2026-11-22T10:00:00Z") + jiff::SignedDuration::from_millis(i);
            request_reboot(&client, "shop", "web-1", RebootMode::Soft, now).await
        }
    });
    let done: Vec<_> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Replaying the writes in order: each replaced exactly the token written before it.
    let mut current: Option<String> = None;
    let mut pending: Vec<_> = done.clone();
    while !pending.is_empty() {
        let next = pending
            .iter()
            .position(|d| d.previous_token == current)
            .unwrap_or_else(|| panic!("no request replaced {current:?}: {done:#?}"));
        let d = pending.remove(next);
        assert_eq!(d.superseded, d.previous_token, "{d:#?}");
        current = Some(d.token);
    }
    assert_eq!(
        reboot_spec(&client, "shop", "web-1").await.map(|(t, _)| t),
        current
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_object_and_a_missing_crd_are_told_apart() {
    let (sim, client) = cluster(true).await;
    let err = request_reboot(&client, "shop", "nope", RebootMode::Soft, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, RebootError::NotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("shop/nope"), "{message}");
    sim.shutdown().await;

    let (sim, client) = cluster(false).await;
    let err = request_reboot(&client, "shop", "web-1", RebootMode::Soft, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, RebootError::CrdMissing), "{err:?}");
    assert!(err.to_string().contains("CRD is not installed"), "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_uses_kubeconfig_and_says_what_it_did() {
    let (sim, client) = cluster(true).await;
    create(&client, "shop", "web-1", None).await;
    let dir = std::env::temp_dir().join(format!("reboot-command-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    // The child talks to kubesim, which runs on this test's runtime: wait for it off-runtime.
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(BIN);
        command
            .arg("reboot")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn");
        tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
    };

    let out = run(&["web-1", "-n", "shop", "--hard"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (token, mode) = reboot_spec(&client, "shop", "web-1").await.unwrap();
    assert_eq!(mode, RebootMode::Hard);
    assert!(
        stdout.contains("shop/web-1") && stdout.contains("hard reboot") && stdout.contains(&token),
        "{stdout}"
    );
    assert!(!stdout.contains("supersedes"), "{stdout}");

    // Again before any controller carried the first one out: said plainly.
    let out = run(&["web-1", "-n", "shop"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let (second, _) = reboot_spec(&client, "shop", "web-1").await.unwrap();
    assert!(
        stdout.contains(&format!(
            "it supersedes token {token}, which was still pending: one reboot after {second} satisfies both requests"
        )),
        "{stdout}"
    );

    // Without -n: the kubeconfig's namespace (default), where there is no web-1.
    let out = run(&["web-1"]).await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("default/web-1 not found"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
