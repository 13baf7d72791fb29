//! The controller as its ServiceAccount on a real API server (crates/envtest's, RBAC on): the
//! ServiceAccount, ClusterRole, ClusterRoleBinding and leader-election Role and RoleBinding of
//! `deploy/base` applied (not the Deployment: no Pod runs on envtest), a token from the
//! TokenRequest API, and `ecs-power-controller run --leader-elect` (the binary) with a
//! kubeconfig holding only that token, ECS the simulator.
//!
//! - With the RBAC as shipped, an EcsInstance settles: started, Ready, an event, the Lease held,
//!   and nothing in the log is forbidden; likewise with the single-namespace overlay's Role
//!   in place of the ClusterRole, and with the multi-tenant overlay (its Namespaces ClusterRole
//!   added, both tenancy guards on).
//! - Its token revoked mid-run, it says so (a 401 in the log) and `/readyz` answers 503.
//! - Without any one rule of `deploy/`'s RBAC (`deploy/base`'s ClusterRole and leader-election
//!   Role, the multi-tenant overlay's Namespaces ClusterRole), a named behaviour fails and the
//!   log names the missing permission as the server refused it (`cannot patch resource
//!   "ecsinstances/status" in API group …`, for the ServiceAccount): the table `RULES`, one
//!   test per row, and a test that fails when one of them gains a rule the table lacks.
//!
//! Each test has a namespace of its own; the cluster-scoped objects carry its name
//! (`ecs-power-controller-NAMESPACE`), so tests running at once on the shared server never
//! share a rule. The controller watches its namespace only (`WATCH_NAMESPACE`): other tests'
//! objects on the shared server are not its business. Skipped with a line when
//! `KUBEBUILDER_ASSETS` is unset outside CI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule, PowerState};
use ecs_power_controller::demo::Sandbox;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");
/// What `--shared-credentials-selector` adds to the RBAC (the multi-tenant overlay).
const NAMESPACES_CLUSTER_ROLE: &str = "deploy/overlays/multi-tenant/namespaces-clusterrole.yaml";
const SERVICE_ACCOUNT: &str = "ecs-power-controller";
/// The Lease holder's identity (`POD_NAME`).
const POD: &str = "ecs-power-controller-0";
/// A liveness bound: the controller runs with its production timings.
const PATIENCE: Duration = Duration::from_secs(60);

/// A permission taken out of `deploy/base`'s RBAC: (apiGroup, resource, verb).
type Permission = (&'static str, &'static str, &'static str);

/// Which of `deploy/`'s RBAC the controller gets.
#[derive(Clone, Copy)]
enum Rbac {
    /// `deploy/base`: a ClusterRole bound cluster-wide, minus a permission if given.
    Base(Option<Permission>),
    /// `deploy/overlays/single-namespace`: no cluster-scoped object, a Role in its namespace.
    SingleNamespace,
    /// `deploy/overlays/multi-tenant`: `deploy/base` plus the Namespaces ClusterRole its
    /// shared-credentials guard needs (minus a permission if given), and both tenancy guards on
    /// (its `guards.yaml`).
    MultiTenant(Option<Permission>),
}

fn base<T: DeserializeOwned>(file: &str) -> T {
    manifest(&format!("deploy/base/{file}"))
}

/// The document of `kind` in `deploy/examples/schedule.yaml` (a calendar, then a schedule).
fn example<T: DeserializeOwned>(kind: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/schedule.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let document = text
        .split("\n---\n")
        .find(|d| d.contains(&format!("\nkind: {kind}\n")))
        .unwrap_or_else(|| panic!("no {kind} in {}", path.display()));
    serde_saphyr::from_str(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest<T: DeserializeOwned>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `rules` without `missing`'s verb on its resource (a rule left with no verb goes).
fn without(rules: Option<Vec<PolicyRule>>, missing: Option<Permission>) -> Option<Vec<PolicyRule>> {
    let Some((group, resource, verb)) = missing else {
        return rules;
    };
    let rules = rules
        .unwrap_or_default()
        .into_iter()
        .flat_map(|rule| {
            let matches = rule.api_groups.iter().flatten().any(|g| g == group)
                && rule.resources.iter().flatten().any(|r| r == resource);
            if !matches {
                return vec![rule];
            }
            let mut split = Vec::new();
            // The other resources of the rule keep every verb.
            let others: Vec<String> = rule
                .resources
                .iter()
                .flatten()
                .filter(|r| *r != resource)
                .cloned()
                .collect();
            if !others.is_empty() {
                split.push(PolicyRule {
                    resources: Some(others),
                    ..rule.clone()
                });
            }
            let verbs: Vec<String> = rule.verbs.iter().filter(|v| *v != verb).cloned().collect();
            if !verbs.is_empty() {
                split.push(PolicyRule {
                    resources: Some(vec![resource.to_string()]),
                    verbs,
                    ..rule
                });
            }
            split
        })
        .collect();
    Some(rules)
}

/// `deploy/base`'s ServiceAccount, ClusterRole, ClusterRoleBinding, leader-election Role and
/// RoleBinding, moved into `ns` (the cluster-scoped ones named after it), minus `missing`; or,
/// for the single-namespace overlay, its Role and RoleBinding instead of the cluster-scoped pair.
/// Returns the cluster-scoped objects' name.
async fn install_rbac(client: &Client, ns: &str, rbac: Rbac) -> String {
    let name = format!("ecs-power-controller-{ns}");
    let pp = PostParams::default();

    let mut sa: ServiceAccount = base("serviceaccount.yaml");
    sa.metadata.namespace = Some(ns.into());
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &sa)
        .await
        .unwrap();

    let missing = match rbac {
        Rbac::Base(missing) => missing,
        Rbac::MultiTenant(missing) => {
            install_namespaces_role(client, ns, &name, missing).await;
            None
        }
        Rbac::SingleNamespace => {
            let overlay = "deploy/overlays/single-namespace";
            let mut role: Role = manifest(&format!("{overlay}/role.yaml"));
            role.metadata.namespace = Some(ns.into());
            Api::<Role>::namespaced(client.clone(), ns)
                .create(&pp, &role)
                .await
                .unwrap();
            let mut binding: RoleBinding = manifest(&format!("{overlay}/rolebinding.yaml"));
            binding.metadata.namespace = Some(ns.into());
            for subject in binding.subjects.iter_mut().flatten() {
                subject.namespace = Some(ns.into());
            }
            Api::<RoleBinding>::namespaced(client.clone(), ns)
                .create(&pp, &binding)
                .await
                .unwrap();
            install_leader_election(client, ns, None).await;
            return name;
        }
    };

    let mut cluster_role: ClusterRole = base("clusterrole.yaml");
    cluster_role.metadata.name = Some(name.clone());
    cluster_role.rules = without(cluster_role.rules, missing);
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &cluster_role)
        .await
        .unwrap();

    let mut binding: ClusterRoleBinding = base("clusterrolebinding.yaml");
    binding.metadata.name = Some(name.clone());
    binding.role_ref.name = name.clone();
    for subject in binding.subjects.iter_mut().flatten() {
        subject.namespace = Some(ns.into());
    }
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap();

    install_leader_election(client, ns, missing).await;
    name
}

/// The multi-tenant overlay's Namespaces ClusterRole and its binding, named `NAME-namespaces`,
/// minus `missing`.
async fn install_namespaces_role(
    client: &Client,
    ns: &str,
    name: &str,
    missing: Option<Permission>,
) {
    let pp = PostParams::default();
    let mut role: ClusterRole = manifest(NAMESPACES_CLUSTER_ROLE);
    role.metadata.name = Some(format!("{name}-namespaces"));
    role.rules = without(role.rules, missing);
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    let mut binding: ClusterRoleBinding =
        manifest("deploy/overlays/multi-tenant/namespaces-clusterrolebinding.yaml");
    binding.metadata.name = Some(format!("{name}-namespaces"));
    binding.role_ref.name = format!("{name}-namespaces");
    for subject in binding.subjects.iter_mut().flatten() {
        subject.namespace = Some(ns.into());
    }
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
}

/// The environment the multi-tenant overlay's `guards.yaml` gives the container.
fn overlay_env(rbac: Rbac) -> Vec<(String, String)> {
    if !matches!(rbac, Rbac::MultiTenant(_)) {
        return Vec::new();
    }
    let guards: serde_json::Value = manifest("deploy/overlays/multi-tenant/guards.yaml");
    guards["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `deploy/base`'s leader-election Role and RoleBinding in `ns`, minus `missing`.
async fn install_leader_election(client: &Client, ns: &str, missing: Option<Permission>) {
    let pp = PostParams::default();
    let mut role: Role = base("leader-election-role.yaml");
    role.metadata.namespace = Some(ns.into());
    role.rules = without(role.rules, missing);
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &role)
        .await
        .unwrap();

    let mut role_binding: RoleBinding = base("leader-election-rolebinding.yaml");
    role_binding.metadata.namespace = Some(ns.into());
    for subject in role_binding.subjects.iter_mut().flatten() {
        subject.namespace = Some(ns.into());
    }
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &role_binding)
        .await
        .unwrap();
}

/// One test's world: a sandbox (namespace, CRDs, simulator) on envtest, the RBAC installed and
/// the controller binary running as the ServiceAccount.
struct World {
    sb: Sandbox,
    warnings: envtest::Warnings,
    cluster_scoped: String,
    dir: PathBuf,
    /// `None` once a test took it (to see it exit).
    controller: Option<Controller>,
}

impl World {
    /// `None` (skipped, with a line) without envtest.
    async fn start(rbac: Rbac, instances: Vec<ecs_sim::InstanceSpec>) -> Option<World> {
        let server = real_server_or_skip("the controller as its ServiceAccount")?;
        let RealServer::Envtest(env) = server else {
            eprintln!("the controller as its ServiceAccount: envtest only (it installs RBAC)");
            return None;
        };
        let (sb, warnings) = real_sandbox(server, instances).await;
        let ns = sb.namespace.clone();
        let cluster_scoped = install_rbac(&sb.client, &ns, rbac).await;
        let token = env.sa_token(&ns, SERVICE_ACCOUNT).await.unwrap();
        let dir = std::env::temp_dir().join(format!("service-account-{}-{ns}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        env.write_token_kubeconfig(&dir.join("kubeconfig"), &token)
            .unwrap();
        let (key_id, key_secret) = sb.sim.access_key();
        let log = std::fs::File::create(dir.join("controller.log")).unwrap();
        let controller = std::process::Command::new(BIN)
            .args([
                "run",
                "--leader-elect",
                "--log-format=text",
                "--metrics-addr=127.0.0.1:0",
            ])
            .arg(format!("--ecs-endpoint={}", sb.sim.endpoint()))
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("POD_NAME", POD)
            .env("POD_NAMESPACE", &ns)
            .env("WATCH_NAMESPACE", &ns)
            .env("HOME", &dir)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key_secret)
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(overlay_env(rbac))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Controller)
            .map(Some)
            .expect("the controller binary starts");
        Some(World {
            sb,
            warnings,
            cluster_scoped,
            dir,
            controller,
        })
    }

    fn ns(&self) -> &str {
        &self.sb.namespace
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default()
    }

    fn api(&self) -> Api<EcsInstance> {
        Api::namespaced(self.sb.client.clone(), self.ns())
    }

    async fn create(&self, name: &str, id: &str, power: PowerState) {
        self.api()
            .create(&PostParams::default(), &ecs_instance(name, id, power))
            .await
            .unwrap();
    }

    /// Polls `check` until it holds; fails with the controller's log after [`PATIENCE`].
    async fn until(&self, what: &str, check: impl AsyncFn() -> bool) {
        let started = Instant::now();
        while !check().await {
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: not within {PATIENCE:?}; the controller's log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controller's log says the server refused `verb` on `resource`
    /// (`cannot VERB resource "RESOURCE" in API group "GROUP"`), naming the ServiceAccount.
    async fn until_refused(&self, (group, resource, verb): Permission) -> String {
        let refusal = format!(r#"cannot {verb} resource "{resource}" in API group "{group}""#);
        let user = format!(
            r#"User "system:serviceaccount:{}:{SERVICE_ACCOUNT}""#,
            self.ns()
        );
        self.until(&format!("the log says {refusal}"), async || {
            self.log()
                .lines()
                .any(|l| l.contains(&refusal) && l.contains(&user))
        })
        .await;
        let log = self.log();
        if let Some(line) = log.lines().find(|l| l.contains(&refusal)) {
            eprintln!("refused as expected: {line}");
        }
        log
    }

    /// Waits until the log holds `more` refusals of `permission` beyond those it holds now: the
    /// controller has retried that often since (a count, not a time).
    async fn until_refused_again(&self, (group, resource, verb): Permission, more: usize) {
        let refusal = format!(r#"cannot {verb} resource "{resource}" in API group "{group}""#);
        let count = || self.log().matches(&refusal).count();
        let target = count() + more;
        self.until(&format!("{more} more refusals"), async || count() >= target)
            .await;
    }

    /// `deploy/examples/schedule.yaml`'s schedule as `name` in the test's namespace, without
    /// its holiday calendar (what is tested is whether its status is written, not what it says).
    async fn create_schedule(&self, name: &str) {
        let mut schedule: EcsPowerSchedule = example("EcsPowerSchedule");
        schedule.spec.calendars.clear();
        schedule.metadata.name = Some(name.into());
        schedule.metadata.namespace = Some(self.ns().into());
        Api::<EcsPowerSchedule>::namespaced(self.sb.client.clone(), self.ns())
            .create(&PostParams::default(), &schedule)
            .await
            .unwrap();
    }

    /// `deploy/examples/schedule.yaml`'s holiday calendar as `name` in the test's namespace.
    async fn create_calendar(&self, name: &str) {
        let mut calendar: EcsHolidayCalendar = example("EcsHolidayCalendar");
        calendar.metadata.name = Some(name.into());
        calendar.metadata.namespace = Some(self.ns().into());
        Api::<EcsHolidayCalendar>::namespaced(self.sb.client.clone(), self.ns())
            .create(&PostParams::default(), &calendar)
            .await
            .unwrap();
    }

    async fn calendar_status(&self, name: &str) -> Option<serde_json::Value> {
        let calendar = Api::<EcsHolidayCalendar>::namespaced(self.sb.client.clone(), self.ns())
            .get(name)
            .await
            .unwrap();
        calendar.status.map(|s| serde_json::to_value(s).unwrap())
    }

    async fn schedule_status(&self, name: &str) -> Option<serde_json::Value> {
        let schedule = Api::<EcsPowerSchedule>::namespaced(self.sb.client.clone(), self.ns())
            .get(name)
            .await
            .unwrap();
        schedule.status.map(|s| serde_json::to_value(s).unwrap())
    }

    /// A credentials Secret holding the simulator's key.
    async fn create_secret(&self, name: &str) {
        let (id, secret) = self.sb.sim.access_key();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": self.ns()},
            "stringData": {"accessKeyId": id, "accessKeySecret": secret},
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.sb.client.clone(), self.ns())
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Sets (or, with `None`, removes) the override annotation on `name`.
    async fn annotate_override(&self, name: &str, power_state: Option<&str>) {
        let patch = serde_json::json!({"metadata": {"annotations": {
            "ecs.powerctl.io/override-power-state": power_state,
        }}});
        self.api()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// The controller's `/readyz` status code (0 while it does not answer). Its address is the
    /// one the controller logged at start-up (`--metrics-addr=127.0.0.1:0`: a free port).
    fn readyz(&self) -> u16 {
        use std::io::{Read, Write};
        let log = self.log();
        let Some(addr) = log
            .split_whitespace()
            .find_map(|w| w.strip_prefix("metrics="))
        else {
            return 0;
        };
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return 0;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(stream, "GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// What the multi-tenant overlay asks of an administrator for a namespace to use the
    /// controller's own credentials: its label.
    async fn allow_shared_credentials(&self) {
        let label = serde_json::json!({"metadata": {"labels": {"ecs.powerctl.io/shared-credentials": "allowed"}}});
        Api::<k8s_openapi::api::core::v1::Namespace>::all(self.sb.client.clone())
            .patch(self.ns(), &PatchParams::default(), &Patch::Merge(label))
            .await
            .unwrap();
    }

    /// The tag the multi-tenant overlay's instance guard wants: `id` may be acted on from this
    /// test's namespace.
    fn claim(&self, id: &str) {
        self.sb
            .sim
            .set_tags(
                id,
                [(
                    "ecs.powerctl.io/namespaces".to_string(),
                    self.ns().to_string(),
                )]
                .into(),
            )
            .unwrap();
    }

    /// Stops the controller, removes what the test made, and fails on any server warning.
    async fn end(self) {
        drop(self.controller);
        let client = self.sb.client.clone();
        let ns = self.sb.namespace.clone();
        let dp = DeleteParams::default();
        let _ = Api::<ClusterRoleBinding>::all(client.clone())
            .delete(&self.cluster_scoped, &dp)
            .await;
        let _ = Api::<ClusterRole>::all(client.clone())
            .delete(&self.cluster_scoped, &dp)
            .await;
        let namespaces = format!("{}-namespaces", self.cluster_scoped);
        let _ = Api::<ClusterRoleBinding>::all(client.clone())
            .delete(&namespaces, &dp)
            .await;
        let _ = Api::<ClusterRole>::all(client.clone())
            .delete(&namespaces, &dp)
            .await;
        for name in [
            "ecs-power-controller-leader-election",
            "ecs-power-controller",
        ] {
            let _ = Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .delete(name, &dp)
                .await;
            let _ = Api::<Role>::namespaced(client.clone(), &ns)
                .delete(name, &dp)
                .await;
        }
        let _ = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .delete(SERVICE_ACCOUNT, &dp)
            .await;
        let _ = std::fs::remove_dir_all(&self.dir);
        let warnings = self.warnings.take();
        self.sb.shutdown().await;
        assert_eq!(warnings, Vec::new(), "the server's warnings");
    }
}

/// The controller process, killed on drop so a failed assertion leaves no process behind.
struct Controller(std::process::Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn reasons(events: &[k8s_openapi::api::events::v1::Event], name: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason.clone())
        .collect()
}

async fn events_of(world: &World, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(world.sb.client.clone(), world.ns());
    let list = api.list(&Default::default()).await.unwrap();
    reasons(&list.items, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_deploy_base_rbac_an_instance_settles_and_nothing_is_forbidden() {
    settles_with_nothing_forbidden(Rbac::Base(None)).await;
}

/// `deploy/overlays/single-namespace`: a Role instead of the ClusterRole; the controller stays
/// inside its namespace, so nothing it does is refused either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_single_namespace_overlays_role_an_instance_settles_and_nothing_is_forbidden() {
    settles_with_nothing_forbidden(Rbac::SingleNamespace).await;
}

/// `deploy/overlays/multi-tenant`: both tenancy guards on, the namespace granted the shared
/// credentials (labelled) and the instance tagged for it; the Namespaces list and watch the
/// guard needs are granted, and nothing else is refused either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_multi_tenant_overlay_an_instance_settles_and_nothing_is_forbidden() {
    settles_with_nothing_forbidden(Rbac::MultiTenant(None)).await;
}

/// An EcsInstance asked to run is started and Ready, with an event and the Lease held, and
/// the controller's log shows no refusal.
async fn settles_with_nothing_forbidden(rbac: Rbac) {
    let Some(w) = World::start(rbac, vec![instance("i-sa0000001", InstanceStatus::Stopped)]).await
    else {
        return;
    };
    if matches!(rbac, Rbac::MultiTenant(_)) {
        // What the overlay's guards ask of an administrator: the namespace allowed the shared
        // credentials, the instance tagged with the namespaces that may act on it.
        w.allow_shared_credentials().await;
        w.claim("i-sa0000001");
    }
    w.create("web-1", "i-sa0000001", PowerState::Running).await;
    w.until("web-1 Ready and Running", async || {
        w.api().get("web-1").await.is_ok_and(|o| {
            is_ready(&o)
                && o.status.as_ref().and_then(|s| s.instance_status)
                    == Some(InstanceStatus::Running)
        })
    })
    .await;
    w.until("an event for web-1", async || {
        !events_of(&w, "web-1").await.is_empty()
    })
    .await;
    let lease = Api::<Lease>::namespaced(w.sb.client.clone(), w.ns())
        .get("ecs-power-controller")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(POD)
    );
    let log = w.log();
    assert_eq!(
        refusals(&log),
        Vec::<&str>::new(),
        "the controller was refused something; its log:\n{log}"
    );
    w.end().await;
}

/// The lines of a controller log that report a refusal: the server's `forbidden` (its message
/// says "is forbidden", its reason `Forbidden`) or a 403 status code. The code is matched as a
/// number of its own: a log's timestamps (`…T01:08:51.440312Z`), free ports (`127.0.0.1:40321`)
/// and namespace names hold "403" by chance, and a substring test failed runs that were refused
/// nothing.
fn refusals(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            line.to_ascii_lowercase().contains("forbidden")
                || line
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| word == "403")
        })
        .collect()
}

#[test]
fn a_refusal_is_found_in_the_log_and_a_403_by_chance_is_not() {
    let refused = r#"2026-12-08T01:08:52.100000Z  WARN ecs_power_controller::controller::k8s::runtime: watch failed error=ApiError: ecsinstances.ecs.powerctl.io is forbidden: User "system:serviceaccount:ns:ecs-power-controller" cannot watch resource "ecsinstances" in API group "ecs.powerctl.io": Forbidden (ErrorResponse { status: "Failure", reason: "Forbidden", code: 403 })"#;
    let by_chance = "2026-12-08T01:08:51.440312Z  INFO ecs_power_controller::cli::run: starting \
                     metrics=127.0.0.1:40321 namespace=Some(\"ecsi-e2e-a4031b9c\")";
    let status_only = "2026-12-08T01:08:53.000001Z  WARN patch failed code=403";
    assert_eq!(refusals(refused), vec![refused]);
    assert_eq!(refusals(by_chance), Vec::<&str>::new());
    assert_eq!(refusals(status_only), vec![status_only]);
}

/// What the controller loses without one permission of `deploy/`'s RBAC, as a test sees it.
#[derive(Clone, Copy, Debug)]
enum Loses {
    /// It does not start: the start-up list fails (the process exits, having said why).
    Start,
    /// An EcsInstance created after the first list is never seen (the watch is refused).
    LaterInstances,
    /// An EcsPowerSchedule created after the first list is never seen: it gets no status.
    LaterSchedules,
    /// An instance is acted on but its status is never written.
    InstanceStatus,
    /// A schedule's status is never written.
    ScheduleStatus,
    /// An EcsHolidayCalendar created after the first list is never seen: it gets no status.
    LaterCalendars,
    /// A calendar's status is never written.
    CalendarStatus,
    /// An EcsInstance with its own credentials Secret never calls ECS.
    SecretCredentials,
    /// The instance settles, but no event is recorded.
    Events,
    /// The instance settles, but a repeated event's series is not counted.
    EventSeries,
    /// It never leads, so it reconciles nothing.
    Leadership,
    /// It takes the Lease but cannot renew it: it steps down and reconciles nothing after.
    Renewal,
    /// A namespace labelled for the shared credentials after the start is never seen: its
    /// objects stay refused them (the multi-tenant overlay).
    LaterNamespaceLabels,
}

/// Every rule of `deploy/`'s RBAC (`deploy/base`'s ClusterRole and leader-election Role, the
/// multi-tenant overlay's Namespaces ClusterRole), one permission a row, with the behaviour that
/// fails without it. `every_rbac_rule_has_a_row` fails when a rule is added to one of them
/// without a row here.
const RULES: &[(Permission, Loses)] = &[
    (("ecs.powerctl.io", "ecsinstances", "list"), Loses::Start),
    (
        ("ecs.powerctl.io", "ecsinstances", "watch"),
        Loses::LaterInstances,
    ),
    (
        ("ecs.powerctl.io", "ecsinstances/status", "patch"),
        Loses::InstanceStatus,
    ),
    (
        ("ecs.powerctl.io", "ecspowerschedules", "list"),
        Loses::Start,
    ),
    (
        ("ecs.powerctl.io", "ecspowerschedules", "watch"),
        Loses::LaterSchedules,
    ),
    (
        ("ecs.powerctl.io", "ecspowerschedules/status", "patch"),
        Loses::ScheduleStatus,
    ),
    (
        ("ecs.powerctl.io", "ecsholidaycalendars", "list"),
        Loses::Start,
    ),
    (
        ("ecs.powerctl.io", "ecsholidaycalendars", "watch"),
        Loses::LaterCalendars,
    ),
    (
        ("ecs.powerctl.io", "ecsholidaycalendars/status", "patch"),
        Loses::CalendarStatus,
    ),
    (("", "secrets", "get"), Loses::SecretCredentials),
    (("events.k8s.io", "events", "create"), Loses::Events),
    (("events.k8s.io", "events", "patch"), Loses::EventSeries),
    (
        ("coordination.k8s.io", "leases", "create"),
        Loses::Leadership,
    ),
    (("coordination.k8s.io", "leases", "get"), Loses::Leadership),
    (("coordination.k8s.io", "leases", "update"), Loses::Renewal),
    (("", "namespaces", "list"), Loses::Start),
    (("", "namespaces", "watch"), Loses::LaterNamespaceLabels),
];

#[test]
fn every_rbac_rule_has_a_row() {
    let cluster_role: ClusterRole = base("clusterrole.yaml");
    let leader_election: Role = base("leader-election-role.yaml");
    let namespaces: ClusterRole = manifest(NAMESPACES_CLUSTER_ROLE);
    let rules = [cluster_role.rules, leader_election.rules, namespaces.rules];
    let mut missing = Vec::new();
    for rule in rules.into_iter().flatten().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let covered = RULES
                        .iter()
                        .any(|((g, r, v), _)| g == group && r == resource && v == verb);
                    if !covered {
                        missing.push(format!("{verb} {resource} ({group})"));
                    }
                }
            }
        }
    }
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "RBAC rules without a row in RULES"
    );
}

/// One row of [`RULES`]: the RBAC without `missing`, the behaviour that needs it, and the
/// controller's log naming the refusal.
async fn without_permission(missing: Permission) {
    let loses = RULES
        .iter()
        .find(|(p, _)| *p == missing)
        .map(|(_, l)| *l)
        .expect("a row of RULES");
    let id = "i-sarule001";
    let status = match loses {
        Loses::InstanceStatus | Loses::Leadership | Loses::Renewal => InstanceStatus::Running,
        _ => InstanceStatus::Stopped,
    };
    // The Namespaces rules are the multi-tenant overlay's.
    let rbac = match missing {
        ("", "namespaces", _) => Rbac::MultiTenant(Some(missing)),
        _ => Rbac::Base(Some(missing)),
    };
    let Some(mut w) = World::start(rbac, vec![instance(id, status)]).await else {
        return;
    };
    match loses {
        Loses::Start => {
            w.until_refused(missing).await;
            let mut controller = w.controller.take().unwrap();
            let exited = loop {
                if let Some(code) = controller.0.try_wait().unwrap() {
                    break code;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert!(
                !exited.success(),
                "the controller exits with a failure: {exited}"
            );
            assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
        }
        Loses::LaterInstances => {
            // Refused once the first list is in: what is created after that is never seen.
            w.until_refused(missing).await;
            w.create("web", id, PowerState::Running).await;
            w.until_refused_again(missing, 2).await;
            assert_eq!(w.api().get("web").await.unwrap().status, None);
            assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
        }
        Loses::LaterSchedules => {
            w.until_refused(missing).await;
            w.create_schedule("office-hours").await;
            w.until_refused_again(missing, 2).await;
            assert_eq!(w.schedule_status("office-hours").await, None);
        }
        Loses::InstanceStatus => {
            w.create("web", id, PowerState::Running).await;
            w.until_refused(missing).await;
            assert_eq!(w.api().get("web").await.unwrap().status, None);
        }
        Loses::ScheduleStatus => {
            w.create_schedule("office-hours").await;
            w.until_refused(missing).await;
            assert_eq!(w.schedule_status("office-hours").await, None);
        }
        Loses::LaterCalendars => {
            w.until_refused(missing).await;
            w.create_calendar("holidays").await;
            w.until_refused_again(missing, 2).await;
            assert_eq!(w.calendar_status("holidays").await, None);
        }
        Loses::CalendarStatus => {
            w.create_calendar("holidays").await;
            w.until_refused(missing).await;
            assert_eq!(w.calendar_status("holidays").await, None);
        }
        Loses::SecretCredentials => {
            w.create_secret("ecs-credentials").await;
            let mut obj = ecs_instance("web", id, PowerState::Running);
            obj.spec.credentials_secret_ref =
                serde_json::from_value(serde_json::json!({"name": "ecs-credentials"})).unwrap();
            w.api().create(&PostParams::default(), &obj).await.unwrap();
            w.until_refused(missing).await;
            assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
        }
        Loses::Events => {
            w.create("web", id, PowerState::Running).await;
            w.until("web Ready", async || {
                w.api().get("web").await.is_ok_and(|o| is_ready(&o))
            })
            .await;
            let log = w.until_refused(missing).await;
            assert!(log.contains("could not publish an event"), "{log}");
            assert_eq!(events_of(&w, "web").await, Vec::<String>::new());
        }
        Loses::EventSeries => {
            // The same event twice: an override annotation on an object with a fixed power
            // state is refused with the same note each time it appears, so its second
            // appearance (after the annotation was removed) is a patch of the first's series.
            w.create("web", id, PowerState::Running).await;
            for (round, value) in [Some("Stopped"), None, Some("Stopped")]
                .into_iter()
                .enumerate()
            {
                w.annotate_override("web", value).await;
                w.until(&format!("override round {round} seen"), async || {
                    w.api().get("web").await.is_ok_and(|o| {
                        o.status
                            .as_ref()
                            .is_some_and(|s| s.power_override.is_some())
                            == value.is_some()
                            && is_ready(&o)
                    })
                })
                .await;
            }
            let log = w.until_refused(missing).await;
            assert!(log.contains("could not publish an event"), "{log}");
        }
        Loses::Leadership => {
            w.create("web", id, PowerState::Running).await;
            w.until_refused(missing).await;
            // Not leading, it reconciles nothing.
            assert_eq!(w.api().get("web").await.unwrap().status, None);
            assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
        }
        Loses::Renewal => {
            // It created the Lease, so it led; its first renewal is refused, and it steps down
            // before the Lease could pass to another replica.
            w.until_refused(missing).await;
            w.until("it stepped down", async || {
                w.log().contains("lost leadership: stopped reconciling")
            })
            .await;
            w.create("web", id, PowerState::Running).await;
            // Still trying to renew, still refused: never leading again, it reconciles nothing.
            w.until_refused_again(missing, 2).await;
            assert_eq!(w.api().get("web").await.unwrap().status, None);
            assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
        }
        Loses::LaterNamespaceLabels => {
            // Listed at the start (unlabelled, so refused the shared credentials), never
            // watched: the label that admits the namespace later goes unseen.
            w.claim(id);
            w.create("web", id, PowerState::Running).await;
            let refused = || ("True".to_string(), "CredentialsNotPermitted".to_string());
            w.until("web refused the shared credentials", async || {
                w.api()
                    .get("web")
                    .await
                    .is_ok_and(|o| cond(&o, "Stalled") == refused())
            })
            .await;
            w.until_refused(missing).await;
            w.allow_shared_credentials().await;
            // One attempt to watch after the label is enough: had it been allowed, it would
            // have brought the label. (The watcher's backoff doubles from 0.8 s up to 30 s
            // with jitter, so waiting for several more could outlast the patience.)
            w.until_refused_again(missing, 1).await;
            let web = w.api().get("web").await.unwrap();
            assert_eq!(cond(&web, "Stalled"), refused());
            assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
        }
    }
    w.end().await;
}

/// One test per row of [`RULES`], named after what goes missing.
macro_rules! without {
    ($($name:ident: $group:literal, $resource:literal, $verb:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            without_permission(($group, $resource, $verb)).await;
        }
    )*};
}

without! {
    without_list_on_ecsinstances_the_controller_does_not_start: "ecs.powerctl.io", "ecsinstances", "list";
    without_watch_on_ecsinstances_later_objects_are_never_seen: "ecs.powerctl.io", "ecsinstances", "watch";
    without_patch_on_ecsinstances_status_nothing_is_reported: "ecs.powerctl.io", "ecsinstances/status", "patch";
    without_list_on_ecspowerschedules_the_controller_does_not_start: "ecs.powerctl.io", "ecspowerschedules", "list";
    without_watch_on_ecspowerschedules_later_schedules_are_never_seen: "ecs.powerctl.io", "ecspowerschedules", "watch";
    without_patch_on_ecspowerschedules_status_no_schedule_status: "ecs.powerctl.io", "ecspowerschedules/status", "patch";
    without_list_on_ecsholidaycalendars_the_controller_does_not_start: "ecs.powerctl.io", "ecsholidaycalendars", "list";
    without_watch_on_ecsholidaycalendars_later_calendars_are_never_seen: "ecs.powerctl.io", "ecsholidaycalendars", "watch";
    without_patch_on_ecsholidaycalendars_status_no_calendar_status: "ecs.powerctl.io", "ecsholidaycalendars/status", "patch";
    without_get_on_secrets_an_instance_with_its_own_credentials_never_calls_ecs: "", "secrets", "get";
    without_create_on_events_the_instance_settles_but_no_event_is_recorded: "events.k8s.io", "events", "create";
    without_patch_on_events_a_repeated_event_is_not_counted: "events.k8s.io", "events", "patch";
    without_create_on_leases_the_controller_never_leads: "coordination.k8s.io", "leases", "create";
    without_get_on_leases_the_controller_never_leads: "coordination.k8s.io", "leases", "get";
    without_update_on_leases_the_controller_steps_down_at_its_first_renewal: "coordination.k8s.io", "leases", "update";
    without_list_on_namespaces_the_multi_tenant_controller_does_not_start: "", "namespaces", "list";
    without_watch_on_namespaces_a_namespace_labelled_later_stays_refused: "", "namespaces", "watch";
}

/// A token revoked mid-run (its ServiceAccount deleted: the server checks that a bound token's
/// ServiceAccount still exists, as it would reject an expired one): the controller fails
/// visibly, `/readyz` answers 503 and the log says the server refused its credentials with a
/// 401, rather than staying Ready while nothing can be watched or written. The next request
/// that meets the revoked token is the Lease renewal (every 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_makes_the_controller_not_ready_and_the_log_names_the_401() {
    let Some(w) = World::start(
        Rbac::Base(None),
        vec![instance("i-sa0000005", InstanceStatus::Stopped)],
    )
    .await
    else {
        return;
    };
    w.create("web-5", "i-sa0000005", PowerState::Running).await;
    w.until("web-5 Ready", async || {
        w.api().get("web-5").await.is_ok_and(|o| is_ready(&o))
    })
    .await;
    w.until("/readyz answers 200", async || w.readyz() == 200)
        .await;
    Api::<ServiceAccount>::namespaced(w.sb.client.clone(), w.ns())
        .delete(SERVICE_ACCOUNT, &DeleteParams::default())
        .await
        .unwrap();
    w.until("/readyz answers 503", async || w.readyz() == 503)
        .await;
    let log = w.log();
    let line = log
        .lines()
        .find(|l| l.contains("refused the controller's credentials"))
        .unwrap_or_else(|| panic!("no line about the refused credentials:\n{log}"));
    assert!(
        line.contains("401 Unauthorized") && line.contains("ERROR"),
        "{line}"
    );
    eprintln!("refused as expected: {line}");
    w.end().await;
}
