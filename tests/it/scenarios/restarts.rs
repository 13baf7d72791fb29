//! Scenarios that need the in-process API server's fault injection: a kill between call and
//! record, dropped watches, conflicts and 500s, a 500-object fleet.

use std::time::Duration;

use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_power_controller::controller::{BatchSettings, Config};
use ecs_sim::{Action, FaultSpec, Latency, Outcome};
use futures::FutureExt;
use futures::future::join_all;
use kube::api::ListParams;
use kubesim::{RequestFilter, Verb};

/// From now on EcsInstance status writes hang (for 30 s): what a controller does next is never
/// recorded.
fn hang_status_writes(s: &Scenario) {
    s.kube().faults().delay(
        Duration::from_secs(30),
        RequestFilter::any()
            .verb(Verb::Patch)
            .resource("ecsinstances/status"),
    );
}

/// A restart in the middle of a schedule's transition: the controller dies after ECS accepted
/// the boundary's StopInstance, while its status write hangs; the next controller (on the same
/// shifted schedule clock) finds the instance stopped and makes no second call.
#[tokio::test]
async fn a_restart_mid_transition_makes_no_second_call() {
    use crate::flows::schedules::{
        at, controller_shifted, create_schedule, daytime, following, settled_in,
    };
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-boundary1", InstanceStatus::Running)]);
        create_schedule(s, &daytime()).await;
        s.sim.set_latency(Latency {
            fixed_ms: 600,
            jitter_ms: 0,
        });
        let offset = at("2026-11-27T19:59:56Z").duration_since(jiff::Timestamp::now());
        let first = controller_shifted(s, offset);
        s.create(&following("dev", "i-boundary1", "daytime")).await;
        // Its first status is written (Running, or already Stopped on a slow machine: then
        // the kill below comes after the record, and the check still holds).
        s.wait_for("dev", |o| {
            o.status
                .as_ref()
                .is_some_and(|st| st.desired_power_state.is_some())
        })
        .await;
        // From now on status writes hang: the boundary's stop is accepted, never recorded.
        hang_status_writes(s);
        s.wait_until("the boundary's StopInstance", async || {
            s.sim.calls().count_all(Action::StopInstance, "i-boundary1") == 1
        })
        .await;
        s.kill(first).await;
        s.kube().faults().clear();
        s.sim.set_latency(Latency::default());

        controller_shifted(s, offset);
        s.wait_for("dev", settled_in(PowerState::Stopped)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-boundary1"),
            1
        );
    })
    .await;
}

/// A real kill: the controller dies after ECS accepted the reboot, while its status write hangs;
/// a new controller finishes the job without a second reboot.
#[tokio::test]
async fn a_controller_killed_mid_reboot_is_replaced_without_a_second_reboot() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-kill1", InstanceStatus::Running)]);
        // Slow ECS answers give the test time to arm the API-server delay between intent and
        // call.
        s.sim.set_latency(Latency {
            fixed_ms: 600,
            jitter_ms: 0,
        });
        let first = s.controller();
        let t1 = requested_now();
        s.create(&with_token(
            ecs_instance("app", "i-kill1", PowerState::Running),
            &t1,
        ))
        .await;
        s.wait_for("app", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.reboot_in_flight.is_some())
        })
        .await;
        // The intent is recorded and the call is on its way: from now on status writes hang.
        hang_status_writes(s);
        s.wait_for("app", |_| s.reboots("i-kill1") == 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.kill(first).await;
        s.kube().faults().clear();
        s.sim.set_latency(Latency::default());

        s.controller();
        s.wait_for("app", token_done(t1)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(s.reboots("i-kill1"), 1);
    })
    .await;
}

/// The controller's cache trails the API server (a lagging watch, as on a loaded machine): a
/// reconcile of an old copy must not overwrite what a newer one recorded. The reboot stays
/// recorded and is never sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_cache_never_loses_a_recorded_reboot() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-lag1", InstanceStatus::Running)]);
        s.kube().faults().lag_watches(
            Duration::from_secs(1),
            RequestFilter::any().resource("ecsinstances"),
        );
        s.controller();
        let t1 = requested_now();
        s.create(&with_token(
            ecs_instance("app", "i-lag1", PowerState::Running),
            &t1,
        ))
        .await;
        s.wait_for("app", token_done(&t1)).await;
        // The looks that follow the reboot (every 100 ms) see the object as it was a second ago.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let obj = s.get("app").await;
        assert!(token_done(&t1)(&obj), "{:#?}", obj.status);
        assert_eq!(s.reboots("i-lag1"), 1);
    })
    .await;
}

#[tokio::test]
async fn dropped_watches_conflicts_and_server_errors_lose_nothing() {
    run_flow(Backend::Local, async |s| {
        let ids: Vec<String> = (0..20).map(|i| format!("i-flaky{i}")).collect();
        s.add(ids.iter().map(|id| instance(id, InstanceStatus::Stopped)));
        let status_writes = || {
            RequestFilter::any()
                .verb(Verb::Patch)
                .resource("ecsinstances/status")
        };
        let faults = s.kube().faults();
        faults.fail_next(10, status_writes());
        faults.conflict_next(5, status_writes());
        faults.fail_next(
            3,
            RequestFilter::any()
                .verb(Verb::List)
                .resource("ecsinstances"),
        );
        s.controller();
        for (i, id) in ids.iter().enumerate() {
            let mut obj = ecs_instance(&format!("obj-{i}"), id, PowerState::Running);
            if i % 4 == 0 {
                obj = with_token(obj, "t1");
            }
            s.create(&obj).await;
            if i == 10 {
                faults.drop_watches();
            }
        }
        for i in 0..ids.len() {
            s.wait_for(&format!("obj-{i}"), is_ready).await;
        }
        // Every instance started exactly once; the tokens, there when the controller first saw
        // the objects, are adopted as done, so no reboot at all.
        for id in &ids {
            assert_eq!(
                s.sim.calls().count(Action::StartInstance, id, Outcome::Ok),
                1,
                "{id}"
            );
            assert_eq!(s.reboots(id), 0, "{id}");
        }
    })
    .await;
}

#[tokio::test]
async fn five_hundred_objects_converge_with_exactly_the_calls_required() {
    const N: usize = 500;
    run_flow(Backend::Local, async |s| {
        s.add((0..N).map(|i| {
            let status = if i % 2 == 0 {
                InstanceStatus::Stopped
            } else {
                InstanceStatus::Running
            };
            instance(&format!("i-fleet{i:04}"), status)
        }));
        let mut options = s.fast_options();
        options.concurrency = 32;
        s.controller_with(options);
        let creates = (0..N).map(|i| async move {
            // Even: Stopped → Running. Odd: Running → Stopped, every tenth of them with a
            // token (there at first sight: adopted as done).
            let power = if i % 2 == 0 {
                PowerState::Running
            } else {
                PowerState::Stopped
            };
            let mut obj = ecs_instance(&format!("fleet-{i:04}"), &format!("i-fleet{i:04}"), power);
            if i % 10 == 1 {
                obj = with_token(obj, "t1");
            }
            s.create(&obj).await;
        });
        join_all(creates).await;

        s.wait_until_within(Duration::from_secs(60), "all 500 ready", async || {
            let list = s.api().list(&ListParams::default()).await.unwrap();
            list.items.iter().filter(|o| is_ready(o)).count() == N
        })
        .await;
        let calls = s.sim.calls();
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
            "tokens there at first sight are adopted"
        );
        for i in (1..N).step_by(10) {
            let obj = s.get(&format!("fleet-{i:04}")).await;
            assert_eq!(obj.status.unwrap().last_reboot_token.as_deref(), Some("t1"));
        }
    })
    .await;
}

/// A flow that panics half-way is still torn down: its API server and simulator stop
/// listening, and its controller with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_flow_is_still_torn_down() {
    let mut listening = Vec::new();
    let outcome = std::panic::AssertUnwindSafe(run_flow(Backend::Local, async |s| {
        s.controller();
        listening.push(s.kube().addr());
        listening.push(
            s.sim
                .endpoint()
                .trim_start_matches("http://")
                .parse()
                .unwrap(),
        );
        panic!("the flow fails half-way");
    }))
    .catch_unwind()
    .await;
    assert!(outcome.is_err(), "the flow panicked");
    assert_eq!(listening.len(), 2);
    for addr in listening {
        let deadline = std::time::Instant::now() + WAIT;
        // Aborted server tasks release their listener at the runtime's next turn.
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} still accepts connections"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The API server answers every status write with 500 while ECS refuses the start for a reason
/// a person must fix (InsufficientBalance: recheck in 10 minutes). The backoff is never recorded
/// in status, so it is kept in memory: in the seconds that follow, StartInstance is not called
/// again (a fixed 5 s requeue called it every 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_status_writes_do_not_repeat_the_mutating_call() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-broke1", InstanceStatus::Stopped)]);
        s.controller();
        // The object has claimed the VM (a claim is recorded before any mutating call: with no
        // status write going through, none would be made at all).
        s.create(&ecs_instance("app", "i-broke1", PowerState::Stopped))
            .await;
        s.wait_for("app", is_ready).await;
        s.sim
            .inject(
                FaultSpec::new(Action::StartInstance, "InsufficientBalance")
                    .instance("i-broke1")
                    .times(1000),
            )
            .unwrap();
        s.kube().faults().fail_next(
            1000,
            RequestFilter::any()
                .verb(Verb::Patch)
                .resource("ecsinstances/status"),
        );
        s.patch_spec("app", serde_json::json!({"powerState": "Running"}))
            .await;
        let starts = || s.sim.calls().count_all(Action::StartInstance, "i-broke1");
        s.wait_for("app", |_| starts() >= 1).await;
        // A fixed 5 s requeue would have called twice more by now (a loaded machine can only
        // make fewer calls, never more).
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert_eq!(starts(), 1);
    })
    .await;
}

/// `kubectl get ecsi -o yaml --show-managed-fields` names the controller as the owner of what
/// it writes in status, not `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_carry_the_controller_s_field_manager() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-fm1", InstanceStatus::Running)]);
        s.controller();
        s.create(&ecs_instance("web", "i-fm1", PowerState::Running))
            .await;
        let obj = s.wait_for("web", is_ready).await;
        let managers: Vec<(String, String)> = obj
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.manager.unwrap_or_default(),
                    m.subresource.unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            managers.contains(&("ecs-power-controller".into(), "status".into())),
            "{managers:?}"
        );
    })
    .await;
}

/// The fleet observer's view and a reboot token race. With batching on, the observer keeps a
/// view of the instance (read when the object was created: StartTime an hour ago) that it would
/// serve to a resync. The instance is then started again outside the controller — its StartTime
/// minute is not over — and a token arrives before the observer reads again. Decided on the
/// view, the reboot would go out at once, inside the StartTime minute, where no later look could
/// prove it; decided on a reading sent after the token arrived, it waits the minute out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_token_racing_the_fleet_view_is_decided_on_evidence_read_after_it() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-race1", InstanceStatus::Running)]);
        let options = Config {
            batch: Some(BatchSettings::default()),
            ..s.fast_options()
        };
        s.controller_with(options);
        s.create(&ecs_instance("app", "i-race1", PowerState::Running))
            .await;
        s.wait_for("app", is_ready).await;

        // Started again a moment ago, as ECS will report it for the next few minutes (a
        // StartTime minute ahead: the scenario does not depend on when in a minute it runs).
        let restarted = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_mins(3))
            .unwrap();
        s.sim.set_start_time("i-race1", restarted).unwrap();
        let token_sent = jiff::Timestamp::now();
        s.patch_spec("app", serde_json::json!({ "reboot": { "token": "t1" } }))
            .await;

        let obj = s
            .wait_for("app", |o| {
                condition(o, "Reconciling")
                    .is_some_and(|c| c.message.contains("started within the last minute"))
            })
            .await;
        assert_eq!(
            s.reboots("i-race1"),
            0,
            "no reboot inside the StartTime minute"
        );
        let status = obj.status.unwrap();
        assert!(status.reboot_in_flight.is_none());
        assert_ne!(status.last_reboot_token.as_deref(), Some("t1"));
        // The evidence: a DescribeInstances of the instance sent after the token.
        let describes = s.call_times(Action::DescribeInstances, "i-race1");
        assert!(describes.iter().any(|t| *t >= token_sent), "{describes:?}");
    })
    .await;
}
