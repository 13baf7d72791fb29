//! Scenario helpers: a sandbox (in-process Kubernetes API + ECS simulator), EcsInstances, and
//! waiting for what an operator would watch for.

use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::{EcsInstance, EcsInstanceSpec, PowerState, RebootRequest};
use ecs_power_controller::controller::{Config, Timings};
use ecs_power_controller::demo::Sandbox;
use ecs_sim::{InstanceSpec, SimConfig};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const REGION: &str = "cn-hangzhou";

/// Where a scenario runs.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The in-process Kubernetes API server (every `cargo test`).
    Local,
    /// The cluster `KUBECONFIG` points at (the ignored `real_cluster` suite).
    Cluster,
}

/// `yyyy-MM-ddTHH:mmZ` an hour ago: a StartTime old enough for a provable reboot.
pub fn an_hour_ago() -> String {
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%MZ")
        .to_string()
}

/// A simulated instance in `REGION`.
pub fn instance(id: &str, status: InstanceStatus) -> InstanceSpec {
    let mut spec = InstanceSpec::new(id, REGION).status(status);
    if status == InstanceStatus::Running {
        spec.start_time = Some(an_hour_ago());
    }
    spec
}

/// A sandbox whose simulator has these instances and zero transition times.
pub async fn sandbox(backend: Backend, instances: Vec<InstanceSpec>) -> Sandbox {
    let mut config = SimConfig::instant();
    config.instances = instances;
    match backend {
        Backend::Local => Sandbox::start(config).await.expect("sandbox starts"),
        Backend::Cluster => {
            let client = Client::try_default()
                .await
                .expect("KUBECONFIG points at a reachable cluster");
            Sandbox::on_cluster(client, config)
                .await
                .expect("sandbox starts on the cluster")
        }
    }
}

/// The in-process API server of a local sandbox (for its fault injection).
pub fn local(sb: &Sandbox) -> &kubesim::KubeSim {
    sb.kube.as_ref().expect("a local sandbox")
}

/// Timings for tests (quick polls, short grace, no StartTime margin), watching the sandbox's
/// namespace only.
pub fn fast_options(sb: &Sandbox) -> Config {
    Config {
        namespace: Some(sb.namespace.clone()),
        concurrency: 16,
        // Long: periodic looks (aligned to resync boundaries) must not land inside a
        // scenario's "no further calls" window.
        resync: Duration::from_secs(3600),
        timings: Timings {
            transition_poll: Duration::from_millis(100),
            reboot_confirmation_grace: Duration::from_secs(2),
            start_time_margin: Duration::ZERO,
        },
        secret_recheck: Duration::from_millis(200),
        ..Config::default()
    }
}

pub fn ecs_instance(name: &str, instance_id: &str, power: PowerState) -> EcsInstance {
    EcsInstance::new(
        name,
        EcsInstanceSpec {
            instance_id: instance_id.into(),
            region_id: REGION.into(),
            power_state: power,
            reboot: None,
            start: None,
            stop: None,
            dry_run: false,
            credentials_secret_ref: None,
        },
    )
}

pub fn with_token(mut obj: EcsInstance, token: &str) -> EcsInstance {
    obj.spec.reboot = Some(RebootRequest {
        token: token.into(),
        mode: Default::default(),
    });
    obj
}

pub fn api(sb: &Sandbox) -> Api<EcsInstance> {
    Api::namespaced(sb.client.clone(), &sb.namespace)
}

pub async fn create(sb: &Sandbox, obj: &EcsInstance) {
    api(sb)
        .create(&PostParams::default(), obj)
        .await
        .expect("create EcsInstance");
}

/// Merge-patches the spec (a user editing the manifest).
pub async fn patch_spec(sb: &Sandbox, name: &str, spec: serde_json::Value) {
    api(sb)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("patch spec");
}

pub fn condition(obj: &EcsInstance, type_: &str) -> Option<Condition> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// `(status, reason)` of a condition, or `("", "")`.
pub fn cond(obj: &EcsInstance, type_: &str) -> (String, String) {
    condition(obj, type_).map_or((String::new(), String::new()), |c| (c.status, c.reason))
}

pub fn is_ready(obj: &EcsInstance) -> bool {
    cond(obj, "Ready").0 == "True"
        && obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation
}

/// Polls until `pred` holds; panics with the last status after `timeout`.
pub async fn wait_for(
    sb: &Sandbox,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&EcsInstance) -> bool,
) -> EcsInstance {
    let started = std::time::Instant::now();
    loop {
        if let Ok(obj) = api(sb).get(name).await
            && pred(&obj)
        {
            return obj;
        }
        if started.elapsed() > timeout {
            let last = api(sb).get(name).await.ok();
            panic!(
                "{name}: condition not met within {timeout:?}; last status: {:#?}",
                last.and_then(|o| o.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the object has a condition with this reason.
pub async fn wait_for_reason(
    sb: &Sandbox,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> EcsInstance {
    wait_for(sb, name, Duration::from_secs(20), |o| {
        cond(o, type_) == (status.to_string(), reason.to_string())
    })
    .await
}

/// Reasons of the events recorded for an object (events.k8s.io/v1 and core/v1 alike).
pub async fn event_reasons(sb: &Sandbox, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(sb.client.clone(), &sb.namespace);
    let mut reasons = Vec::new();
    if let Ok(list) = events.list(&ListParams::default()).await {
        for e in list.items {
            if e.involved_object.name.as_deref() == Some(name) {
                reasons.extend(e.reason.clone());
            }
        }
    }
    let new_events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(sb.client.clone(), &sb.namespace);
    if let Ok(list) = new_events.list(&ListParams::default()).await {
        for e in list.items {
            if e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name) {
                reasons.extend(e.reason.clone());
            }
        }
    }
    reasons
}
