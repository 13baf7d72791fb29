//! Every error code of the seed pages, end to end: the condition an operator sees, the event,
//! the retry timing, and at most one mutating call per backoff window.

mod support;

use std::time::Duration;

use ecs_power_controller::api::{EcsInstance, PowerState};
use ecs_power_controller::ecs::InstanceStatus;
use ecs_power_controller::sim::{Action, FaultSpec, InstanceSpec, Outcome};
use futures::future::join_all;
use support::scenario::*;

/// One seed-page error: how to provoke it, and what the operator must see.
struct Case {
    action: Action,
    code: &'static str,
    http_status: Option<u16>,
    /// How the simulator is made to answer it: a scripted fault, or the instance's own state.
    provoke: Provoke,
    /// `(condition type that is True, reason)`.
    expect: (&'static str, &'static str),
    /// The first retry delay window, in seconds.
    delay: (u64, u64),
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
    delay: (u64, u64),
) -> Case {
    Case {
        action,
        code,
        http_status: None,
        provoke,
        expect,
        delay,
    }
}

const NOT_READY: (&str, &str) = ("Reconciling", "WaitingForInstance");
const RETRYING: (&str, &str) = ("Reconciling", "Retrying");
const SLOW: (u64, u64) = (600, 720);

fn start_cases() -> Vec<Case> {
    use Provoke::*;
    vec![
        case(
            Action::StartInstance,
            "MissingParameter",
            Fault,
            ("Stalled", "InvalidSpec"),
            SLOW,
        ),
        case(
            Action::StartInstance,
            "DiskError",
            Flag(|i| i.disk_fault = true),
            ("Stalled", "DiskError"),
            SLOW,
        ),
        case(
            Action::StartInstance,
            "IncorrectInstanceStatus",
            Fault,
            NOT_READY,
            (5, 6),
        ),
        case(
            Action::StartInstance,
            "InstanceLockedForSecurity",
            Fault,
            ("Stalled", "InstanceLockedForSecurity"),
            SLOW,
        ),
        Case {
            http_status: Some(403),
            ..case(
                Action::StartInstance,
                "InstanceNotReady",
                Fault,
                NOT_READY,
                (5, 6),
            )
        },
        Case {
            http_status: Some(500),
            ..case(
                Action::StartInstance,
                "InstanceNotReady",
                Fault,
                NOT_READY,
                (5, 6),
            )
        },
        case(
            Action::StartInstance,
            "InsufficientBalance",
            Flag(|i| i.overdue = true),
            ("Stalled", "InsufficientBalance"),
            SLOW,
        ),
        case(
            Action::StartInstance,
            "InstanceExpired",
            Flag(|i| i.expired = true),
            ("Stalled", "InstanceExpired"),
            SLOW,
        ),
        case(
            Action::StartInstance,
            "InvalidInstanceId.NotFound",
            Fault,
            ("Stalled", "InstanceNotFound"),
            SLOW,
        ),
        case(
            Action::StartInstance,
            "InternalError",
            Fault,
            RETRYING,
            (10, 12),
        ),
    ]
}

fn reboot_cases() -> Vec<Case> {
    use Provoke::*;
    vec![
        case(
            Action::RebootInstance,
            "InvalidInstanceId.NotFound",
            Fault,
            ("Stalled", "InstanceNotFound"),
            SLOW,
        ),
        case(
            Action::RebootInstance,
            "IncorrectInstanceStatus",
            Fault,
            NOT_READY,
            (5, 6),
        ),
        case(
            Action::RebootInstance,
            "InstanceLockedForSecurity",
            Fault,
            ("Stalled", "InstanceLockedForSecurity"),
            SLOW,
        ),
        case(
            Action::RebootInstance,
            "DiskError",
            Flag(|i| i.disk_fault = true),
            ("Stalled", "DiskError"),
            SLOW,
        ),
        case(
            Action::RebootInstance,
            "InternalError",
            Fault,
            RETRYING,
            (10, 12),
        ),
        case(
            Action::RebootInstance,
            "InstanceExpiredOrInArrears",
            Flag(|i| i.expired = true),
            ("Stalled", "InstanceExpired"),
            SLOW,
        ),
        case(
            Action::RebootInstance,
            "InvalidParameter.KMSKeyId.KMSUnauthorized",
            Fault,
            ("Stalled", "Forbidden"),
            SLOW,
        ),
    ]
}

/// Runs one case in its own sandbox and checks everything an operator would look at.
async fn check(index: usize, c: Case) -> Result<(), String> {
    let id = format!("i-case{index}");
    let name = format!("case-{index}");
    let rebooting = c.action == Action::RebootInstance;
    let mut spec = instance(
        &id,
        if rebooting {
            InstanceStatus::Running
        } else {
            InstanceStatus::Stopped
        },
    );
    let mut fault = None;
    match c.provoke {
        Provoke::Flag(set) => set(&mut spec),
        Provoke::Fault => {
            let mut f = FaultSpec::new(c.action, c.code).instance(&id).times(1000);
            if let Some(status) = c.http_status {
                f = f.http_status(status);
            }
            fault = Some(f);
        }
    }
    let sb = sandbox(vec![spec]).await;
    if let Some(f) = fault {
        sb.sim.inject(f).map_err(|e| e.to_string())?;
    }
    let controller = sb
        .spawn_controller(fast_options())
        .map_err(|e| e.to_string())?;
    let mut obj = ecs_instance(&name, &id, PowerState::Running);
    if rebooting {
        obj = with_token(obj, "t1");
    }
    create(&sb.client, &obj).await;

    let (type_, reason) = c.expect;
    let obj = wait_for_reason(&sb.client, &name, type_, "True", reason).await;
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
    // The first retry delay, measured from the failure (when Ready turned False).
    let next = status
        .retry
        .next_attempt_after
        .ok_or("no nextAttemptAfter")?
        .0;
    let failed_at = ready.last_transition_time.0;
    let delay = next.duration_since(failed_at).as_secs_f64();
    if delay < c.delay.0 as f64 - 1.0 || delay > c.delay.1 as f64 + 1.0 {
        return Err(format!(
            "{label}: first retry after {delay:.1}s, expected {:?}",
            c.delay
        ));
    }
    if !event_reasons(&sb.client, &name)
        .await
        .iter()
        .any(|r| r == c.code)
    {
        return Err(format!("{label}: no Warning event with reason {}", c.code));
    }
    // Persistent error: one mutating call per backoff window, however often we look.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = sb.sim.calls().count_all(c.action, &id);
    if calls != 1 {
        return Err(format!("{label}: {calls} calls inside one backoff window"));
    }
    if rebooting {
        let status = api(&sb.client)
            .get(&name)
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        if status.last_reboot_token.is_some() {
            return Err(format!("{label}: a refused reboot was recorded as done"));
        }
    }
    controller.stop().await.map_err(|e| e.to_string())?;
    sb.shutdown().await;
    Ok(())
}

async fn check_all(cases: Vec<Case>) {
    let results = join_all(cases.into_iter().enumerate().map(|(i, c)| check(i, c))).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_instance_error_has_its_condition_event_and_backoff() {
    check_all(start_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reboot_instance_error_has_its_condition_event_and_backoff() {
    check_all(reboot_cases()).await;
}

/// InstanceNotReady (the instance is being created): a few seconds, then doubling.
#[tokio::test]
async fn instance_not_ready_is_retried_after_5_then_10_seconds() {
    let sb = sandbox(vec![instance("i-new1", InstanceStatus::Stopped)]).await;
    sb.sim
        .inject(
            FaultSpec::new(Action::StartInstance, "InstanceNotReady")
                .instance("i-new1")
                .times(2),
        )
        .unwrap();
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &ecs_instance("worker", "i-new1", PowerState::Running),
    )
    .await;
    wait_for(&sb.client, "worker", Duration::from_secs(30), is_ready).await;

    let times: Vec<jiff::Timestamp> = sb
        .sim
        .calls()
        .log()
        .iter()
        .filter(|c| c.action == Some(Action::StartInstance))
        .map(|c| c.time.parse().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "two refusals and one start");
    let gap = |a: usize| times[a + 1].duration_since(times[a]).as_secs_f64();
    assert!(
        (4.5..7.0).contains(&gap(0)),
        "first retry after {:.1}s",
        gap(0)
    );
    assert!(
        (9.5..13.0).contains(&gap(1)),
        "second retry after {:.1}s",
        gap(1)
    );
    assert_eq!(
        sb.sim.calls().count(
            Action::StartInstance,
            "i-new1",
            Outcome::error("InstanceNotReady")
        ),
        2
    );
    controller.stop().await.unwrap();
}

#[tokio::test]
async fn a_spec_change_resets_the_backoff_and_acts_at_once() {
    let sb = sandbox(vec![instance("i-reset1", InstanceStatus::Stopped)]).await;
    sb.sim
        .inject(
            FaultSpec::new(Action::StartInstance, "InternalError")
                .instance("i-reset1")
                .times(1000),
        )
        .unwrap();
    let controller = sb.spawn_controller(fast_options()).unwrap();
    create(
        &sb.client,
        &ecs_instance("web", "i-reset1", PowerState::Running),
    )
    .await;
    let obj: EcsInstance =
        wait_for_reason(&sb.client, "web", "Reconciling", "True", "Retrying").await;
    assert!(obj.status.unwrap().retry.next_attempt_after.is_some());

    sb.sim.clear_faults();
    let edited = std::time::Instant::now();
    patch_spec(
        &sb.client,
        "web",
        serde_json::json!({"start": {"initLocalDisk": false}}),
    )
    .await;
    let obj = wait_for(&sb.client, "web", Duration::from_secs(5), is_ready).await;
    assert!(
        edited.elapsed() < Duration::from_secs(3),
        "acted after {:?}",
        edited.elapsed()
    );
    assert_eq!(obj.status.unwrap().retry.count, 0);
    controller.stop().await.unwrap();
}
