//! The API server misbehaves (dropped watches, conflicts, 500s, throttling) and the fleet is
//! large: the controller recovers, nothing is lost, and ECS sees exactly the calls the
//! decisions require.

mod support;

use std::time::Duration;

use ecs_power_controller::api::PowerState;
use ecs_power_controller::ecs::InstanceStatus;
use ecs_power_controller::kubesim::{RequestFilter, Verb};
use ecs_power_controller::sim::{Action, Outcome};
use futures::future::join_all;
use kube::api::ListParams;
use support::scenario::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn dropped_watches_conflicts_and_server_errors_lose_nothing() {
    let ids: Vec<String> = (0..20).map(|i| format!("i-flaky{i}")).collect();
    let sb = sandbox(
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
    sb.kube.faults().fail_next(10, status_writes());
    sb.kube.faults().conflict_next(5, status_writes());
    sb.kube.faults().fail_next(
        3,
        RequestFilter::any()
            .verb(Verb::List)
            .resource("ecsinstances"),
    );
    let controller = sb.spawn_controller(fast_options()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let mut obj = ecs_instance(&format!("obj-{i}"), id, PowerState::Running);
        if i % 4 == 0 {
            obj = with_token(obj, "t1");
        }
        create(&sb.client, &obj).await;
        if i == 10 {
            sb.kube.faults().drop_watches();
        }
    }
    for i in 0..ids.len() {
        wait_for(&sb.client, &format!("obj-{i}"), WAIT, is_ready).await;
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
    let sb = sandbox(specs).await;
    let mut options = fast_options();
    options.concurrency = 32;
    let controller = sb.spawn_controller(options).unwrap();
    let creates = (0..N).map(|i| {
        let client = sb.client.clone();
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
            create(&client, &obj).await;
        }
    });
    join_all(creates).await;

    let started = std::time::Instant::now();
    loop {
        let list = api(&sb.client).list(&ListParams::default()).await.unwrap();
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
        let obj = api(&sb.client).get(&format!("fleet-{i:04}")).await.unwrap();
        assert_eq!(obj.status.unwrap().last_reboot_token.as_deref(), Some("t1"));
    }
    controller.stop().await.unwrap();
}
