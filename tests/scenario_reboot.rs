//! A reboot token is carried out exactly once: across tokens, across controller crashes at every
//! point of the protocol, across ambiguous failures, and across leader failover.

mod support;

use std::time::Duration;

use ecs_power_controller::api::{PowerState, RebootInFlight};
use ecs_power_controller::controller::leader::LeaseSettings;
use ecs_power_controller::ecs::InstanceStatus;
use ecs_power_controller::kubesim::{RequestFilter, Verb};
use ecs_power_controller::sim::{Action, FaultSpec, Latency, Outcome};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::scenario::*;

const WAIT: Duration = Duration::from_secs(20);

fn reboots(sb: &ecs_power_controller::demo::Sandbox, id: &str) -> u64 {
    sb.sim.calls().count_all(Action::RebootInstance, id)
}

fn token_done(token: &'static str) -> impl Fn(&ecs_power_controller::api::EcsInstance) -> bool {
    move |o| {
        is_ready(o)
            && o.status
                .as_ref()
                .and_then(|s| s.last_reboot_token.as_deref())
                == Some(token)
    }
}

#[tokio::test]
async fn each_new_token_reboots_exactly_once() {
    let sb = sandbox(vec![instance("i-rb1", InstanceStatus::Running)]).await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &with_token(ecs_instance("app", "i-rb1", PowerState::Running), "t1"),
    )
    .await;
    let obj = wait_for(&sb.client, "app", WAIT, token_done("t1")).await;
    assert_eq!(reboots(&sb, "i-rb1"), 1);
    let last = obj.status.unwrap().last_action.unwrap();
    assert_eq!(last.token.as_deref(), Some("t1"));
    assert!(
        event_reasons(&sb.client, "app")
            .await
            .contains(&"Rebooting".to_string())
    );

    // Any unrelated edit: no second reboot for the same token.
    patch_spec(
        &sb.client,
        "app",
        json!({"start": {"initLocalDisk": false}}),
    )
    .await;
    wait_for(&sb.client, "app", WAIT, is_ready).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-rb1"), 1);

    // A new token right away: the instance started this minute, so the reboot is deferred
    // until a later StartTime can prove it (StartTime has minute precision).
    patch_spec(&sb.client, "app", json!({"reboot": {"token": "t2"}})).await;
    let obj = wait_for_reason(&sb.client, "app", "Reconciling", "True", "Rebooting").await;
    assert!(condition(&obj, "Ready").unwrap().message.contains("minute"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-rb1"), 1);

    // An hour later (as far as StartTime says): exactly one more.
    sb.sim
        .set_start_time(
            "i-rb1",
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    // The controller sleeps until the minute it computed is over; any edit wakes it sooner.
    api(&sb.client)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .unwrap();
    wait_for(&sb.client, "app", WAIT, token_done("t2")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-rb1"), 2);
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn a_token_while_stopped_is_skipped_and_a_start_satisfies_a_pending_one() {
    let sb = sandbox(vec![
        instance("i-rb2", InstanceStatus::Stopped),
        instance("i-rb3", InstanceStatus::Stopped),
    ])
    .await;
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &with_token(ecs_instance("off", "i-rb2", PowerState::Stopped), "t1"),
    )
    .await;
    create(
        &sb.client,
        &with_token(ecs_instance("boot", "i-rb3", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb.client, "off", WAIT, token_done("t1")).await;
    wait_for(&sb.client, "boot", WAIT, token_done("t1")).await;
    assert!(
        event_reasons(&sb.client, "off")
            .await
            .contains(&"RebootSkipped".to_string())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reboots(&sb, "i-rb2") + reboots(&sb, "i-rb3"), 0);
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StartInstance, "i-rb3", Outcome::Ok),
        1
    );
    controller.stop().await.unwrap();
}

/// Writes the status a controller that died right after recording its intent leaves behind.
async fn leave_intent(sb: &ecs_power_controller::demo::Sandbox, name: &str, id: &str, token: &str) {
    let intent = RebootInFlight {
        token: token.into(),
        start_time_before: sb.sim.instance(id).unwrap().start_time,
        requested_at: Time(jiff::Timestamp::now()),
    };
    api(&sb.client)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"rebootInFlight": intent}})),
        )
        .await
        .unwrap();
}

/// Crash after the intent was written, before the call: the next controller waits out the grace
/// (ECS shows no reboot) and then reboots, once.
#[tokio::test]
async fn crash_between_intent_and_call_reboots_once() {
    let sb = sandbox(vec![instance("i-crash1", InstanceStatus::Running)]).await;
    create(
        &sb.client,
        &with_token(ecs_instance("app", "i-crash1", PowerState::Running), "t1"),
    )
    .await;
    leave_intent(&sb, "app", "i-crash1", "t1").await;

    let controller = sb.spawn_controller(fast_options()).unwrap();
    // Inside the grace nothing is sent, whatever happened.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reboots(&sb, "i-crash1"), 0);
    wait_for(&sb.client, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reboots(&sb, "i-crash1"), 1);
    controller.stop().await.unwrap();
}

/// Crash after the call went out, before the status write: the next controller sees the reboot
/// in ECS (a transition, a later StartTime) and does not send another.
#[tokio::test]
async fn crash_between_call_and_status_write_never_reboots_twice() {
    let sb = sandbox(vec![instance("i-crash2", InstanceStatus::Running)]).await;
    create(
        &sb.client,
        &with_token(ecs_instance("app", "i-crash2", PowerState::Running), "t1"),
    )
    .await;
    leave_intent(&sb, "app", "i-crash2", "t1").await;
    // The dead controller's call: ECS rebooted the instance.
    let ecs = sb.ecs_client().unwrap();
    use ecs_power_controller::ecs::EcsApi;
    ecs.reboot_instance(REGION, "i-crash2", &Default::default())
        .await
        .unwrap();

    let controller = sb.spawn_controller(fast_options()).unwrap();
    wait_for(&sb.client, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-crash2"), 1);
    controller.stop().await.unwrap();
}

/// The call executed but its answer was lost (InternalError after the fact): ambiguous, so the
/// intent stays, the instance is checked, and no second reboot is sent.
#[tokio::test]
async fn a_lost_answer_is_resolved_from_the_instance_not_by_retrying() {
    let sb = sandbox(vec![instance("i-lost1", InstanceStatus::Running)]).await;
    sb.sim
        .inject(
            FaultSpec::new(Action::RebootInstance, "InternalError")
                .instance("i-lost1")
                .applied(),
        )
        .unwrap();
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &with_token(ecs_instance("app", "i-lost1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb.client, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reboots(&sb, "i-lost1"),
        1,
        "the lost answer must not cause a second reboot"
    );
    controller.stop().await.unwrap();
}

/// A real kill: the controller dies after ECS accepted the reboot, while its status write hangs;
/// a new controller finishes the job without a second reboot.
#[tokio::test]
async fn a_controller_killed_mid_reboot_is_replaced_without_a_second_reboot() {
    let sb = sandbox(vec![instance("i-kill1", InstanceStatus::Running)]).await;
    // Slow ECS answers give the test time to arm the API-server delay between intent and call.
    sb.sim.set_latency(Latency {
        fixed_ms: 600,
        jitter_ms: 0,
    });
    let first = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &with_token(ecs_instance("app", "i-kill1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb.client, "app", WAIT, |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.reboot_in_flight.is_some())
    })
    .await;
    // The intent is recorded and the call is on its way: from now on status writes hang.
    sb.kube.faults().delay(
        Duration::from_secs(30),
        RequestFilter::any()
            .verb(Verb::Patch)
            .resource("ecsinstances/status"),
    );
    wait_for(&sb.client, "app", WAIT, |_| reboots(&sb, "i-kill1") == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.kill().await;
    sb.kube.faults().clear();
    sb.sim.set_latency(Latency::default());

    let second = sb.spawn_controller(fast_options()).unwrap();
    wait_for(&sb.client, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-kill1"), 1);
    second.stop().await.unwrap();
}

fn lease(identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "ecs-power-controller".into(),
        namespace: NS.into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

/// Two replicas: only the leader calls ECS; when it dies the other takes over within the lease
/// duration, and no token is carried out twice across the failover.
#[tokio::test]
async fn only_the_leader_calls_ecs_and_failover_keeps_reboots_exactly_once() {
    let sb = sandbox(vec![
        instance("i-le1", InstanceStatus::Running),
        instance("i-le2", InstanceStatus::Stopped),
    ])
    .await;
    let mut a = fast_options();
    a.lease = Some(lease("replica-a"));
    let mut b = fast_options();
    b.lease = Some(lease("replica-b"));
    let replica_a = sb.spawn_controller(a).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replica_b = sb.spawn_controller(b).unwrap();

    create(
        &sb.client,
        &with_token(ecs_instance("app", "i-le1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb.client, "app", WAIT, token_done("t1")).await;
    let calls = |m: &ecs_power_controller::telemetry::Metrics| {
        m.ecs_call_count("DescribeInstances", "OK") + m.ecs_call_count("RebootInstance", "OK")
    };
    assert!(calls(&replica_a.metrics) > 0, "the first replica leads");
    assert_eq!(calls(&replica_b.metrics), 0, "the follower never calls ECS");

    // The leader dies without releasing the lease.
    replica_a.kill().await;
    let died = std::time::Instant::now();
    create(
        &sb.client,
        &ecs_instance("web", "i-le2", PowerState::Running),
    )
    .await;
    wait_for(&sb.client, "web", WAIT, is_ready).await;
    assert!(
        died.elapsed() < Duration::from_secs(8),
        "failover took {:?}",
        died.elapsed()
    );
    assert!(replica_b.metrics.ecs_call_count("StartInstance", "OK") == 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-le1"), 1, "no second reboot across failover");
    replica_b.stop().await.unwrap();
}
