//! Every ECS error of the seed pages, provoked through the simulator: its condition, event
//! and backoff; InstanceNotReady retried; a spec change lifts the backoff. Run on both backends: see `flows/mod.rs`.

use std::time::Duration;

use ecs_client::{InstanceStatus, StoppedMode};
use ecs_power_controller::api::{PowerState, StopSpec};
use ecs_sim::{Action, FaultSpec, Flags, InstanceSpec, Outcome};
use futures::future::join_all;
use serde_json::json;

use crate::support::scenario::*;

/// One seed-page error: how to provoke it, and what the operator must see.
struct Case {
    action: Action,
    code: &'static str,
    http_status: Option<u16>,
    /// How the simulator is made to answer it: a scripted fault, or the instance's own state.
    provoke: Provoke,
    /// `(condition type that is True, reason)`.
    expect: (&'static str, &'static str),
    /// The shortest first backoff window of the error, in seconds: the floor of the gap between
    /// two calls. The window itself is asserted in `controller::backoff`'s unit tests.
    window: u64,
}

enum Provoke {
    Fault,
    Flag(fn(&mut InstanceSpec)),
}

fn case(
    action: Action,
    code: &'static str,
    provoke: Provoke,
    expect: (&'static str, &'static str),
    window: u64,
) -> Case {
    Case {
        action,
        code,
        http_status: None,
        provoke,
        expect,
        window,
    }
}

const NOT_READY: (&str, &str) = ("Reconciling", "WaitingForInstance");
const RETRYING: (&str, &str) = ("Reconciling", "Retrying");
/// Errors a person must fix: rechecked after 10 minutes at the earliest.
const SLOW: u64 = 600;

fn start_cases() -> Vec<Case> {
    use Provoke::*;
    let start = Action::StartInstance;
    vec![
        case(
            start,
            "MissingParameter",
            Fault,
            ("Stalled", "InvalidSpec"),
            SLOW,
        ),
        case(
            start,
            "DiskError",
            Flag(|i| i.disk_fault = true),
            ("Stalled", "DiskError"),
            SLOW,
        ),
        case(start, "IncorrectInstanceStatus", Fault, NOT_READY, 5),
        case(
            start,
            "InstanceLockedForSecurity",
            Fault,
            ("Stalled", "InstanceLockedForSecurity"),
            SLOW,
        ),
        Case {
            http_status: Some(403),
            ..case(start, "InstanceNotReady", Fault, NOT_READY, 5)
        },
        Case {
            http_status: Some(500),
            ..case(start, "InstanceNotReady", Fault, NOT_READY, 5)
        },
        case(
            start,
            "InsufficientBalance",
            Flag(|i| i.overdue = true),
            ("Stalled", "InsufficientBalance"),
            SLOW,
        ),
        case(
            start,
            "InstanceExpired",
            Flag(|i| i.expired = true),
            ("Stalled", "InstanceExpired"),
            SLOW,
        ),
        case(
            start,
            "InvalidInstanceId.NotFound",
            Fault,
            ("Stalled", "InstanceNotFound"),
            SLOW,
        ),
        case(start, "InternalError", Fault, RETRYING, 10),
    ]
}

fn reboot_cases() -> Vec<Case> {
    use Provoke::*;
    let reboot = Action::RebootInstance;
    vec![
        case(
            reboot,
            "InvalidInstanceId.NotFound",
            Fault,
            ("Stalled", "InstanceNotFound"),
            SLOW,
        ),
        case(reboot, "IncorrectInstanceStatus", Fault, NOT_READY, 5),
        case(
            reboot,
            "InstanceLockedForSecurity",
            Fault,
            ("Stalled", "InstanceLockedForSecurity"),
            SLOW,
        ),
        case(
            reboot,
            "DiskError",
            Flag(|i| i.disk_fault = true),
            ("Stalled", "DiskError"),
            SLOW,
        ),
        case(reboot, "InternalError", Fault, RETRYING, 10),
        case(
            reboot,
            "InstanceExpiredOrInArrears",
            Flag(|i| i.expired = true),
            ("Stalled", "InstanceExpired"),
            SLOW,
        ),
        case(
            reboot,
            "InvalidParameter.KMSKeyId.KMSUnauthorized",
            Fault,
            ("Stalled", "Forbidden"),
            SLOW,
        ),
    ]
}

/// Every case on one instance and one object of its own, all under one controller.
async fn check_all(s: &Scenario, cases: Vec<Case>) {
    for (index, c) in cases.iter().enumerate() {
        let id = format!("i-case{index}");
        let rebooting = c.action == Action::RebootInstance;
        let mut spec = instance(
            &id,
            if rebooting {
                InstanceStatus::Running
            } else {
                InstanceStatus::Stopped
            },
        );
        match c.provoke {
            Provoke::Flag(set) => set(&mut spec),
            Provoke::Fault => {
                let mut f = FaultSpec::new(c.action, c.code).instance(&id).times(1000);
                if let Some(status) = c.http_status {
                    f = f.http_status(status);
                }
                s.sim.inject(f).unwrap();
            }
        }
        s.add([spec]);
    }
    s.controller();
    let results = join_all(cases.iter().enumerate().map(|(i, c)| check(s, i, c))).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Creates the case's object and checks everything an operator would look at.
async fn check(s: &Scenario, index: usize, c: &Case) -> Result<(), String> {
    let id = format!("i-case{index}");
    let name = format!("case-{index}");
    let rebooting = c.action == Action::RebootInstance;
    let mut obj = ecs_instance(&name, &id, PowerState::Running);
    if rebooting {
        // A time token: a request even on an object the controller sees for the first time.
        obj = with_token(obj, &requested_now());
    }
    s.create(&obj).await;

    let (type_, reason) = c.expect;
    let obj = s.wait_for_reason(&name, type_, "True", reason).await;
    let label = format!("{:?} {} ({:?})", c.action, c.code, c.http_status);
    let status = obj.status.clone().unwrap_or_default();
    let ready = condition(&obj, "Ready").ok_or("no Ready condition")?;
    if ready.status != "False" || ready.reason != reason {
        return Err(format!(
            "{label}: Ready is {}/{}",
            ready.status, ready.reason
        ));
    }
    if !ready.message.contains(c.code) || !ready.message.contains("RequestId") {
        return Err(format!(
            "{label}: message lacks the code or RequestId: {}",
            ready.message
        ));
    }
    if status.retry.count != 1 || status.retry.last_error_code.as_deref() != Some(c.code) {
        return Err(format!("{label}: retry {:?}", status.retry));
    }
    // The next attempt is scheduled after the failure (how long after: `controller::backoff`).
    let next = status
        .retry
        .next_attempt_after
        .ok_or("no nextAttemptAfter")?
        .0;
    if next <= ready.last_transition_time.0 {
        return Err(format!(
            "{label}: next attempt {next} is not after the failure at {}",
            ready.last_transition_time.0
        ));
    }
    // The Warning event (published after the status write).
    s.wait_for_event(&name, c.code).await;
    // Persistent error: the controller keeps looking (its own status writes wake it), yet never
    // calls again before the window is over. A gap can only grow on a slow machine. (One second
    // off: nextAttemptAfter is kept with second precision.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = s.call_times(c.action, &id);
    if calls.is_empty() {
        return Err(format!("{label}: no call recorded"));
    }
    for pair in calls.windows(2) {
        let gap = secs_between(pair[0], pair[1]);
        if gap < c.window as f64 - 1.0 {
            return Err(format!(
                "{label}: called again after {gap:.1}s, inside a backoff window of {} s",
                c.window
            ));
        }
    }
    if rebooting
        && s.get(&name)
            .await
            .status
            .unwrap_or_default()
            .last_reboot_token
            .is_some()
    {
        return Err(format!("{label}: a refused reboot was recorded as done"));
    }
    Ok(())
}

flow!(
    every_start_instance_error_has_its_condition_event_and_backoff,
    async |s| check_all(s, start_cases()).await
);

flow!(
    every_reboot_instance_error_has_its_condition_event_and_backoff,
    async |s| check_all(s, reboot_cases()).await
);

// InstanceNotReady (the instance is being created): retried, not given up on; the gaps are at
// least the 5 s and 10 s of its schedule (`controller::backoff` asserts the schedule itself, with
// its jitter ceiling, and `controller::decide` that a retry is due exactly when its window ends).
flow!(
    instance_not_ready_is_retried_after_5_then_10_seconds,
    async |s| {
        s.add([instance("i-new1", InstanceStatus::Stopped)]);
        s.sim
            .inject(
                FaultSpec::new(Action::StartInstance, "InstanceNotReady")
                    .instance("i-new1")
                    .times(2),
            )
            .unwrap();
        s.controller();
        s.create(&ecs_instance("worker", "i-new1", PowerState::Running))
            .await;
        let waiting = s
            .wait_for("worker", |o| {
                cond(o, "Reconciling") == ("True".into(), "WaitingForInstance".into())
                    && o.status.as_ref().is_some_and(|s| s.retry.count >= 1)
            })
            .await;
        let retry = waiting.status.unwrap().retry;
        assert_eq!(retry.last_error_code.as_deref(), Some("InstanceNotReady"));
        assert!(retry.next_attempt_after.is_some(), "{retry:?}");

        let obj = s.wait_for("worker", is_ready).await;
        assert_eq!(obj.status.unwrap().retry.count, 0, "the backoff is over");
        let times = s.call_times(Action::StartInstance, "i-new1");
        assert_eq!(times.len(), 3, "two refusals and one start");
        let gap = |a: usize| secs_between(times[a], times[a + 1]);
        assert!(gap(0) >= 4.0, "first retry after {:.1}s", gap(0));
        assert!(gap(1) >= 9.0, "second retry after {:.1}s", gap(1));
        assert_eq!(
            s.sim.calls().count(
                Action::StartInstance,
                "i-new1",
                Outcome::error("InstanceNotReady")
            ),
            2
        );
    }
);

// The fault is out of stock (retried after a minute at the earliest): when the ready instance
// shows up within `WAIT`, the spec change must have lifted the window.
flow!(
    a_spec_change_resets_the_backoff_and_acts_at_once,
    async |s| {
        s.add([instance("i-reset1", InstanceStatus::Stopped)]);
        s.sim
            .inject(
                FaultSpec::new(Action::StartInstance, "OperationDenied.NoStock")
                    .instance("i-reset1")
                    .times(1000),
            )
            .unwrap();
        s.controller();
        s.create(&ecs_instance("web", "i-reset1", PowerState::Running))
            .await;
        let obj = s
            .wait_for_reason("web", "Reconciling", "True", "InsufficientCapacity")
            .await;
        let window_end = obj
            .status
            .unwrap()
            .retry
            .next_attempt_after
            .expect("a backoff window")
            .0;

        s.sim.clear_faults();
        s.patch_spec("web", json!({"start": {"initLocalDisk": false}}))
            .await;
        let obj = s.wait_for("web", is_ready).await;
        assert_eq!(obj.status.unwrap().retry.count, 0);
        let started = s
            .call_times(Action::StartInstance, "i-reset1")
            .pop()
            .expect("a start");
        assert!(
            started < window_end,
            "started at {started}, after the window ({window_end})"
        );
    }
);

// A batch VM stopped with StopCharging (its vCPU and memory released) is wanted again while its
// zone has no stock of the type: StartInstance answers OperationDenied.NoStock. The object says
// so (Reconciling, reason InsufficientCapacity, a message naming KeepCharging), with a Warning
// event and the code counted; the next attempt comes a minute later at the earliest (the policy's
// first window: only this lower bound is asserted), and once stock returns it starts.
flow!(
    no_stock_after_a_stop_charging_stop_is_retried_after_a_minute_and_starts_when_stock_returns,
    async |s| {
        s.add([instance("i-stock1", InstanceStatus::Running)]);
        let replica = s.controller();
        let mut obj = ecs_instance("batch", "i-stock1", PowerState::Stopped);
        obj.spec.stop = Some(StopSpec {
            force: false,
            stopped_mode: StoppedMode::StopCharging,
        });
        s.create(&obj).await;
        s.wait_for("batch", is_ready).await;
        assert_eq!(
            s.sim.instance("i-stock1").unwrap().stopped_mode,
            "StopCharging"
        );

        // The zone runs out of the type; then the batch is wanted.
        let no_stock = Flags {
            no_stock: true,
            ..Flags::default()
        };
        s.sim.set_flags("i-stock1", no_stock).unwrap();
        s.patch_spec("batch", json!({"powerState": "Running"}))
            .await;
        let obj = s
            .wait_for_reason("batch", "Reconciling", "True", "InsufficientCapacity")
            .await;
        let ready = condition(&obj, "Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InsufficientCapacity")
        );
        for words in ["OperationDenied.NoStock", "no stock", "KeepCharging"] {
            assert!(
                ready.message.contains(words),
                "{words:?}: {}",
                ready.message
            );
        }
        assert_eq!(cond(&obj, "Stalled").0, "False");
        s.wait_for_event("batch", "OperationDenied.NoStock").await;
        assert_eq!(
            replica
                .metrics
                .ecs_call_count("StartInstance", "OperationDenied.NoStock"),
            1
        );

        // Stock returns.
        s.sim.set_flags("i-stock1", Flags::default()).unwrap();
        s.wait_until_within(
            Duration::from_secs(150),
            "the retry starts it",
            async || s.sim.status("i-stock1") == Some(InstanceStatus::Running),
        )
        .await;
        let obj = s.wait_for("batch", is_ready).await;
        assert_eq!(obj.status.unwrap().retry.count, 0, "the backoff is over");
        let times = s.call_times(Action::StartInstance, "i-stock1");
        assert_eq!(times.len(), 2, "one refusal, one start");
        let gap = secs_between(times[0], times[1]);
        // nextAttemptAfter has second precision.
        assert!(
            gap >= 59.0,
            "retried after {gap:.1}s, inside the 60 s window"
        );
        assert_eq!(
            s.sim.calls().count(
                Action::StartInstance,
                "i-stock1",
                Outcome::error("OperationDenied.NoStock")
            ),
            1
        );
    }
);
