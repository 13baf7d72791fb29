//! The controller as its ServiceAccount on a real API server (crates/envtest's, RBAC on): the
//! ServiceAccount, ClusterRole, ClusterRoleBinding and leader-election Role and RoleBinding of
//! `deploy/base` applied (not the Deployment: no Pod runs on envtest), a token from the
//! TokenRequest API, and `ecs-power-controller run --leader-elect` (the binary) with a
//! kubeconfig holding only that token, ECS the simulator.
//!
//! - With the RBAC as shipped, an EcsInstance settles: started, Ready, an event, the Lease held,
//!   and nothing in the log is forbidden; likewise with the single-namespace overlay's Role
//!   in place of the ClusterRole.
//! - With one rule taken out, what needs it fails, and the log names the missing permission as
//!   the server refused it (`cannot patch resource "ecsinstances/status" in API group …`).
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
use ecs_power_controller::api::{EcsInstance, PowerState};
use ecs_power_controller::demo::Sandbox;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde::de::DeserializeOwned;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");
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
}

fn base<T: DeserializeOwned>(file: &str) -> T {
    manifest(&format!("deploy/base/{file}"))
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
    controller: Controller,
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Controller)
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

/// An EcsInstance asked to run is started and Ready, with an event and the Lease held, and
/// the controller's log shows no refusal.
async fn settles_with_nothing_forbidden(rbac: Rbac) {
    let Some(w) = World::start(rbac, vec![instance("i-sa0000001", InstanceStatus::Stopped)]).await
    else {
        return;
    };
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
    assert!(
        !log.contains("forbidden") && !log.contains("403"),
        "the controller was refused something:\n{log}"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_patch_on_ecsinstances_status_nothing_is_reported_and_the_log_says_why() {
    let missing = ("ecs.powerctl.io", "ecsinstances/status", "patch");
    let Some(w) = World::start(
        Rbac::Base(Some(missing)),
        vec![instance("i-sa0000002", InstanceStatus::Running)],
    )
    .await
    else {
        return;
    };
    w.create("web-2", "i-sa0000002", PowerState::Running).await;
    w.until_refused(missing).await;
    assert_eq!(w.api().get("web-2").await.unwrap().status, None);
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_on_events_the_instance_settles_but_the_log_says_what_was_lost() {
    let missing = ("events.k8s.io", "events", "create");
    let Some(w) = World::start(
        Rbac::Base(Some(missing)),
        vec![instance("i-sa0000003", InstanceStatus::Stopped)],
    )
    .await
    else {
        return;
    };
    w.create("web-3", "i-sa0000003", PowerState::Running).await;
    w.until("web-3 Ready", async || {
        w.api().get("web-3").await.is_ok_and(|o| is_ready(&o))
    })
    .await;
    let log = w.until_refused(missing).await;
    assert!(log.contains("could not publish an event"), "{log}");
    assert_eq!(events_of(&w, "web-3").await, Vec::<String>::new());
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_on_leases_the_controller_never_leads_and_the_log_says_why() {
    let missing = ("coordination.k8s.io", "leases", "create");
    let Some(w) = World::start(
        Rbac::Base(Some(missing)),
        vec![instance("i-sa0000004", InstanceStatus::Stopped)],
    )
    .await
    else {
        return;
    };
    w.create("web-4", "i-sa0000004", PowerState::Running).await;
    w.until_refused(missing).await;
    // Not leading, it reconciles nothing.
    assert_eq!(w.api().get("web-4").await.unwrap().status, None);
    assert_eq!(w.sb.sim.calls().log().len(), 0, "no ECS call");
    w.end().await;
}
