//! A fault only a real API server has: API Priority and Fairness pushing back. The server runs
//! with low `--max-requests-inflight` / `--max-mutating-requests-inflight`, and the controller's
//! identity (a ServiceAccount of its own) is matched by a FlowSchema into a priority level with
//! one seat that rejects rather than queues: every request it makes while another of its
//! requests is being served is answered `429 Too Many Requests` with `Retry-After`, by the
//! server's own APF filter. The controller still converges (every instance started once, every
//! object Ready), and without a storm: its requests are counted on the wire by the server's
//! `apiserver_flowcontrol_*` metrics for its FlowSchema (served and rejected) and bounded, and
//! what its code asked for by a tower layer on its client (kube's client retries a 429 after
//! the server's `Retry-After` below that layer, so none reaches the controller's code).
//!
//! A server of its own (crates/envtest), since its limits are low. Skipped with a line when
//! `KUBEBUILDER_ASSETS` is unset outside CI.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};

use crate::support::counting;
use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_power_controller::demo::Sandbox;
use ecs_sim::{Action, SimConfig};

/// Objects created at once: their reconciles' writes overlap, so the one seat is contended.
const OBJECTS: usize = 30;
/// The FlowSchema and priority level the controller's requests fall into.
const FLOW: &str = "ecs-power-controller-apf";
const SERVICE_ACCOUNT: &str = "ecs-power-controller-apf";
/// At most this many requests per object on the wire over the whole run (watches, lists and
/// retries included). Without pushback a run takes about 4 per object (two status writes, an
/// event, the lists); every rejection costs one more request, after the server's Retry-After.
/// A controller retrying a 429 at once would make many times more in the time this run takes.
const REQUESTS_PER_OBJECT_BOUND: u64 = 12;

fn id(i: usize) -> String {
    format!("i-apf{i:06}")
}

/// The priority level (one seat, rejecting) and the FlowSchema sending the ServiceAccount to it.
async fn install_flow_control(client: &kube::Client, namespace: &str) {
    let pp = PostParams::default();
    let level: PriorityLevelConfiguration = serde_json::from_value(serde_json::json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": FLOW},
        "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 1,
            "lendablePercent": 0,
            "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"},
        }},
    }))
    .unwrap();
    Api::<PriorityLevelConfiguration>::all(client.clone())
        .create(&pp, &level)
        .await
        .unwrap();
    let schema: FlowSchema = serde_json::from_value(serde_json::json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": FLOW},
        "spec": {
            "priorityLevelConfiguration": {"name": FLOW},
            "matchingPrecedence": 500,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount",
                              "serviceAccount": {"name": SERVICE_ACCOUNT, "namespace": namespace}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                   "clusterScope": true, "namespaces": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            }],
        },
    }))
    .unwrap();
    let schemas = Api::<FlowSchema>::all(client.clone());
    schemas.create(&pp, &schema).await.unwrap();
    // In force once the server's APF configuration controller has seen it (Dangling=False).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let applied = schemas.get(FLOW).await.unwrap().status.is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Dangling" && c.status.as_deref() == Some("False"))
        });
        if applied {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the FlowSchema is not in force"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The controller's own identity: a ServiceAccount (bound to `cluster-admin`: this test is
/// about flow control, not RBAC, which `deploy::service_account` proves).
async fn service_account(env: &envtest::Envtest, client: &kube::Client, namespace: &str) -> String {
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace},
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&pp, &sa)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": FLOW},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
    env.sa_token(namespace, SERVICE_ACCOUNT).await.unwrap()
}

/// The `Retry-After` of a 429 the server sends the controller's identity: requests at once,
/// without kube's retry, on the one seat, until one is rejected.
async fn probe_retry_after(env: &envtest::Envtest, token: &str) -> String {
    let mut config = env.config_for_token(token).await.unwrap();
    config.default_retry = false;
    let (client, counts) = counting::client(config);
    for _ in 0..20 {
        let api: Api<ServiceAccount> = Api::all(client.clone());
        let params = kube::api::ListParams::default();
        let lists = (0..20).map(|_| api.list(&params));
        let _ = futures::future::join_all(lists).await;
        if let Some(after) = counts.snapshot().retry_after.first() {
            return after.clone().expect("a 429 without Retry-After");
        }
    }
    panic!("no 429 in 400 requests at once on one seat");
}

/// The sum of a counter's samples for our FlowSchema in the server's `/metrics`.
fn flow_metric(metrics: &str, name: &str) -> u64 {
    let label = format!(r#"flow_schema="{FLOW}""#);
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_back_by_priority_and_fairness_the_controller_converges_without_a_retry_storm() {
    let options = envtest::Options {
        extra_apiserver_args: vec![
            "--max-requests-inflight=10".into(),
            "--max-mutating-requests-inflight=5".into(),
        ],
        ..envtest::Options::default()
    };
    let Some(env) = envtest::Envtest::from_env(options).await.unwrap() else {
        eprintln!("priority and fairness: skipped, no real API server (set KUBEBUILDER_ASSETS)");
        return;
    };
    let mut sim = SimConfig::instant();
    for i in 0..OBJECTS {
        sim = sim.with_instance(instance(&id(i), InstanceStatus::Stopped));
    }
    let sb = Sandbox::on_cluster(env.client().await.unwrap(), sim)
        .await
        .unwrap();
    install_flow_control(&sb.client, &sb.namespace).await;
    let token = service_account(&env, &sb.client, &sb.namespace).await;
    let (client, counts) = counting::client(env.config_for_token(&token).await.unwrap());
    let controller = sb.spawn_controller_on(client, fast_options(&sb)).unwrap();

    for i in 0..OBJECTS {
        create(
            &sb,
            &ecs_instance(&format!("vm-{i}"), &id(i), PowerState::Running),
        )
        .await;
    }
    for i in 0..OBJECTS {
        wait_for(&sb, &format!("vm-{i}"), WAIT * 4, |o| {
            is_ready(o)
                && o.status.as_ref().and_then(|s| s.instance_status)
                    == Some(InstanceStatus::Running)
        })
        .await;
    }
    let tally = counts.snapshot();
    let metrics = sb
        .client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    let dispatched = flow_metric(&metrics, "apiserver_flowcontrol_dispatched_requests_total");
    let rejected = flow_metric(&metrics, "apiserver_flowcontrol_rejected_requests_total");
    let sent = dispatched + rejected;
    eprintln!(
        "priority and fairness: {OBJECTS} objects; the controller asked for {} requests \
         (answers {:?}); on the wire the server served {dispatched} and rejected {rejected} \
         with 429: {sent} in all, {:.1} per object",
        tally.requests,
        tally.by_status,
        sent as f64 / OBJECTS as f64
    );
    for i in 0..OBJECTS {
        let started = sb.sim.calls().count_all(Action::StartInstance, &id(i))
            + sb.sim.calls().count_all(Action::StartInstances, &id(i));
        assert_eq!(started, 1, "{}: started exactly once", id(i));
    }
    // The scenario held: the server pushed back. kube's client retried each 429 after the
    // server's Retry-After (its default retry layer, below where `counts` sees): the
    // controller's code saw none.
    assert!(rejected > 0, "no 429 from the server: {tally:?}");
    assert_eq!(
        tally.by_status.get(&429),
        None,
        "a 429 reached the controller: {tally:?}"
    );
    // No storm: every request on the wire, retries included, within the bound.
    let bound = REQUESTS_PER_OBJECT_BOUND * OBJECTS as u64;
    assert!(
        sent <= bound,
        "{sent} requests on the wire for {OBJECTS} objects (bound {bound})"
    );
    // And the server's 429s say when to come back (what kube's retry waits for).
    let retry_after = probe_retry_after(&env, &token).await;
    eprintln!("priority and fairness: the server's 429 carries Retry-After: {retry_after}");
    controller
        .stop()
        .await
        .expect("the controller stops cleanly");
    sb.shutdown().await;
    drop(env);
}
