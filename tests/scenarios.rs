//! The controller end to end over HTTP, on the in-process Kubernetes API server: every shared
//! scenario (`support::flows`), plus those that need the API server's fault injection: a kill
//! between call and record, dropped watches, conflicts and 500s, and a 500-object fleet.

mod support;

use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_sim::{Action, FaultSpec, Latency, Outcome};
use futures::future::join_all;
use kube::api::ListParams;
use kubesim::{RequestFilter, Verb};
use support::flows::{reboots, token_done};
use support::scenario::*;

scenario_tests!(Backend::Local);

const WAIT: Duration = Duration::from_secs(30);

/// A real kill: the controller dies after ECS accepted the reboot, while its status write hangs;
/// a new controller finishes the job without a second reboot.
#[tokio::test]
async fn a_controller_killed_mid_reboot_is_replaced_without_a_second_reboot() {
    let sb = sandbox(
        Backend::Local,
        vec![instance("i-kill1", InstanceStatus::Running)],
    )
    .await;
    // Slow ECS answers give the test time to arm the API-server delay between intent and call.
    sb.sim.set_latency(Latency {
        fixed_ms: 600,
        jitter_ms: 0,
    });
    let first = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(
        &sb,
        &with_token(ecs_instance("app", "i-kill1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb, "app", WAIT, |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.reboot_in_flight.is_some())
    })
    .await;
    // The intent is recorded and the call is on its way: from now on status writes hang.
    local(&sb).faults().delay(
        Duration::from_secs(30),
        RequestFilter::any()
            .verb(Verb::Patch)
            .resource("ecsinstances/status"),
    );
    wait_for(&sb, "app", WAIT, |_| reboots(&sb, "i-kill1") == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.kill().await;
    local(&sb).faults().clear();
    sb.sim.set_latency(Latency::default());

    let second = sb.spawn_controller(fast_options(&sb)).unwrap();
    wait_for(&sb, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-kill1"), 1);
    second.stop().await.unwrap();
    sb.shutdown().await;
}

#[tokio::test]
async fn dropped_watches_conflicts_and_server_errors_lose_nothing() {
    let ids: Vec<String> = (0..20).map(|i| format!("i-flaky{i}")).collect();
    let sb = sandbox(
        Backend::Local,
        ids.iter()
            .map(|id| instance(id, InstanceStatus::Stopped))
            .collect(),
    )
    .await;
    let status_writes = || {
        RequestFilter::any()
            .verb(Verb::Patch)
            .resource("ecsinstances/status")
    };
    local(&sb).faults().fail_next(10, status_writes());
    local(&sb).faults().conflict_next(5, status_writes());
    local(&sb).faults().fail_next(
        3,
        RequestFilter::any()
            .verb(Verb::List)
            .resource("ecsinstances"),
    );
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let mut obj = ecs_instance(&format!("obj-{i}"), id, PowerState::Running);
        if i % 4 == 0 {
            obj = with_token(obj, "t1");
        }
        create(&sb, &obj).await;
        if i == 10 {
            local(&sb).faults().drop_watches();
        }
    }
    for i in 0..ids.len() {
        wait_for(&sb, &format!("obj-{i}"), WAIT, is_ready).await;
    }
    // Every instance started exactly once; tokens on a Stopped instance are satisfied by the
    // start, so no reboot at all.
    for id in &ids {
        assert_eq!(
            sb.sim.calls().count(Action::StartInstance, id, Outcome::Ok),
            1,
            "{id}"
        );
        assert_eq!(
            sb.sim.calls().count_all(Action::RebootInstance, id),
            0,
            "{id}"
        );
    }
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn five_hundred_objects_converge_with_exactly_the_calls_required() {
    const N: usize = 500;
    let mut specs = Vec::new();
    for i in 0..N {
        let status = if i % 2 == 0 {
            InstanceStatus::Stopped
        } else {
            InstanceStatus::Running
        };
        specs.push(instance(&format!("i-fleet{i:04}"), status));
    }
    let sb = sandbox(Backend::Local, specs).await;
    let mut options = fast_options(&sb);
    options.concurrency = 32;
    let controller = sb.spawn_controller(options).unwrap();
    let creates = (0..N).map(|i| {
        let sb = &sb;
        async move {
            // Even: Stopped → Running. Odd: Running → Stopped, every tenth of them with a token
            // (skipped: the desired state is Stopped).
            let power = if i % 2 == 0 {
                PowerState::Running
            } else {
                PowerState::Stopped
            };
            let mut obj = ecs_instance(&format!("fleet-{i:04}"), &format!("i-fleet{i:04}"), power);
            if i % 10 == 1 {
                obj = with_token(obj, "t1");
            }
            create(sb, &obj).await;
        }
    });
    join_all(creates).await;

    let started = std::time::Instant::now();
    loop {
        let list = api(&sb).list(&ListParams::default()).await.unwrap();
        let ready = list.items.iter().filter(|o| is_ready(o)).count();
        if ready == N {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{ready}/{N} ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = sb.sim.calls();
    assert_eq!(
        calls.total(Action::StartInstance),
        (N / 2) as u64,
        "one start per stopped instance"
    );
    assert_eq!(
        calls.total(Action::StopInstance),
        (N / 2) as u64,
        "one stop per running instance"
    );
    assert_eq!(
        calls.total(Action::RebootInstance),
        0,
        "tokens while Stopped are skipped"
    );
    for i in (1..N).step_by(10) {
        let obj = api(&sb).get(&format!("fleet-{i:04}")).await.unwrap();
        assert_eq!(obj.status.unwrap().last_reboot_token.as_deref(), Some("t1"));
    }
    controller.stop().await.unwrap();
}

/// The controller's cache trails the API server by more than a transition poll (watch events
/// held back, as on a loaded machine), so the look that follows a reboot decides from a copy made
/// before it. That look must not roll back what the reboot recorded: once the StartTime minute
/// has passed (the sim's StartTime set back) and the object is looked at again, the token is
/// still done and the instance was rebooted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_cache_never_rolls_back_a_reboot_token() {
    let sb = sandbox(
        Backend::Local,
        vec![instance("i-lag1", InstanceStatus::Running)],
    )
    .await;
    let lag = Duration::from_secs(1);
    let options = fast_options(&sb);
    assert!(lag > options.timings.transition_poll);
    let faults = local(&sb).faults().clone();
    faults.lag_watches(lag, RequestFilter::any().resource("ecsinstances"));
    let controller = sb.spawn_controller(options).unwrap();
    create(
        &sb,
        &with_token(ecs_instance("app", "i-lag1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb, "app", WAIT, |_| reboots(&sb, "i-lag1") == 1).await;
    // The intent, the outcome, and the look from the copy made before both.
    let status_patches = || faults.requests().count(Verb::Patch, "ecsinstances/status");
    wait_for(&sb, "app", WAIT, |_| status_patches() >= 3).await;
    // Let the cache catch up, then let the StartTime minute pass and touch the object.
    tokio::time::sleep(3 * lag).await;
    sb.sim
        .set_start_time(
            "i-lag1",
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    api(&sb)
        .patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": { "annotations": { "example.com/touched": "1" } }
            })),
        )
        .await
        .unwrap();
    tokio::time::sleep(3 * lag).await;

    let obj = api(&sb).get("app").await.unwrap();
    assert!(token_done("t1")(&obj), "{:#?}", obj.status);
    assert_eq!(reboots(&sb, "i-lag1"), 1);
    controller.stop().await.unwrap();
}

/// The API server answers every status write with 500 while ECS refuses the start for a reason
/// a person must fix (InsufficientBalance: recheck in 10 minutes). The backoff is never recorded
/// in status, so it is kept in memory: in the seconds that follow, StartInstance is not called
/// again (a fixed 5 s requeue called it every 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_status_writes_do_not_repeat_the_mutating_call() {
    let sb = sandbox(
        Backend::Local,
        vec![instance("i-broke1", InstanceStatus::Stopped)],
    )
    .await;
    sb.sim
        .inject(
            FaultSpec::new(Action::StartInstance, "InsufficientBalance")
                .instance("i-broke1")
                .times(1000),
        )
        .unwrap();
    let faults = local(&sb).faults().clone();
    faults.fail_next(
        1000,
        RequestFilter::any()
            .verb(Verb::Patch)
            .resource("ecsinstances/status"),
    );
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(&sb, &ecs_instance("app", "i-broke1", PowerState::Running)).await;
    let starts = || sb.sim.calls().count_all(Action::StartInstance, "i-broke1");
    wait_for(&sb, "app", WAIT, |_| starts() >= 1).await;
    // A fixed 5 s requeue would have called twice more by now.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(starts(), 1);
    controller.stop().await.unwrap();
}
