//! The RBAC in `deploy/` grants exactly what the controller uses.
//!
//! The real binary (`ecs-power-controller run --leader-elect`) runs against kubesim through a
//! recording proxy while an operator starts, stops, restarts and reboots an instance. Every
//! Kubernetes request it makes is classified as RBAC sees it (apiGroup, resource, verb,
//! namespace), and:
//! - what it did must be in [`CONTROLLER_CALLS`], the maintained table;
//! - the table must be what `deploy/` grants, rule for rule (base ClusterRole, the
//!   single-namespace overlay's Role, the leader-election Role, the multi-tenant overlay's
//!   namespaces ClusterRole, whose calls a run with that overlay's guards makes);
//! - with `WATCH_NAMESPACE` (the single-namespace overlay) it must stay inside its namespace,
//!   or a Role could not cover it.
//!
//! And for people: the aggregated `view`/`edit` ClusterRoles (deploy/user-roles) cover what
//! `kubectl ecsi status` (view) and `kubectl ecsi reboot|pause|resume` (edit) call.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ecs_client::InstanceStatus;
use ecs_power_controller::api::EcsInstance;
use ecs_power_controller::cli::request_reboot;
use ecs_sim::{Action, InstanceSpec, SimConfig, Simulator};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kubesim::{KubeSim, KubeSimOptions};
use serde_json::{Value, json};

/// Where the controller is allowed to make a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// In the namespaces it watches (all: ClusterRole; one: Role there).
    Watched,
    /// In its own namespace only (the leader-election Role).
    Own,
    /// Cluster-wide, only with `--shared-credentials-selector` (the multi-tenant overlay's
    /// ClusterRole `ecs-power-controller-namespaces`).
    Tenancy,
}

/// Every Kubernetes call the controller makes: (apiGroup, resource, verb, scope, where in the
/// code). Change this table together with the code and `deploy/`.
const CONTROLLER_CALLS: &[(&str, &str, &str, Scope, &str)] = &[
    (
        "ecs.powerctl.io",
        "ecsinstances",
        "list",
        Scope::Watched,
        "runtime.rs ensure_crd_installed; watcher",
    ),
    (
        "ecs.powerctl.io",
        "ecsinstances",
        "watch",
        Scope::Watched,
        "runtime.rs watcher",
    ),
    (
        "ecs.powerctl.io",
        "ecsinstances/status",
        "patch",
        Scope::Watched,
        "reconcile.rs write, write_reboot_intent",
    ),
    (
        "ecs.powerctl.io",
        "ecspowerschedules",
        "list",
        Scope::Watched,
        "runtime.rs ensure_crd_installed; schedules.rs changes, status_controller (watchers)",
    ),
    (
        "ecs.powerctl.io",
        "ecspowerschedules",
        "watch",
        Scope::Watched,
        "schedules.rs changes, status_controller (watchers)",
    ),
    (
        "ecs.powerctl.io",
        "ecspowerschedules/status",
        "patch",
        Scope::Watched,
        "schedules.rs reconcile_status",
    ),
    (
        "ecs.powerctl.io",
        "ecsholidaycalendars",
        "list",
        Scope::Watched,
        "runtime.rs ensure_crd_installed; calendar_cache.rs changes, calendar_status (watchers)",
    ),
    (
        "ecs.powerctl.io",
        "ecsholidaycalendars",
        "watch",
        Scope::Watched,
        "calendar_cache.rs changes, calendar_status (watchers)",
    ),
    (
        "ecs.powerctl.io",
        "ecsholidaycalendars/status",
        "patch",
        Scope::Watched,
        "calendar_status.rs reconcile_status",
    ),
    // get only: list/watch cannot be limited to referenced Secrets (nor to their metadata), so
    // they would let the controller read every Secret it can see.
    (
        "",
        "secrets",
        "get",
        Scope::Watched,
        "cluster.rs KubeCluster::secret; runtime.rs referenced_secret_changes (metadata)",
    ),
    (
        "events.k8s.io",
        "events",
        "create",
        Scope::Watched,
        "controller/events.rs Publisher::publish",
    ),
    (
        "events.k8s.io",
        "events",
        "patch",
        Scope::Watched,
        "controller/events.rs Publisher::publish (a repeated event's series)",
    ),
    // Metadata only, narrowed by the selector; no get (nothing reads one Namespace by name).
    (
        "",
        "namespaces",
        "list",
        Scope::Tenancy,
        "namespaces.rs check; watcher",
    ),
    (
        "",
        "namespaces",
        "watch",
        Scope::Tenancy,
        "namespaces.rs watcher",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "get",
        Scope::Own,
        "leader.rs",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "create",
        Scope::Own,
        "leader.rs",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "update",
        Scope::Own,
        "leader.rs (renewal, replace)",
    ),
];

/// Calls in the table that the scenario cannot provoke, and why they are still needed.
/// The Publisher patches an event's series instead of creating one when the same event (same
/// reason, action, object and note) repeats within six minutes; the scenario's events all say
/// something new (a new RequestId, a new state).
const NOT_PROVOKED: &[(&str, &str, &str)] = &[("events.k8s.io", "events", "patch")];

const CONTROLLER_NAMESPACE: &str = "ecs-power-controller";
const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");
const KEY_ID: &str = "LTAI5tDeployRbacTest";
const KEY_SECRET: &str = "deploy-rbac-test-secret";

/// One request as RBAC authorises it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
}

/// Parses a resource request path the way the API server's request info resolver does.
fn classify(method: &Method, uri: &Uri) -> Option<Seen> {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None; // discovery
    }
    let (namespace, rest) = if rest[0] == "namespaces" && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let resource = match rest.get(2) {
        Some(sub) => format!("{}/{sub}", rest[0]),
        None => rest[0].to_string(),
    };
    let named = rest.len() >= 2;
    let watch = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    Some(Seen {
        group: group.to_string(),
        resource,
        verb: verb.to_string(),
        namespace,
    })
}

/// A loopback proxy in front of kubesim that records every request.
struct RecordingProxy {
    upstream: Client,
    seen: Mutex<Vec<Seen>>,
}

async fn forward(State(proxy): State<Arc<RecordingProxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(seen) = classify(&parts.method, &parts.uri) {
        proxy
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seen);
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut upstream = axum::http::Request::builder()
        .method(parts.method)
        .uri(path);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(upstream) = upstream.body(kube::client::Body::from(bytes.to_vec())) else {
        return (StatusCode::BAD_REQUEST, "bad request").into_response();
    };
    match proxy.upstream.send(upstream).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            parts.headers.remove("transfer-encoding");
            parts.headers.remove("connection");
            Response::from_parts(parts, AxumBody::new(body))
        }
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

impl RecordingProxy {
    async fn start(upstream: Client) -> (Arc<Self>, String) {
        let proxy = Arc::new(Self {
            upstream,
            seen: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (proxy, url)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn saw(&self, group: &str, resource: &str, verb: &str) -> bool {
        self.seen()
            .iter()
            .any(|s| s.group == group && s.resource == resource && s.verb == verb)
    }
}

/// kubesim with the CRD, the controller's namespace and `namespaces`, one Secret in each.
async fn cluster(namespaces: &[&str]) -> (KubeSim, Client) {
    let api = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    let client = api.client().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in ecs_power_controller::api::CRDS {
        crds.create(&PostParams::default(), &crd()).await.unwrap();
    }
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in std::iter::once(&CONTROLLER_NAMESPACE).chain(namespaces) {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let _ = ns_api.create(&PostParams::default(), &namespace).await;
    }
    (api, client)
}

async fn create_instance(client: &Client, namespace: &str, name: &str, id: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    // `data`, not `stringData`: kubesim does not convert one into the other as a real server does.
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("ecs-credentials".into()),
            ..Default::default()
        },
        data: Some(
            [("accessKeyId", KEY_ID), ("accessKeySecret", KEY_SECRET)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    let _ = secrets.create(&PostParams::default(), &secret).await;
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), namespace);
    let obj: EcsInstance = serde_json::from_value(json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1",
        "kind": "EcsInstance",
        "metadata": {"name": name},
        "spec": {
            "instanceId": id,
            "regionId": "cn-hangzhou",
            "powerState": "Running",
            "credentialsSecretRef": {"name": "ecs-credentials"},
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// An EcsPowerSchedule in `namespace` with the holiday calendar it uses (nothing follows it:
/// both statuses are still written).
async fn create_schedule(client: &Client, namespace: &str) {
    let calendars: Api<ecs_power_controller::api::EcsHolidayCalendar> =
        Api::namespaced(client.clone(), namespace);
    let calendar = serde_json::from_value(json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1",
        "kind": "EcsHolidayCalendar",
        "metadata": {"name": "holidays"},
        "spec": {"days": [{"date": "2030-01-01", "name": "New Year"}]},
    }))
    .unwrap();
    calendars
        .create(&PostParams::default(), &calendar)
        .await
        .unwrap();
    let api: Api<ecs_power_controller::api::EcsPowerSchedule> =
        Api::namespaced(client.clone(), namespace);
    let obj = serde_json::from_value(json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1",
        "kind": "EcsPowerSchedule",
        "metadata": {"name": "office-hours"},
        "spec": {
            "timeZone": "Asia/Shanghai",
            "running": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "08:00", "to": "20:00"}],
            "calendars": [{"name": "holidays"}],
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// The controller binary as the Deployment runs it, pointed at `kubeconfig`.
fn spawn_controller(
    kubeconfig: &Path,
    ecs_endpoint: &str,
    watch_namespace: Option<&str>,
    pod_namespace: &str,
    home: &Path,
    env: &[(String, String)],
) -> Controller {
    let mut command = std::process::Command::new(BIN);
    command
        .args([
            "run",
            "--leader-elect",
            "--log-format=json",
            "--metrics-addr=127.0.0.1:0",
        ])
        .arg(format!("--ecs-endpoint={ecs_endpoint}"))
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", "ecs-power-controller-0")
        .env("POD_NAMESPACE", pod_namespace)
        .env("HOME", home)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .env_remove("WATCH_NAMESPACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(ns) = watch_namespace {
        command.env("WATCH_NAMESPACE", ns);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    Controller(Some(command.spawn().expect("the controller binary starts")))
}

/// The controller under test, killed on drop so a failed assertion leaves no process behind.
struct Controller(Option<std::process::Child>);

impl Controller {
    /// Stops it and returns its stderr, for failure messages.
    fn stop(&mut self) -> String {
        let Some(mut child) = self.0.take() else {
            return String::new();
        };
        let _ = child.kill();
        match child.wait_with_output() {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(err) => format!("(no output: {err})"),
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` until it holds; on timeout, fails with the controller's log and the object.
async fn wait_until<F, Fut>(
    what: &str,
    controller: &mut Controller,
    client: &Client,
    object: (&str, &str),
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        if start.elapsed() > Duration::from_secs(30) {
            let api: Api<EcsInstance> = Api::namespaced(client.clone(), object.0);
            let obj = match api.get(object.1).await {
                Ok(obj) => serde_json::to_string_pretty(&obj).unwrap_or_default(),
                Err(err) => err.to_string(),
            };
            let stderr = controller.stop();
            panic!("timed out waiting for {what}\nobject: {obj}\ncontroller stderr:\n{stderr}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ready=True for the current generation, with `check` on the status.
async fn ready_with(client: &Client, ns: &str, name: &str, check: impl Fn(&Value) -> bool) -> bool {
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), ns);
    let Ok(obj) = api.get(name).await else {
        return false;
    };
    let generation = obj.metadata.generation;
    let Ok(value) = serde_json::to_value(&obj) else {
        return false;
    };
    let status = &value["status"];
    let ready = status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    ready && status["observedGeneration"].as_i64() == generation && check(status)
}

/// Waits for Ready=True with the instance in `state`.
async fn wait_ready(
    controller: &mut Controller,
    client: &Client,
    object: (&str, &str),
    state: &str,
) {
    let what = format!("{}/{} Ready and {state}", object.0, object.1);
    wait_until(&what, controller, client, object, || {
        ready_with(client, object.0, object.1, |s| s["instanceStatus"] == state)
    })
    .await;
}

async fn set_power(client: &Client, ns: &str, name: &str, state: &str) {
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"powerState": state}})),
    )
    .await
    .unwrap();
}

fn table() -> BTreeSet<(String, String, String)> {
    CONTROLLER_CALLS
        .iter()
        .map(|(g, r, v, _, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

fn table_in(scope: Scope) -> BTreeSet<(String, String, String)> {
    CONTROLLER_CALLS
        .iter()
        .filter(|(_, _, _, s, _)| *s == scope)
        .map(|(g, r, v, _, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deploy-rbac-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A controller binary (as [`spawn_controller`] runs it) whose every Kubernetes request goes
/// through a [`RecordingProxy`] in front of `api`; its scratch directory is removed on success
/// by the caller.
async fn recorded_controller(
    api: &KubeSim,
    client: &Client,
    sim: &Simulator,
    name: &str,
    namespaces: (Option<&str>, &str),
    env: &[(String, String)],
) -> (Arc<RecordingProxy>, Controller, PathBuf) {
    let (proxy, url) = RecordingProxy::start(client.clone()).await;
    let dir = scratch(name);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml().replace(&api.url(), &url)).unwrap();
    let (watch_namespace, pod_namespace) = namespaces;
    let controller = spawn_controller(
        &kubeconfig,
        &sim.endpoint(),
        watch_namespace,
        pod_namespace,
        &dir,
        env,
    );
    (proxy, controller, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_uses_exactly_the_calls_in_the_table() {
    let (api, client) = cluster(&["shop"]).await;
    let sim = Simulator::start(
        SimConfig::instant()
            .with_key(KEY_ID, KEY_SECRET)
            .with_instance(InstanceSpec {
                // Started long ago, so a reboot is sent (and proven by a later StartTime) at once.
                start_time: Some("2026-01-01T08:00Z".into()),
                ..InstanceSpec::new("i-bp1rbac0001", "cn-hangzhou").status(InstanceStatus::Running)
            }),
    )
    .await
    .unwrap();
    create_instance(&client, "shop", "web-1", "i-bp1rbac0001").await;
    create_schedule(&client, "shop").await;
    let (proxy, mut controller, dir) = recorded_controller(
        &api,
        &client,
        &sim,
        "all",
        (None, CONTROLLER_NAMESPACE),
        &[],
    )
    .await;

    // An operator's day: the running instance is rebooted, then stopped and started again.
    let web1 = ("shop", "web-1");
    wait_ready(&mut controller, &client, web1, "Running").await;
    let asked = request_reboot(
        &client,
        "shop",
        "web-1",
        ecs_power_controller::api::RebootMode::Soft,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    wait_until(
        "RebootInstance for the new token",
        &mut controller,
        &client,
        web1,
        || {
            let token = asked.token.clone();
            let api: Api<EcsInstance> = Api::namespaced(client.clone(), "shop");
            async move {
                api.get("web-1").await.is_ok_and(|obj| {
                    obj.status
                        .and_then(|s| s.last_action)
                        .is_some_and(|a| a.token.as_deref() == Some(token.as_str()))
                })
            }
        },
    )
    .await;
    set_power(&client, "shop", "web-1", "Stopped").await;
    wait_ready(&mut controller, &client, web1, "Stopped").await;
    set_power(&client, "shop", "web-1", "Running").await;
    wait_ready(&mut controller, &client, web1, "Running").await;
    assert_eq!(
        sim.calls()
            .count_all(Action::RebootInstance, "i-bp1rbac0001"),
        1
    );
    // The leader renews its Lease every 2 s.
    wait_until(
        "a lease renewal",
        &mut controller,
        &client,
        ("shop", "web-1"),
        || {
            let renewed = proxy.saw("coordination.k8s.io", "leases", "update");
            async move { renewed }
        },
    )
    .await;
    wait_until(
        "the schedule's status",
        &mut controller,
        &client,
        ("shop", "web-1"),
        || {
            let written = proxy.saw("ecs.powerctl.io", "ecspowerschedules/status", "patch");
            async move { written }
        },
    )
    .await;
    wait_until(
        "the calendar's status",
        &mut controller,
        &client,
        ("shop", "web-1"),
        || {
            let written = proxy.saw("ecs.powerctl.io", "ecsholidaycalendars/status", "patch");
            async move { written }
        },
    )
    .await;
    let stderr = controller.stop();

    let seen = proxy.seen();
    let used: BTreeSet<(String, String, String)> = seen
        .iter()
        .map(|s| (s.group.clone(), s.resource.clone(), s.verb.clone()))
        .collect();
    let table = table();
    let unlisted: Vec<_> = used.difference(&table).collect();
    assert!(
        unlisted.is_empty(),
        "the controller made calls missing from CONTROLLER_CALLS (and so from deploy/ RBAC): {unlisted:?}\ncontroller stderr:\n{stderr}"
    );
    let not_provoked: BTreeSet<(String, String, String)> = NOT_PROVOKED
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    // The tenancy calls come only with the multi-tenant overlay's guards (the test below).
    let tenancy = table_in(Scope::Tenancy);
    let unused: Vec<_> = table
        .difference(&used)
        .filter(|c| !not_provoked.contains(*c) && !tenancy.contains(*c))
        .collect();
    assert!(
        unused.is_empty(),
        "CONTROLLER_CALLS lists calls the controller never made (remove them, or explain them in NOT_PROVOKED): {unused:?}"
    );
    // Leases only ever in the controller's own namespace.
    for s in seen.iter().filter(|s| s.resource == "leases") {
        assert_eq!(s.namespace.as_deref(), Some(CONTROLLER_NAMESPACE), "{s:?}");
    }
    sim.shutdown().await;
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_namespace_every_call_stays_in_that_namespace() {
    // The single-namespace overlay: the controller runs in `shop` and watches `shop`.
    let (api, client) = cluster(&["shop", "other"]).await;
    let sim = Simulator::start(
        SimConfig::instant()
            .with_key(KEY_ID, KEY_SECRET)
            .with_instance(InstanceSpec::new("i-bp1rbac0002", "cn-hangzhou"))
            .with_instance(
                InstanceSpec::new("i-bp1rbac0003", "cn-hangzhou").status(InstanceStatus::Stopped),
            ),
    )
    .await
    .unwrap();
    create_instance(&client, "shop", "web-2", "i-bp1rbac0002").await;
    create_instance(&client, "other", "not-mine", "i-bp1rbac0003").await;
    create_schedule(&client, "shop").await;
    create_schedule(&client, "other").await;
    let (proxy, mut controller, dir) =
        recorded_controller(&api, &client, &sim, "one", (Some("shop"), "shop"), &[]).await;
    wait_ready(&mut controller, &client, ("shop", "web-2"), "Running").await;
    wait_until(
        "a lease renewal",
        &mut controller,
        &client,
        ("shop", "web-2"),
        || {
            let renewed = proxy.saw("coordination.k8s.io", "leases", "update");
            async move { renewed }
        },
    )
    .await;
    let stderr = controller.stop();

    let outside: Vec<Seen> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.namespace.as_deref() != Some("shop"))
        .collect();
    assert!(
        outside.is_empty(),
        "with WATCH_NAMESPACE=shop a Role in shop must cover every call, but these are outside it: {outside:?}\ncontroller stderr:\n{stderr}"
    );
    assert_eq!(
        sim.status("i-bp1rbac0003"),
        Some(InstanceStatus::Stopped),
        "an instance in another namespace was touched"
    );
    sim.shutdown().await;
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The environment the multi-tenant overlay's patch sets on the controller.
fn multi_tenant_env() -> Vec<(String, String)> {
    let patch = load("deploy/overlays/multi-tenant/guards.yaml");
    patch["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let value = e["value"].as_str().expect("a literal value");
            (e["name"].as_str().unwrap().to_string(), value.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_multi_tenant_guards_the_namespace_calls_are_the_tenancy_rows() {
    // As the multi-tenant overlay runs it: both guards, from the overlay's own patch. The
    // instance is claimed for `shop` by its tag, the object uses a Secret of its own, and `shop`
    // carries no label (it needs none with a Secret).
    let env = multi_tenant_env();
    let tag = env
        .iter()
        .find(|(k, _)| k == "INSTANCE_TAG_GUARD")
        .map(|(_, v)| v.clone())
        .expect("the overlay sets INSTANCE_TAG_GUARD");
    assert!(env.iter().any(|(k, _)| k == "SHARED_CREDENTIALS_SELECTOR"));
    let (api, client) = cluster(&["shop"]).await;
    let sim = Simulator::start(
        SimConfig::instant()
            .with_key(KEY_ID, KEY_SECRET)
            .with_instance(
                InstanceSpec::new("i-bp1rbac0004", "cn-hangzhou")
                    .status(InstanceStatus::Stopped)
                    .tag(&tag, "shop"),
            ),
    )
    .await
    .unwrap();
    create_instance(&client, "shop", "web-4", "i-bp1rbac0004").await;
    let (proxy, mut controller, dir) = recorded_controller(
        &api,
        &client,
        &sim,
        "tenancy",
        (None, CONTROLLER_NAMESPACE),
        &env,
    )
    .await;
    wait_ready(&mut controller, &client, ("shop", "web-4"), "Running").await;
    let stderr = controller.stop();

    let used: BTreeSet<(String, String, String)> = proxy
        .seen()
        .iter()
        .map(|s| (s.group.clone(), s.resource.clone(), s.verb.clone()))
        .collect();
    let table = table();
    let unlisted: Vec<_> = used.difference(&table).collect();
    assert!(
        unlisted.is_empty(),
        "calls missing from CONTROLLER_CALLS: {unlisted:?}\ncontroller stderr:\n{stderr}"
    );
    let tenancy = table_in(Scope::Tenancy);
    assert!(
        tenancy.is_subset(&used),
        "the tenancy rows were not all used: {tenancy:?} vs {used:?}"
    );
    sim.shutdown().await;
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

// ---- the table against deploy/ ----

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every (apiGroup, resource, verb) a Role or ClusterRole grants. Wildcards and
/// resourceNames are refused: least privilege is checked rule by rule.
fn granted(path: &str, kind: &str) -> BTreeSet<(String, String, String)> {
    let role = load(path);
    assert_eq!(role["kind"], kind, "{path}");
    grants(&role, path)
}

fn grants(role: &Value, path: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "{path}: unexpected rule shape {rule}"
        );
        for group in rule["apiGroups"].as_array().expect("apiGroups") {
            for resource in rule["resources"].as_array().expect("resources") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    let triple = (
                        group.as_str().unwrap_or_default().to_string(),
                        resource.as_str().unwrap_or_default().to_string(),
                        verb.as_str().unwrap_or_default().to_string(),
                    );
                    assert!(
                        !triple.0.contains('*')
                            && !triple.1.contains('*')
                            && !triple.2.contains('*'),
                        "{path}: wildcard in {triple:?}"
                    );
                    assert!(
                        out.insert(triple.clone()),
                        "{path}: {triple:?} granted twice"
                    );
                }
            }
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_exactly_the_watched_calls() {
    assert_eq!(
        granted("deploy/base/clusterrole.yaml", "ClusterRole"),
        table_in(Scope::Watched)
    );
}

#[test]
fn the_single_namespace_role_grants_exactly_the_watched_calls() {
    assert_eq!(
        granted("deploy/overlays/single-namespace/role.yaml", "Role"),
        table_in(Scope::Watched)
    );
}

#[test]
fn the_multi_tenant_cluster_role_grants_exactly_the_tenancy_calls() {
    assert_eq!(
        granted(
            "deploy/overlays/multi-tenant/namespaces-clusterrole.yaml",
            "ClusterRole"
        ),
        table_in(Scope::Tenancy)
    );
}

#[test]
fn the_leader_election_role_grants_exactly_the_lease_calls() {
    assert_eq!(
        granted("deploy/base/leader-election-role.yaml", "Role"),
        table_in(Scope::Own)
    );
}

#[test]
fn the_bindings_give_the_roles_to_the_controllers_service_account() {
    for (path, role_kind, role_name) in [
        (
            "deploy/base/clusterrolebinding.yaml",
            "ClusterRole",
            "ecs-power-controller",
        ),
        (
            "deploy/base/leader-election-rolebinding.yaml",
            "Role",
            "ecs-power-controller-leader-election",
        ),
        (
            "deploy/overlays/single-namespace/rolebinding.yaml",
            "Role",
            "ecs-power-controller",
        ),
        (
            "deploy/overlays/multi-tenant/namespaces-clusterrolebinding.yaml",
            "ClusterRole",
            "ecs-power-controller-namespaces",
        ),
    ] {
        let binding = load(path);
        assert_eq!(binding["roleRef"]["kind"], role_kind, "{path}");
        assert_eq!(binding["roleRef"]["name"], role_name, "{path}");
        let subjects = binding["subjects"].as_array().expect("subjects");
        assert_eq!(subjects.len(), 1, "{path}: one subject");
        assert_eq!(subjects[0]["kind"], "ServiceAccount", "{path}");
        assert_eq!(subjects[0]["name"], "ecs-power-controller", "{path}");
    }
    assert_eq!(
        load("deploy/base/deployment.yaml")["spec"]["template"]["spec"]["serviceAccountName"],
        "ecs-power-controller"
    );
}

// ---- what namespace users get: the aggregated ClusterRoles ----

/// (apiGroup, resource, verb) triples.
type Grants = BTreeSet<(String, String, String)>;

/// The aggregated user roles by name, each with the built-in role it aggregates into.
fn user_roles() -> Vec<(String, String, Grants)> {
    let path = "deploy/user-roles/aggregated-clusterroles.yaml";
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .map(|role| {
            assert_eq!(role["kind"], "ClusterRole", "{path}");
            let labels = role["metadata"]["labels"].as_object().expect("labels");
            let into: Vec<&str> = labels
                .iter()
                .filter(|(_, v)| *v == "true")
                .filter_map(|(k, _)| k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-"))
                .collect();
            assert_eq!(into.len(), 1, "{path}: one aggregation label per role");
            let name = role["metadata"]["name"].as_str().unwrap().to_string();
            (name, into[0].to_string(), grants(&role, path))
        })
        .collect()
}

/// `status.rebootHistory` and `status.lastRebootToken` are what keep a settled reboot token
/// from running again: whoever may write `ecsinstances/status` can erase them and replay a
/// token. No user role may (the README's Security section says so and cites this test);
/// `grants` already refuses wildcards, so the triples are the whole grant.
#[test]
fn no_user_role_may_write_the_status_that_remembers_reboot_tokens() {
    let roles = user_roles();
    assert!(!roles.is_empty());
    for (name, into, grants) in roles {
        let writes: Vec<_> = grants
            .iter()
            .filter(|(group, resource, verb)| {
                group == "ecs.powerctl.io"
                    && resource == "ecsinstances/status"
                    && !["get", "list", "watch"].contains(&verb.as_str())
            })
            .collect();
        assert!(
            writes.is_empty(),
            "{name} (aggregated into {into}) may write ecsinstances/status: {writes:?}"
        );
    }
}

/// Runs `kubectl-ecsi ARGS` (the binary under its plugin name) against `kubeconfig`.
async fn plugin(dir: &Path, kubeconfig: &Path, args: &[&str]) {
    let link = dir.join("kubectl-ecsi");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, &link).unwrap();
    }
    let out = tokio::process::Command::new(&link)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl-ecsi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn calls(seen: &[Seen]) -> Grants {
    seen.iter()
        .map(|s| (s.group.clone(), s.resource.clone(), s.verb.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_and_edit_users_can_run_the_plugin_they_are_meant_to() {
    let roles = user_roles();
    let role = |into: &str| -> Grants {
        roles
            .iter()
            .find(|(_, i, _)| i == into)
            .unwrap_or_else(|| panic!("no role aggregates into {into}"))
            .2
            .clone()
    };
    let (view, edit) = (role("view"), role("edit"));
    assert_eq!(
        roles.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(),
        ["ecs-power-controller-view", "ecs-power-controller-edit"]
    );
    assert!(
        view.iter()
            .all(|(_, _, verb)| ["get", "list", "watch"].contains(&verb.as_str())),
        "view is read-only: {view:?}"
    );
    // The status stays the controller's: no user role writes it.
    assert!(
        !edit.iter().any(|(_, r, _)| r.ends_with("/status")),
        "status stays the controller's: {edit:?}"
    );
    // Kubernetes' built-in `view` aggregates into `edit`: an edit user holds both.
    let edit: BTreeSet<_> = edit.union(&view).cloned().collect();

    let (api, client) = cluster(&["shop"]).await;
    create_instance(&client, "shop", "web-1", "i-bp1rbac0001").await;
    let (proxy, url) = RecordingProxy::start(client.clone()).await;
    let dir = scratch("plugin");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml().replace(&api.url(), &url)).unwrap();

    plugin(&dir, &kubeconfig, &["status", "-n", "shop"]).await;
    let read = calls(&proxy.seen());
    assert!(!read.is_empty(), "the proxy saw the plugin");
    assert!(
        read.is_subset(&view),
        "`kubectl ecsi status` needs {read:?}, view grants {view:?}"
    );

    for args in [
        &["reboot", "web-1", "-n", "shop"][..],
        &["pause", "web-1", "-n", "shop"],
        &["resume", "web-1", "-n", "shop"],
    ] {
        plugin(&dir, &kubeconfig, args).await;
    }
    let all = calls(&proxy.seen());
    assert!(
        all.is_subset(&edit),
        "`kubectl ecsi reboot|pause|resume` need {all:?}, edit grants {edit:?}"
    );
    assert!(all.contains(&(
        "ecs.powerctl.io".into(),
        "ecsinstances".into(),
        "patch".into()
    )));
    let _ = std::fs::remove_dir_all(&dir);
    api.shutdown().await;
}
