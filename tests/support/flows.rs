//! The scenarios an operator cares about, written once and run on two backends: the in-process
//! Kubernetes API server (`tests/scenarios.rs`, every `cargo test`) and a real cluster
//! (`tests/real_cluster.rs`, when `KUBECONFIG` points at one). The ECS side is always the local
//! simulator, so its faults work on both.

use std::time::Duration;

use ecs_client::{EcsApi, InstanceStatus, PowerRequest, StoppedMode};
use ecs_power_controller::api::{
    EcsInstance, PAUSED_ANNOTATION, PowerState, RebootInFlight, SecretReference,
};
use ecs_power_controller::controller::LeaseSettings;
use ecs_power_controller::demo::Sandbox;
use ecs_sim::{Action, FaultSpec, InstanceSpec, Outcome};
use futures::future::join_all;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::scenario::*;

/// One `#[tokio::test]` per scenario, on `$backend`, with optional extra attributes.
#[macro_export]
macro_rules! scenario_tests {
    ($backend:expr $(, #[$attr:meta])*) => {
        scenario_tests!(@tests $backend, [$(#[$attr])*],
            a_stopped_instance_is_started_and_reported_ready,
            a_running_instance_is_stopped_with_the_requested_mode,
            an_instance_stopped_behind_our_back_is_started_again,
            dry_run_checks_with_ecs_and_never_changes_the_instance,
            the_paused_annotation_stops_mutations_until_removed,
            an_unknown_instance_is_stalled_with_instance_not_found,
            a_security_lock_is_stalled_and_never_started,
            a_wrong_secret_stalls_and_rotating_it_fixes_without_a_restart,
            a_missing_secret_names_the_secret_and_the_keys_it_needs,
            every_start_instance_error_has_its_condition_event_and_backoff,
            every_reboot_instance_error_has_its_condition_event_and_backoff,
            instance_not_ready_is_retried_after_5_then_10_seconds,
            a_spec_change_resets_the_backoff_and_acts_at_once,
            each_new_token_reboots_exactly_once,
            a_token_while_stopped_is_skipped_and_a_start_satisfies_a_pending_one,
            crash_between_intent_and_call_reboots_once,
            crash_between_call_and_status_write_never_reboots_twice,
            a_lost_answer_is_resolved_from_the_instance_not_by_retrying,
            only_the_leader_calls_ecs_and_failover_keeps_reboots_exactly_once
        );
    };
    (@tests $backend:expr, $attrs:tt, $($name:ident),*) => {
        $( scenario_tests!(@one $backend, $attrs, $name); )*
    };
    (@one $backend:expr, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            support::flows::$name($backend).await;
        }
    };
}

const WAIT: Duration = Duration::from_secs(20);

pub async fn a_stopped_instance_is_started_and_reported_ready(backend: Backend) {
    let sb = sandbox(
        backend,
        vec![instance("i-stopped1", InstanceStatus::Stopped)],
    )
    .await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(&sb, &ecs_instance("web", "i-stopped1", PowerState::Running)).await;

    let obj = wait_for(&sb, "web", WAIT, is_ready).await;
    assert_eq!(cond(&obj, "Reconciling").0, "False");
    assert_eq!(cond(&obj, "Stalled").0, "False");
    let status = obj.status.unwrap();
    assert_eq!(status.instance_status, Some(InstanceStatus::Running));
    let last = status.last_action.expect("the start is recorded");
    assert!(!last.request_id.is_empty());
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StartInstance, "i-stopped1", Outcome::Ok),
        1
    );
    assert!(
        event_reasons(&sb, "web")
            .await
            .contains(&"Starting".to_string())
    );
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn a_running_instance_is_stopped_with_the_requested_mode(backend: Backend) {
    let sb = sandbox(
        backend,
        vec![instance("i-running1", InstanceStatus::Running)],
    )
    .await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    let mut obj = ecs_instance("batch", "i-running1", PowerState::Stopped);
    obj.spec.stop = Some(ecs_power_controller::api::StopSpec {
        force: true,
        stopped_mode: StoppedMode::StopCharging,
    });
    create(&sb, &obj).await;

    wait_for(&sb, "batch", WAIT, is_ready).await;
    let view = sb.sim.instance("i-running1").unwrap();
    assert_eq!(view.status, InstanceStatus::Stopped);
    assert_eq!(view.stopped_mode, "StopCharging");
    assert_eq!(
        sb.sim.calls().count_all(Action::StopInstance, "i-running1"),
        1
    );
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn an_instance_stopped_behind_our_back_is_started_again(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-drift1", InstanceStatus::Stopped)]).await;
    let mut options = fast_options(&sb);
    options.resync = Duration::from_millis(500);
    let controller = sb.spawn_controller(options).unwrap();
    create(&sb, &ecs_instance("web", "i-drift1", PowerState::Running)).await;
    wait_for(&sb, "web", WAIT, is_ready).await;

    // Someone stops it in the console.
    sb.sim
        .set_status("i-drift1", InstanceStatus::Stopped)
        .unwrap();
    wait_for(&sb, "web", WAIT, |_| {
        sb.sim
            .calls()
            .count(Action::StartInstance, "i-drift1", Outcome::Ok)
            == 2
    })
    .await;
    wait_for(&sb, "web", WAIT, is_ready).await;
    assert!(
        event_reasons(&sb, "web")
            .await
            .contains(&"DriftDetected".to_string())
    );
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn dry_run_checks_with_ecs_and_never_changes_the_instance(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-dry1", InstanceStatus::Running)]).await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    let mut obj = ecs_instance("canary", "i-dry1", PowerState::Stopped);
    obj.spec.dry_run = true;
    create(&sb, &obj).await;

    let obj = wait_for_reason(&sb, "canary", "Ready", "False", "DryRun").await;
    assert!(
        condition(&obj, "Ready")
            .unwrap()
            .message
            .contains("StopInstance")
    );
    assert_eq!(cond(&obj, "Reconciling").0, "False");
    assert_eq!(cond(&obj, "Stalled").0, "False");
    assert!(obj.status.unwrap().last_action.unwrap().dry_run);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sb.sim.status("i-dry1"), Some(InstanceStatus::Running));
    assert_eq!(
        sb.sim.calls().count(
            Action::StopInstance,
            "i-dry1",
            Outcome::error("DryRunOperation")
        ),
        1,
        "one dry run per resync, not a loop"
    );
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StopInstance, "i-dry1", Outcome::Ok),
        0
    );
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn the_paused_annotation_stops_mutations_until_removed(backend: Backend) {
    let sb = sandbox(
        backend,
        vec![instance("i-paused1", InstanceStatus::Running)],
    )
    .await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    let mut obj = ecs_instance("maint", "i-paused1", PowerState::Stopped);
    obj.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    create(&sb, &obj).await;

    let obj = wait_for_reason(&sb, "maint", "Ready", "False", "Paused").await;
    assert!(
        condition(&obj, "Ready")
            .unwrap()
            .message
            .contains("StopInstance")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sb.sim.calls().count_all(Action::StopInstance, "i-paused1"),
        0
    );
    assert_eq!(sb.sim.status("i-paused1"), Some(InstanceStatus::Running));

    // Unpausing acts at once (an annotation change triggers a reconcile).
    api(&sb)
        .patch(
            "maint",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}})),
        )
        .await
        .unwrap();
    wait_for(&sb, "maint", WAIT, is_ready).await;
    assert_eq!(
        sb.sim
            .calls()
            .count(Action::StopInstance, "i-paused1", Outcome::Ok),
        1
    );
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn an_unknown_instance_is_stalled_with_instance_not_found(backend: Backend) {
    let sb = sandbox(backend, vec![]).await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(
        &sb,
        &ecs_instance("ghost", "i-doesnotexist", PowerState::Running),
    )
    .await;
    let obj = wait_for_reason(&sb, "ghost", "Stalled", "True", "InstanceNotFound").await;
    assert!(
        condition(&obj, "Stalled")
            .unwrap()
            .message
            .contains("spec.instanceId")
    );
    assert_eq!(cond(&obj, "Ready").0, "False");
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn a_security_lock_is_stalled_and_never_started(backend: Backend) {
    let sb = sandbox(
        backend,
        vec![instance("i-locked1", InstanceStatus::Stopped).lock("security")],
    )
    .await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(&sb, &ecs_instance("q", "i-locked1", PowerState::Running)).await;
    wait_for_reason(&sb, "q", "Stalled", "True", "InstanceLockedForSecurity").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sb.sim.calls().count_all(Action::StartInstance, "i-locked1"),
        0
    );

    // Lifting the lock: the next look (the slow recheck, or any spec change) starts it.
    sb.sim.clear_locks("i-locked1").unwrap();
    patch_spec(&sb, "q", json!({"start": {"initLocalDisk": false}})).await;
    wait_for(&sb, "q", WAIT, is_ready).await;
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

async fn create_secret(sb: &Sandbox, name: &str, id: &str, secret: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": sb.namespace},
        "stringData": {"accessKeyId": id, "accessKeySecret": secret},
    }))
    .unwrap();
    Api::<Secret>::namespaced(sb.client.clone(), &sb.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

pub async fn a_wrong_secret_stalls_and_rotating_it_fixes_without_a_restart(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-cred1", InstanceStatus::Stopped)]).await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    let (key_id, key_secret) = sb.sim.access_key();
    create_secret(&sb, "ecs-credentials", &key_id, "not-the-secret").await;
    let mut obj = ecs_instance("db", "i-cred1", PowerState::Running);
    obj.spec.credentials_secret_ref = Some(SecretReference {
        name: "ecs-credentials".into(),
    });
    create(&sb, &obj).await;

    let obj = wait_for_reason(&sb, "db", "Stalled", "True", "CredentialsInvalid").await;
    let message = condition(&obj, "Stalled").unwrap().message;
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(
        !message.contains("not-the-secret"),
        "the secret leaked: {message}"
    );
    let retry = obj.status.unwrap().retry;
    assert_eq!(retry.count, 1);

    // Rotate the Secret: the controller notices (it looks at the Secrets of failing objects) and
    // acts at once, despite the 10-minute recheck it had scheduled.
    Api::<Secret>::namespaced(sb.client.clone(), &sb.namespace)
        .patch(
            "ecs-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"accessKeySecret": key_secret}})),
        )
        .await
        .unwrap();
    wait_for(&sb, "db", WAIT, is_ready).await;
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn a_missing_secret_names_the_secret_and_the_keys_it_needs(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-cred2", InstanceStatus::Stopped)]).await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    let mut obj = ecs_instance("db2", "i-cred2", PowerState::Running);
    obj.spec.credentials_secret_ref = Some(SecretReference {
        name: "nowhere".into(),
    });
    create(&sb, &obj).await;
    let obj = wait_for_reason(&sb, "db2", "Stalled", "True", "CredentialsInvalid").await;
    let message = condition(&obj, "Stalled").unwrap().message;
    assert!(
        message.contains("default/nowhere") && message.contains("accessKeyId"),
        "{message}"
    );

    // Creating it fixes it.
    let (id, secret) = sb.sim.access_key();
    create_secret(&sb, "nowhere", &id, &secret).await;
    wait_for(&sb, "db2", WAIT, is_ready).await;
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

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
async fn check(backend: Backend, index: usize, c: Case) -> Result<(), String> {
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
    let sb = sandbox(backend, vec![spec]).await;
    if let Some(f) = fault {
        sb.sim.inject(f).map_err(|e| e.to_string())?;
    }
    let controller = sb
        .spawn_controller(fast_options(&sb))
        .map_err(|e| e.to_string())?;
    let mut obj = ecs_instance(&name, &id, PowerState::Running);
    if rebooting {
        obj = with_token(obj, "t1");
    }
    create(&sb, &obj).await;

    let (type_, reason) = c.expect;
    let obj = wait_for_reason(&sb, &name, type_, "True", reason).await;
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
    if !event_reasons(&sb, &name).await.iter().any(|r| r == c.code) {
        return Err(format!("{label}: no Warning event with reason {}", c.code));
    }
    // Persistent error: one mutating call per backoff window, however often we look.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = sb.sim.calls().count_all(c.action, &id);
    if calls != 1 {
        return Err(format!("{label}: {calls} calls inside one backoff window"));
    }
    if rebooting {
        let status = api(&sb)
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

async fn check_all(backend: Backend, cases: Vec<Case>) {
    let results = join_all(
        cases
            .into_iter()
            .enumerate()
            .map(|(i, c)| check(backend, i, c)),
    )
    .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

pub async fn every_start_instance_error_has_its_condition_event_and_backoff(backend: Backend) {
    check_all(backend, start_cases()).await;
}

pub async fn every_reboot_instance_error_has_its_condition_event_and_backoff(backend: Backend) {
    check_all(backend, reboot_cases()).await;
}

/// InstanceNotReady (the instance is being created): a few seconds, then doubling.
pub async fn instance_not_ready_is_retried_after_5_then_10_seconds(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-new1", InstanceStatus::Stopped)]).await;
    sb.sim
        .inject(
            FaultSpec::new(Action::StartInstance, "InstanceNotReady")
                .instance("i-new1")
                .times(2),
        )
        .unwrap();
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(&sb, &ecs_instance("worker", "i-new1", PowerState::Running)).await;
    wait_for(&sb, "worker", Duration::from_secs(30), is_ready).await;

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
    sb.shutdown().await;
}

pub async fn a_spec_change_resets_the_backoff_and_acts_at_once(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-reset1", InstanceStatus::Stopped)]).await;
    sb.sim
        .inject(
            FaultSpec::new(Action::StartInstance, "InternalError")
                .instance("i-reset1")
                .times(1000),
        )
        .unwrap();
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(&sb, &ecs_instance("web", "i-reset1", PowerState::Running)).await;
    let obj: EcsInstance = wait_for_reason(&sb, "web", "Reconciling", "True", "Retrying").await;
    assert!(obj.status.unwrap().retry.next_attempt_after.is_some());

    sb.sim.clear_faults();
    let edited = std::time::Instant::now();
    patch_spec(
        &sb,
        "web",
        serde_json::json!({"start": {"initLocalDisk": false}}),
    )
    .await;
    let obj = wait_for(&sb, "web", Duration::from_secs(5), is_ready).await;
    assert!(
        edited.elapsed() < Duration::from_secs(3),
        "acted after {:?}",
        edited.elapsed()
    );
    assert_eq!(obj.status.unwrap().retry.count, 0);
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub fn reboots(sb: &Sandbox, id: &str) -> u64 {
    sb.sim.calls().count_all(Action::RebootInstance, id)
}

pub fn token_done(token: &'static str) -> impl Fn(&ecs_power_controller::api::EcsInstance) -> bool {
    move |o| {
        is_ready(o)
            && o.status
                .as_ref()
                .and_then(|s| s.last_reboot_token.as_deref())
                == Some(token)
    }
}

pub async fn each_new_token_reboots_exactly_once(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-rb1", InstanceStatus::Running)]).await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(
        &sb,
        &with_token(ecs_instance("app", "i-rb1", PowerState::Running), "t1"),
    )
    .await;
    let obj = wait_for(&sb, "app", WAIT, token_done("t1")).await;
    assert_eq!(reboots(&sb, "i-rb1"), 1);
    let last = obj.status.unwrap().last_action.unwrap();
    assert_eq!(last.token.as_deref(), Some("t1"));
    assert!(
        event_reasons(&sb, "app")
            .await
            .contains(&"Rebooting".to_string())
    );

    // Any unrelated edit: no second reboot for the same token.
    patch_spec(&sb, "app", json!({"start": {"initLocalDisk": false}})).await;
    wait_for(&sb, "app", WAIT, is_ready).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-rb1"), 1);

    // A new token right away: the instance started this minute, so the reboot is deferred
    // until a later StartTime can prove it (StartTime has minute precision).
    patch_spec(&sb, "app", json!({"reboot": {"token": "t2"}})).await;
    let obj = wait_for_reason(&sb, "app", "Reconciling", "True", "Rebooting").await;
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
    api(&sb)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .unwrap();
    wait_for(&sb, "app", WAIT, token_done("t2")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-rb1"), 2);
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

pub async fn a_token_while_stopped_is_skipped_and_a_start_satisfies_a_pending_one(
    backend: Backend,
) {
    let sb = sandbox(
        backend,
        vec![
            instance("i-rb2", InstanceStatus::Stopped),
            instance("i-rb3", InstanceStatus::Stopped),
        ],
    )
    .await;
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(
        &sb,
        &with_token(ecs_instance("off", "i-rb2", PowerState::Stopped), "t1"),
    )
    .await;
    create(
        &sb,
        &with_token(ecs_instance("boot", "i-rb3", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb, "off", WAIT, token_done("t1")).await;
    wait_for(&sb, "boot", WAIT, token_done("t1")).await;
    assert!(
        event_reasons(&sb, "off")
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
    sb.shutdown().await;
}

/// Writes the status a controller that died right after recording its intent leaves behind.
async fn leave_intent(sb: &Sandbox, name: &str, id: &str, token: &str) {
    let intent = RebootInFlight {
        token: token.into(),
        start_time_before: sb.sim.instance(id).unwrap().start_time,
        requested_at: Time(jiff::Timestamp::now()),
    };
    api(sb)
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
pub async fn crash_between_intent_and_call_reboots_once(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-crash1", InstanceStatus::Running)]).await;
    create(
        &sb,
        &with_token(ecs_instance("app", "i-crash1", PowerState::Running), "t1"),
    )
    .await;
    leave_intent(&sb, "app", "i-crash1", "t1").await;

    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    // Inside the grace nothing is sent, whatever happened.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reboots(&sb, "i-crash1"), 0);
    wait_for(&sb, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reboots(&sb, "i-crash1"), 1);
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

/// Crash after the call went out, before the status write: the next controller sees the reboot
/// in ECS (a transition, a later StartTime) and does not send another.
pub async fn crash_between_call_and_status_write_never_reboots_twice(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-crash2", InstanceStatus::Running)]).await;
    create(
        &sb,
        &with_token(ecs_instance("app", "i-crash2", PowerState::Running), "t1"),
    )
    .await;
    leave_intent(&sb, "app", "i-crash2", "t1").await;
    // The dead controller's call: ECS rebooted the instance.
    let ecs = sb.ecs_client().unwrap();
    ecs.power(REGION, "i-crash2", PowerRequest::Reboot(Default::default()))
        .await
        .unwrap();

    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    wait_for(&sb, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-crash2"), 1);
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

/// The call executed but its answer was lost (InternalError after the fact): ambiguous, so the
/// intent stays, the instance is checked, and no second reboot is sent.
pub async fn a_lost_answer_is_resolved_from_the_instance_not_by_retrying(backend: Backend) {
    let sb = sandbox(backend, vec![instance("i-lost1", InstanceStatus::Running)]).await;
    sb.sim
        .inject(
            FaultSpec::new(Action::RebootInstance, "InternalError")
                .instance("i-lost1")
                .applied(),
        )
        .unwrap();
    let controller = sb.spawn_controller(fast_options(&sb)).unwrap();
    create(
        &sb,
        &with_token(ecs_instance("app", "i-lost1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb, "app", WAIT, token_done("t1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reboots(&sb, "i-lost1"),
        1,
        "the lost answer must not cause a second reboot"
    );
    controller.stop().await.unwrap();
    sb.shutdown().await;
}

fn lease(sb: &Sandbox, identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "ecs-power-controller".into(),
        namespace: sb.namespace.clone(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

/// Two replicas: only the leader calls ECS; when it dies the other takes over within the lease
/// duration, and no token is carried out twice across the failover.
pub async fn only_the_leader_calls_ecs_and_failover_keeps_reboots_exactly_once(backend: Backend) {
    let sb = sandbox(
        backend,
        vec![
            instance("i-le1", InstanceStatus::Running),
            instance("i-le2", InstanceStatus::Stopped),
        ],
    )
    .await;
    let mut a = fast_options(&sb);
    a.lease = Some(lease(&sb, "replica-a"));
    let mut b = fast_options(&sb);
    b.lease = Some(lease(&sb, "replica-b"));
    let replica_a = sb.spawn_controller(a).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replica_b = sb.spawn_controller(b).unwrap();

    create(
        &sb,
        &with_token(ecs_instance("app", "i-le1", PowerState::Running), "t1"),
    )
    .await;
    wait_for(&sb, "app", WAIT, token_done("t1")).await;
    let calls = |m: &ecs_power_controller::telemetry::Metrics| {
        m.ecs_call_count("DescribeInstances", "OK") + m.ecs_call_count("RebootInstance", "OK")
    };
    assert!(calls(&replica_a.metrics) > 0, "the first replica leads");
    assert_eq!(calls(&replica_b.metrics), 0, "the follower never calls ECS");

    // The leader dies without releasing the lease.
    replica_a.kill().await;
    let died = std::time::Instant::now();
    create(&sb, &ecs_instance("web", "i-le2", PowerState::Running)).await;
    wait_for(&sb, "web", WAIT, is_ready).await;
    assert!(
        died.elapsed() < Duration::from_secs(8),
        "failover took {:?}",
        died.elapsed()
    );
    assert!(replica_b.metrics.ecs_call_count("StartInstance", "OK") == 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reboots(&sb, "i-le1"), 1, "no second reboot across failover");
    replica_b.stop().await.unwrap();
    sb.shutdown().await;
}
