//! Replicas with leader election, on the in-process API server and the ECS simulator: a rolling
//! update hands the lease over at once, and a leader cut off from its Lease steps down on its
//! own clock before the other takes over. In both, only the leader calls ECS and every mutating
//! call is made once. A replica stopped before it got going stops at once.

use std::time::{Duration, Instant};

use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_power_controller::controller::LeaseSettings;
use ecs_power_controller::demo::{RunningController, Sandbox};
use ecs_power_controller::telemetry::Metrics;
use ecs_sim::Action;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kubesim::{RequestFilter, Verb};

const WAIT: Duration = Duration::from_secs(30);

fn lease(sb: &Sandbox, identity: &str, duration: Duration) -> LeaseSettings {
    LeaseSettings {
        name: "ecs-power-controller".into(),
        namespace: sb.namespace.clone(),
        identity: identity.into(),
        duration,
        renew_deadline: duration * 2 / 3,
        retry_period: Duration::from_millis(200),
    }
}

/// A replica with a Kubernetes client of its own, whose requests say `User-Agent: identity`.
fn replica(sb: &Sandbox, identity: &str, duration: Duration) -> RunningController {
    let mut config = local(sb).config().unwrap();
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_str(&format!("ecs-power-controller/{identity}")).unwrap(),
    ));
    let mut options = fast_options(sb);
    options.lease = Some(lease(sb, identity, duration));
    sb.spawn_controller_on(Client::try_from(config).unwrap(), options)
        .unwrap()
}

/// ECS calls a replica has made (and seen answered), of every action.
fn ecs_calls(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("ecs_power_controller_ecs_call_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Start, stop and reboot requests ECS received for `id`, single or batched.
fn mutations(sb: &Sandbox, id: &str) -> u64 {
    [
        Action::StartInstance,
        Action::StopInstance,
        Action::RebootInstance,
        Action::StartInstances,
        Action::StopInstances,
        Action::RebootInstances,
    ]
    .into_iter()
    .map(|a| sb.sim.calls().count_all(a, id))
    .sum()
}

async fn holder(sb: &Sandbox) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(sb.client.clone(), &sb.namespace);
    leases
        .get_opt("ecs-power-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

async fn until_holder(sb: &Sandbox, identity: &str, within: Duration) {
    let started = Instant::now();
    while holder(sb).await.as_deref() != Some(identity) {
        assert!(
            started.elapsed() < within,
            "{identity} does not hold the lease after {within:?} (holder {:?})",
            holder(sb).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A rolling update: SIGTERM to the leader. It finishes, releases the Lease, and the other
/// replica carries on within 5 s, not after the 15 s lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_gracefully_hands_over_at_once_and_every_call_is_made_once() {
    let sb = sandbox(
        Backend::Local,
        vec![
            instance("i-roll1", InstanceStatus::Running),
            instance("i-roll2", InstanceStatus::Stopped),
            instance("i-roll3", InstanceStatus::Running),
        ],
    )
    .await;
    let duration = Duration::from_secs(15);
    let a = replica(&sb, "replica-a", duration);
    until_holder(&sb, "replica-a", WAIT).await;
    let b = replica(&sb, "replica-b", duration);
    let t1 = requested_now();
    create(
        &sb,
        &with_token(ecs_instance("app", "i-roll1", PowerState::Running), &t1),
    )
    .await;
    wait_for(&sb, "app", WAIT, token_done(t1)).await;
    assert!(ecs_calls(&a.metrics) > 0, "the leader calls ECS");
    assert_eq!(ecs_calls(&b.metrics), 0, "the follower never calls ECS");
    assert!(
        a.readiness.get() && b.readiness.get(),
        "both replicas serve"
    );

    let a_readiness = a.readiness.clone();
    let a_metrics = a.metrics.clone();
    let a_calls = ecs_calls(&a_metrics);
    let stopping = Instant::now();
    a.stop().await.expect("a graceful stop");
    create(&sb, &ecs_instance("web", "i-roll2", PowerState::Running)).await;
    create(&sb, &ecs_instance("batch", "i-roll3", PowerState::Stopped)).await;
    let left = Duration::from_secs(5).saturating_sub(stopping.elapsed());
    wait_for(&sb, "web", left, is_ready).await;
    let left = Duration::from_secs(5).saturating_sub(stopping.elapsed());
    wait_for(&sb, "batch", left, is_ready).await;

    assert_eq!(
        ecs_calls(&a_metrics),
        a_calls,
        "a stopped replica calls ECS"
    );
    assert!(!a_readiness.get(), "a stopped controller is not ready");
    assert!(ecs_calls(&b.metrics) > 0, "the new leader calls ECS");
    assert_eq!(holder(&sb).await.as_deref(), Some("replica-b"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in ["i-roll1", "i-roll2", "i-roll3"] {
        assert_eq!(mutations(&sb, id), 1, "{id}: {:?}", sb.sim.calls().log());
    }
    b.stop().await.unwrap();
    sb.shutdown().await;
}

/// The incident: the leader's Lease requests stop answering (its other requests still do). It
/// must step down by its own clock before the other replica can take the lease, so that only
/// one replica ever acts on an object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_hang_steps_down_and_every_call_is_made_once() {
    let ids = [
        "i-hang1", "i-hang2", "i-hang3", "i-hang4", "i-hang5", "i-hang6",
    ];
    let sb = sandbox(
        Backend::Local,
        ids.iter()
            .map(|id| instance(id, InstanceStatus::Running))
            .collect(),
    )
    .await;
    let duration = Duration::from_secs(3);
    let a = replica(&sb, "replica-a", duration);
    until_holder(&sb, "replica-a", WAIT).await;
    let b = replica(&sb, "replica-b", duration);
    create(&sb, &ecs_instance("first", ids[0], PowerState::Stopped)).await;
    wait_for(&sb, "first", WAIT, is_ready).await;
    assert!(ecs_calls(&a.metrics) > 0, "the leader calls ECS");

    local(&sb).faults().hang(
        RequestFilter::any()
            .resource("leases")
            .user_agent("replica-a"),
    );
    until_holder(&sb, "replica-b", WAIT).await;
    let a_calls = ecs_calls(&a.metrics);
    // Work that both would act on if both thought they led.
    for (n, id) in ids.iter().enumerate().skip(1) {
        create(
            &sb,
            &ecs_instance(&format!("web-{n}"), id, PowerState::Stopped),
        )
        .await;
    }
    for n in 1..ids.len() {
        wait_for(&sb, &format!("web-{n}"), WAIT, is_ready).await;
    }

    assert_eq!(
        ecs_calls(&a.metrics),
        a_calls,
        "a replica that cannot renew its lease calls ECS"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in ids {
        assert_eq!(mutations(&sb, id), 1, "{id}: {:?}", sb.sim.calls().log());
    }
    local(&sb).faults().clear();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    sb.shutdown().await;
}

/// Polls kubesim's request counters until `verb` on `resource` has been asked `n` times.
async fn until_requested(sb: &Sandbox, verb: Verb, resource: &str, n: u64) {
    let started = Instant::now();
    while local(sb).requests().count(verb, resource) < n {
        assert!(started.elapsed() < WAIT, "no {n} {verb:?} {resource}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A rolling update while the API server does not answer the start-up check: the replica has
/// started nothing, so it stops at once (the kubelet would otherwise kill it after the grace
/// period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_while_its_start_up_check_hangs_stops_at_once() {
    let sb = sandbox(Backend::Local, vec![]).await;
    local(&sb).faults().hang(
        RequestFilter::any()
            .verb(Verb::List)
            .resource("ecsinstances"),
    );
    let a = replica(&sb, "replica-a", Duration::from_secs(15));
    until_requested(&sb, Verb::List, "ecsinstances", 1).await;
    tokio::time::timeout(Duration::from_secs(10), a.stop())
        .await
        .expect("the stop waits for nothing")
        .expect("a clean stop");
    assert_eq!(holder(&sb).await, None, "it never led");
    local(&sb).faults().clear();
    sb.shutdown().await;
}

/// A leader stopped while its first list of EcsInstances is unanswered: kube-runtime would wait
/// for that list forever before it runs (or stops) anything. Nothing had started, so it stops
/// at once and releases the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_before_its_first_list_is_answered_stops_at_once_and_releases() {
    let sb = sandbox(Backend::Local, vec![]).await;
    // The first 25 Lease requests fail (5 s of retries): the start-up check is done when the
    // first arrives, and the replica cannot lead before the list below is made to hang.
    local(&sb)
        .faults()
        .fail_next(25, RequestFilter::any().resource("leases"));
    let a = replica(&sb, "replica-a", Duration::from_secs(15));
    until_requested(&sb, Verb::Get, "leases", 1).await;
    local(&sb).faults().hang(
        RequestFilter::any()
            .verb(Verb::List)
            .resource("ecsinstances"),
    );
    until_holder(&sb, "replica-a", WAIT).await;
    // The start-up check, then the controller's initial list, which hangs.
    until_requested(&sb, Verb::List, "ecsinstances", 2).await;
    tokio::time::timeout(Duration::from_secs(10), a.stop())
        .await
        .expect("the stop waits for nothing")
        .expect("a clean stop");
    assert_eq!(holder(&sb).await, None, "the lease is released");
    local(&sb).faults().clear();
    sb.shutdown().await;
}
