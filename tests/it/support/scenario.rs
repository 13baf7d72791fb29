//! The scenario fixture: a sandbox (a Kubernetes API and the ECS simulator) with the controllers
//! started on it, torn down on drop; EcsInstances; and waiting for what an operator would watch
//! for.

use std::ops::Deref;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::{EcsInstance, EcsInstanceSpec, PowerState, RebootRequest};
use ecs_power_controller::controller::{Config, Timings};
use ecs_power_controller::demo::{RunningController, Sandbox};
use ecs_power_controller::telemetry::Metrics;
use ecs_sim::{Action, CallRecord, InstanceSpec, SimConfig};
use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

pub const REGION: &str = "cn-hangzhou";

/// How long a scenario waits for what it expects before it fails. A liveness bound only: no
/// assertion depends on how much of it is used.
pub const WAIT: Duration = Duration::from_secs(30);

/// How long a scenario waits for the controller's watches to come back after the API server was
/// unreachable (restarted, or cut off by a proxy). kube-runtime's watcher, like client-go's
/// reflector, retries on a backoff that doubles up to 30 s plus up to as much again of jitter
/// (`default_backoff`), so after an outage of a few seconds its next attempt may come a minute
/// after the server is back; then the usual wait for the controller to act.
pub const WAIT_AFTER_OUTAGE: Duration = Duration::from_secs(60 + 30);

/// Where a scenario runs.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The in-process Kubernetes API server (every `cargo test`).
    Local,
    /// A real Kubernetes API server ([`real_server`]): crates/envtest's, one per test binary,
    /// from `KUBEBUILDER_ASSETS` (every CI run), or, with `REAL_CLUSTER=kubeconfig`, the cluster
    /// `KUBECONFIG` points at (kind in `.github/workflows/real-cluster.yml`).
    Cluster,
}

/// `REAL_CLUSTER=kubeconfig`: the real-server tests run on the cluster `KUBECONFIG` points at
/// instead of starting envtest's kube-apiserver.
pub const REAL_CLUSTER_ENV: &str = "REAL_CLUSTER";

/// The real API server the [`Backend::Cluster`] tests run on.
#[derive(Clone, Copy, Debug)]
pub enum RealServer {
    /// crates/envtest's kube-apiserver + etcd, shared by the test binary.
    Envtest(&'static envtest::Envtest),
    /// The cluster `KUBECONFIG` (or `~/.kube/config`) points at.
    Kubeconfig,
}

/// The real API server for this test binary; `None` when there is none to run on
/// (`KUBEBUILDER_ASSETS` unset outside CI: envtest prints one line saying so). With `CI=true`
/// and no `KUBEBUILDER_ASSETS` it panics: CI never skips the real server silently.
pub fn real_server() -> Option<RealServer> {
    if std::env::var(REAL_CLUSTER_ENV).is_ok_and(|v| v == "kubeconfig") {
        return Some(RealServer::Kubeconfig);
    }
    match envtest::Envtest::shared() {
        Ok(Some(env)) => Some(RealServer::Envtest(env)),
        Ok(None) => None,
        Err(e) => panic!("{e}"),
    }
}

impl RealServer {
    /// An admin kube config for the server.
    pub async fn config(&self) -> kube::Config {
        match self {
            RealServer::Envtest(env) => env.config().await.expect("envtest's kubeconfig"),
            RealServer::Kubeconfig => kube::Config::infer()
                .await
                .expect("KUBECONFIG points at a reachable cluster"),
        }
    }

    /// An admin client (built in the calling runtime) and the `Warning` headers the server
    /// sends it.
    pub async fn client_with_warnings(&self) -> (Client, envtest::Warnings) {
        envtest::client_with_warnings(self.config().await).expect("a kube client")
    }

    /// The kubeconfig file for kubectl and child processes.
    pub fn kubeconfig_path(&self) -> std::path::PathBuf {
        match self {
            RealServer::Envtest(env) => env.kubeconfig_path().to_path_buf(),
            RealServer::Kubeconfig => std::env::var_os("KUBECONFIG")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".kube/config")
                }),
        }
    }
}

/// [`real_server`], or one line saying the test is skipped.
pub fn real_server_or_skip(test: &str) -> Option<RealServer> {
    let server = real_server();
    if server.is_none() {
        eprintln!("{test}: skipped, no real API server (set KUBEBUILDER_ASSETS)");
    }
    server
}

/// Runs one flow on a fresh [`Scenario`]; a flow that returns has its controllers stopped
/// gracefully (each must stop cleanly) and its sandbox shut down. A flow that panics is torn
/// down by the scenario's `Drop`. On [`Backend::Cluster`] without a real server the flow is
/// skipped (it passes, having printed why); with one, any `Warning` the server sent about the
/// scenario's requests (the CRDs' install, the flow's and the controller's writes) fails it.
pub async fn run_flow(backend: Backend, flow: impl AsyncFnOnce(&Scenario)) {
    let real = match backend {
        Backend::Local => None,
        Backend::Cluster => match real_server_or_skip("flow") {
            Some(real) => Some(real),
            None => return,
        },
    };
    let scenario = Scenario::start_on(real).await;
    flow(&scenario).await;
    scenario.finish().await;
}

/// One scenario's world: a sandbox (API server or cluster namespace, ECS simulator with zero
/// transition times) and the controllers started on it. Derefs to the [`Sandbox`].
///
/// Dropping it tears everything down, also when the flow panics half-way:
/// - every controller's stop channel closes, so it winds down (and the test runtime's end
///   cancels whatever is left of it);
/// - the in-process API server and the simulator stop listening (their own `Drop`);
/// - on a real cluster the scenario's namespace is deleted, from a thread with a runtime and a
///   client of its own: the test's runtime may be the one unwinding, and `Drop` cannot await.
pub struct Scenario {
    /// `None` once [`Scenario::finish`] has shut it down.
    sandbox: Option<Sandbox>,
    controllers: Mutex<Vec<Option<RunningController>>>,
    /// The real server, if any, and the warnings it sent the scenario's client.
    real: Option<(RealServer, envtest::Warnings)>,
}

/// A controller replica started by [`Scenario::controller`].
pub struct Replica {
    pub metrics: Metrics,
    index: usize,
}

impl Scenario {
    /// A sandbox without instances (add them with [`Scenario::add`]), in-process or on `real`.
    pub async fn start_on(real: Option<RealServer>) -> Self {
        match real {
            None => Self {
                sandbox: Some(sandbox(Backend::Local, Vec::new()).await),
                controllers: Mutex::new(Vec::new()),
                real: None,
            },
            Some(server) => {
                let (sandbox, warnings) = real_sandbox(server, Vec::new()).await;
                Self {
                    sandbox: Some(sandbox),
                    controllers: Mutex::new(Vec::new()),
                    real: Some((server, warnings)),
                }
            }
        }
    }

    /// Adds instances to the simulator.
    pub fn add(&self, instances: impl IntoIterator<Item = InstanceSpec>) {
        self.sim
            .add_instances(instances)
            .expect("valid instance specs");
    }

    /// The in-process API server (for its fault injection); panics on a real cluster.
    pub fn kube(&self) -> &kubesim::KubeSim {
        self.kube.as_ref().expect("a local sandbox")
    }

    /// Timings for tests (quick polls, short grace, no StartTime margin), watching the
    /// scenario's namespace only.
    pub fn fast_options(&self) -> Config {
        fast_options(self)
    }

    /// Starts a controller with [`Scenario::fast_options`].
    pub fn controller(&self) -> Replica {
        self.controller_with(self.fast_options())
    }

    pub fn controller_with(&self, options: Config) -> Replica {
        let running = self
            .spawn_controller(options)
            .expect("the controller starts");
        let metrics = running.metrics.clone();
        let mut controllers = self.controllers();
        controllers.push(Some(running));
        Replica {
            metrics,
            index: controllers.len() - 1,
        }
    }

    /// A crash: the replica is dropped where it stands, nothing in flight finishes.
    pub async fn kill(&self, replica: Replica) {
        let running = self.controllers()[replica.index].take();
        if let Some(running) = running {
            running.kill().await;
        }
    }

    fn controllers(&self) -> MutexGuard<'_, Vec<Option<RunningController>>> {
        self.controllers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The graceful end of a flow that passed: every controller still running stops cleanly,
    /// then the sandbox shuts down.
    pub async fn finish(mut self) {
        let controllers: Vec<RunningController> = self.controllers().drain(..).flatten().collect();
        for controller in controllers {
            controller
                .stop()
                .await
                .expect("the controller stops cleanly");
        }
        let warnings = self.real.as_ref().map(|(_, w)| w.take());
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.shutdown().await;
        }
        if let Some(warnings) = warnings {
            assert!(
                warnings.is_empty(),
                "the API server sent warnings about the scenario's requests:\n{}",
                warnings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    pub fn api(&self) -> Api<EcsInstance> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn create(&self, obj: &EcsInstance) {
        create(self, obj).await;
    }

    pub async fn get(&self, name: &str) -> EcsInstance {
        self.api().get(name).await.expect("get EcsInstance")
    }

    /// Merge-patches the spec (a user editing the manifest).
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.patch(name, json!({ "spec": spec })).await;
    }

    /// Merge-patches the object (metadata, spec).
    pub async fn patch(&self, name: &str, patch: serde_json::Value) {
        self.api()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch EcsInstance");
    }

    /// Asks for a reboot with a plain token (a release name, a ticket number), as an operator
    /// editing the manifest does: once the controller has seen the object, since a token
    /// already there at first sight is adopted as done.
    pub async fn request_token(&self, name: &str, token: &str) {
        self.wait_for(name, |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.instance_status.is_some())
        })
        .await;
        self.patch_spec(name, json!({ "reboot": { "token": token } }))
            .await;
    }

    /// Polls until `pred` holds; panics with the last status after [`WAIT`].
    pub async fn wait_for(&self, name: &str, pred: impl Fn(&EcsInstance) -> bool) -> EcsInstance {
        wait_for(self, name, WAIT, pred).await
    }

    /// Polls until the async `check` holds; panics naming `what` after [`WAIT`].
    pub async fn wait_until(&self, what: &str, check: impl AsyncFn() -> bool) {
        self.wait_until_within(WAIT, what, check).await;
    }

    /// [`Scenario::wait_until`] with a longer liveness bound, for a whole fleet.
    pub async fn wait_until_within(
        &self,
        limit: Duration,
        what: &str,
        check: impl AsyncFn() -> bool,
    ) {
        let deadline = std::time::Instant::now() + limit;
        while !check().await {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the object has a condition with this status and reason.
    pub async fn wait_for_reason(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> EcsInstance {
        self.wait_for(name, |o| {
            cond(o, type_) == (status.to_string(), reason.to_string())
        })
        .await
    }

    /// Reasons of the events recorded for an object (events.k8s.io/v1 and core/v1 alike).
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut reasons = Vec::new();
        if let Ok(list) = events.list(&ListParams::default()).await {
            for e in list.items {
                if e.involved_object.name.as_deref() == Some(name) {
                    reasons.extend(e.reason.clone());
                }
            }
        }
        let new_events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        if let Ok(list) = new_events.list(&ListParams::default()).await {
            for e in list.items {
                if e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name) {
                    reasons.extend(e.reason.clone());
                }
            }
        }
        reasons
    }

    /// How many times an event with this reason was recorded for the object, repeats folded
    /// into a series included.
    pub async fn event_count(&self, name: &str, reason: &str) -> i32 {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        list.items
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum()
    }

    /// Moves the instance's last boot an hour back: a reboot is provable at once (not deferred
    /// past the StartTime minute), so one that must not come would come now.
    pub fn boot_an_hour_ago(&self, id: &str) {
        self.sim
            .set_start_time(
                id,
                jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
            )
            .expect("a simulated instance");
    }

    /// Whether an event with this reason was recorded for the object.
    pub async fn has_event(&self, name: &str, reason: &str) -> bool {
        self.event_reasons(name).await.iter().any(|r| r == reason)
    }

    /// Waits until an event with this reason is recorded for the object: events are published
    /// after the status write they go with, so the status can be seen first.
    pub async fn wait_for_event(&self, name: &str, reason: &str) {
        self.wait_until(&format!("{name}: an event {reason}"), async || {
            self.has_event(name, reason).await
        })
        .await;
    }

    /// Every RebootInstance call naming `id`, whatever its outcome.
    pub fn reboots(&self, id: &str) -> u64 {
        self.sim.calls().count_all(Action::RebootInstance, id)
    }

    /// When ECS received each `action` call naming `id`, in order.
    pub fn call_times(&self, action: Action, id: &str) -> Vec<jiff::Timestamp> {
        call_times(&self.sim.calls().log(), action, id)
    }
}

impl Deref for Scenario {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("the scenario is running")
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        // Dropping a controller closes its stop channel: it winds down on its own.
        self.controllers().clear();
        let Some(sandbox) = self.sandbox.take() else {
            return;
        };
        if let Some((server, _)) = &self.real {
            delete_namespace_blocking(*server, sandbox.namespace.clone());
        }
        // In-process: KubeSim and the simulator stop serving when dropped.
        drop(sandbox);
    }
}

/// Deletes a real cluster's scenario namespace without the test's runtime, which may be
/// unwinding a panic (or gone).
fn delete_namespace_blocking(server: RealServer, namespace: String) {
    let deleted = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let client = Client::try_from(server.config().await).map_err(|e| e.to_string())?;
            tokio::time::timeout(
                Duration::from_secs(30),
                ecs_power_controller::demo::delete_namespace_and_contents(&client, &namespace),
            )
            .await
            .map_err(|_| format!("deleting namespace {namespace} timed out"))?
            .map_err(|e| format!("deleting namespace {namespace}: {e}"))
            .map(drop)
        })
    })
    .join();
    match deleted {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("scenario teardown: {e}"),
        Err(_) => eprintln!("scenario teardown: the namespace deletion panicked"),
    }
}

/// When ECS received each `action` call naming `id`, in order.
pub fn call_times(log: &[CallRecord], action: Action, id: &str) -> Vec<jiff::Timestamp> {
    log.iter()
        .filter(|c| c.action == Some(action) && c.instances.iter().any(|(i, _)| i == id))
        .map(|c| c.time.parse().expect("RFC 3339 call time"))
        .collect()
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

pub fn ecs_instance(name: &str, instance_id: &str, power: PowerState) -> EcsInstance {
    EcsInstance::new(name, EcsInstanceSpec::new(instance_id, REGION, power))
}

pub fn with_token(mut obj: EcsInstance, token: &str) -> EcsInstance {
    obj.spec.reboot = Some(RebootRequest {
        token: token.into(),
        mode: Default::default(),
    });
    obj
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

/// Ready, with `token` recorded as carried out.
pub fn token_done(token: impl Into<String>) -> impl Fn(&EcsInstance) -> bool {
    let token = token.into();
    move |o| {
        is_ready(o)
            && o.status
                .as_ref()
                .and_then(|s| s.last_reboot_token.as_deref())
                == Some(token.as_str())
    }
}

/// A reboot token asking for a reboot now, as the `reboot` command writes it: an RFC 3339 time.
/// Unlike a plain token it is carried out also when the object is created with it (a plain one
/// is adopted as done: it may be a restore), as long as the instance last booted before it.
pub fn requested_now() -> String {
    jiff::Timestamp::now().to_string()
}

/// `later - earlier` in seconds (negative when `later` is earlier).
pub fn secs_between(earlier: jiff::Timestamp, later: jiff::Timestamp) -> f64 {
    later.duration_since(earlier).as_secs_f64()
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
        // Quick: a fixed or rotated Secret is noticed within a scenario's patience.
        secret_recheck: Duration::from_millis(200),
        timings: Timings {
            transition_poll: Duration::from_millis(100),
            reboot_confirmation_grace: Duration::from_secs(2),
            start_time_margin: Duration::ZERO,
        },
        ..Config::default()
    }
}

// ---- sandbox-level helpers, for suites that hold a `Sandbox` of their own (several
// replicas, the real kubectl) rather than a `Scenario` ----

/// A sandbox on `backend` with the simulator serving `instances`; on [`Backend::Cluster`] it
/// needs a real server (see [`real_sandbox`] for one that may be missing).
pub async fn sandbox(backend: Backend, instances: Vec<InstanceSpec>) -> Sandbox {
    let mut config = SimConfig::instant();
    config.instances = instances;
    match backend {
        Backend::Local => Sandbox::start(config).await.expect("sandbox starts"),
        Backend::Cluster => {
            let server = real_server().expect("a real API server (KUBEBUILDER_ASSETS)");
            real_sandbox(server, config.instances).await.0
        }
    }
}

/// A sandbox on a real server, in a fresh namespace, whose client keeps the server's warnings.
pub async fn real_sandbox(
    server: RealServer,
    instances: Vec<InstanceSpec>,
) -> (Sandbox, envtest::Warnings) {
    let mut config = SimConfig::instant();
    config.instances = instances;
    let (client, warnings) = server.client_with_warnings().await;
    let sandbox = Sandbox::on_cluster(client, config)
        .await
        .expect("sandbox starts on the real API server");
    (sandbox, warnings)
}

/// The in-process API server of a local sandbox (for its fault injection).
pub fn local(sb: &Sandbox) -> &kubesim::KubeSim {
    sb.kube.as_ref().expect("a local sandbox")
}

pub async fn create(sb: &Sandbox, obj: &EcsInstance) {
    Api::<EcsInstance>::namespaced(sb.client.clone(), &sb.namespace)
        .create(&PostParams::default(), obj)
        .await
        .expect("create EcsInstance");
}

/// Polls `name` until `pred` holds; panics with the last status after `timeout`.
pub async fn wait_for(
    sb: &Sandbox,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&EcsInstance) -> bool,
) -> EcsInstance {
    let api = Api::<EcsInstance>::namespaced(sb.client.clone(), &sb.namespace);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(obj) = api.get(name).await
            && pred(&obj)
        {
            return obj;
        }
        if std::time::Instant::now() > deadline {
            let last = api.get(name).await.ok();
            panic!(
                "{name}: condition not met within {timeout:?}; last status: {:#?}",
                last.and_then(|o| o.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
