//! The scenarios an operator cares about, written once and run on two backends: the in-process
//! Kubernetes API server (`tests/scenarios.rs`, every `cargo test`) and a real cluster
//! (`tests/real_cluster.rs`, when `KUBECONFIG` points at one). The ECS side is always the local
//! simulator, so its faults work on both.
//!
//! Each `flow!(name, async |s| …)` is one test per backend (see `scenario_tests!`); `s` is a
//! fresh [`Scenario`], torn down when the flow ends or panics.
//!
//! No flow asserts how long something took: a loaded machine only makes things slower, so the
//! only timing checks here are lower bounds ("not before the window ends"). When a retry is due,
//! how long a backoff lasts, when a lease expires: those are unit tests of the pure functions
//! that decide them (`controller::backoff`, `controller::decide`, `controller::leader`).

use std::time::Duration;

use ecs_client::{EcsApi, InstanceStatus, PowerRequest, StoppedMode};
use ecs_power_controller::api::{
    PAUSED_ANNOTATION, PowerState, RebootInFlight, RebootMode, RebootOutcome, SecretReference,
    StopSpec,
};
use ecs_power_controller::cli::{RebootRequested, request_reboot};
use ecs_power_controller::controller::LeaseSettings;
use ecs_sim::{Action, FaultSpec, InstanceSpec, Outcome};
use futures::future::join_all;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::scenario::*;

/// How long a flow watches for calls that must not come (they would come at once).
const QUIET: Duration = Duration::from_millis(500);

// Asked for Running, a stopped instance is started once and reported Ready, with an event.
flow!(
    a_stopped_instance_is_started_and_reported_ready,
    async |s| {
        s.add([instance("i-stopped1", InstanceStatus::Stopped)]);
        s.controller();
        s.create(&ecs_instance("web", "i-stopped1", PowerState::Running))
            .await;

        let obj = s.wait_for("web", is_ready).await;
        assert_eq!(cond(&obj, "Reconciling").0, "False");
        assert_eq!(cond(&obj, "Stalled").0, "False");
        let status = obj.status.unwrap();
        assert_eq!(status.instance_status, Some(InstanceStatus::Running));
        let last = status.last_action.expect("the start is recorded");
        assert!(!last.request_id.is_empty());
        assert_eq!(
            s.sim
                .calls()
                .count(Action::StartInstance, "i-stopped1", Outcome::Ok),
            1
        );
        s.wait_for_event("web", "Starting").await;
    }
);

flow!(
    a_running_instance_is_stopped_with_the_requested_mode,
    async |s| {
        s.add([instance("i-running1", InstanceStatus::Running)]);
        s.controller();
        let mut obj = ecs_instance("batch", "i-running1", PowerState::Stopped);
        obj.spec.stop = Some(StopSpec {
            force: true,
            stopped_mode: StoppedMode::StopCharging,
        });
        s.create(&obj).await;

        s.wait_for("batch", is_ready).await;
        let view = s.sim.instance("i-running1").unwrap();
        assert_eq!(view.status, InstanceStatus::Stopped);
        assert_eq!(view.stopped_mode, "StopCharging");
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-running1"),
            1
        );
    }
);

flow!(
    an_instance_stopped_behind_our_back_is_started_again,
    async |s| {
        s.add([instance("i-drift1", InstanceStatus::Stopped)]);
        let mut options = s.fast_options();
        options.resync = Duration::from_millis(500);
        s.controller_with(options);
        s.create(&ecs_instance("web", "i-drift1", PowerState::Running))
            .await;
        s.wait_for("web", is_ready).await;

        // Someone stops it in the console.
        s.sim
            .set_status("i-drift1", InstanceStatus::Stopped)
            .unwrap();
        s.wait_for("web", |_| {
            s.sim
                .calls()
                .count(Action::StartInstance, "i-drift1", Outcome::Ok)
                == 2
        })
        .await;
        s.wait_for("web", is_ready).await;
        s.wait_for_event("web", "DriftDetected").await;
    }
);

flow!(
    dry_run_checks_with_ecs_and_never_changes_the_instance,
    async |s| {
        s.add([instance("i-dry1", InstanceStatus::Running)]);
        s.controller();
        let mut obj = ecs_instance("canary", "i-dry1", PowerState::Stopped);
        obj.spec.dry_run = true;
        s.create(&obj).await;

        let obj = s.wait_for_reason("canary", "Ready", "False", "DryRun").await;
        assert!(
            condition(&obj, "Ready")
                .unwrap()
                .message
                .contains("StopInstance")
        );
        assert_eq!(cond(&obj, "Reconciling").0, "False");
        assert_eq!(cond(&obj, "Stalled").0, "False");
        assert!(obj.status.unwrap().last_action.unwrap().dry_run);
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.sim.status("i-dry1"), Some(InstanceStatus::Running));
        assert_eq!(
            s.sim.calls().count(
                Action::StopInstance,
                "i-dry1",
                Outcome::error("DryRunOperation")
            ),
            1,
            "one dry run per resync, not a loop"
        );
        assert_eq!(
            s.sim
                .calls()
                .count(Action::StopInstance, "i-dry1", Outcome::Ok),
            0
        );
    }
);

flow!(
    the_paused_annotation_stops_mutations_until_removed,
    async |s| {
        s.add([instance("i-paused1", InstanceStatus::Running)]);
        s.controller();
        let mut obj = ecs_instance("maint", "i-paused1", PowerState::Stopped);
        obj.metadata.annotations =
            Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        s.create(&obj).await;

        let obj = s.wait_for_reason("maint", "Ready", "False", "Paused").await;
        assert!(
            condition(&obj, "Ready")
                .unwrap()
                .message
                .contains("StopInstance")
        );
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-paused1"),
            0
        );
        assert_eq!(s.sim.status("i-paused1"), Some(InstanceStatus::Running));

        // Unpausing acts at once (an annotation change triggers a reconcile).
        s.patch(
            "maint",
            json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}}),
        )
        .await;
        s.wait_for("maint", is_ready).await;
        assert_eq!(
            s.sim
                .calls()
                .count(Action::StopInstance, "i-paused1", Outcome::Ok),
            1
        );
    }
);

flow!(
    an_unknown_instance_is_stalled_with_instance_not_found,
    async |s| {
        s.controller();
        s.create(&ecs_instance("ghost", "i-doesnotexist", PowerState::Running))
            .await;
        let obj = s
            .wait_for_reason("ghost", "Stalled", "True", "InstanceNotFound")
            .await;
        assert!(
            condition(&obj, "Stalled")
                .unwrap()
                .message
                .contains("spec.instanceId")
        );
        assert_eq!(cond(&obj, "Ready").0, "False");
    }
);

flow!(
    a_security_lock_is_stalled_and_never_started,
    async |s| {
        s.add([instance("i-locked1", InstanceStatus::Stopped).lock("security")]);
        s.controller();
        s.create(&ecs_instance("q", "i-locked1", PowerState::Running))
            .await;
        s.wait_for_reason("q", "Stalled", "True", "InstanceLockedForSecurity")
            .await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            s.sim.calls().count_all(Action::StartInstance, "i-locked1"),
            0
        );

        // Lifting the lock: the next look (the slow recheck, or any spec change) starts it.
        s.sim.clear_locks("i-locked1").unwrap();
        s.patch_spec("q", json!({"start": {"initLocalDisk": false}}))
            .await;
        s.wait_for("q", is_ready).await;
    }
);

async fn create_secret(s: &Scenario, name: &str, id: &str, secret: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": s.namespace},
        "stringData": {"accessKeyId": id, "accessKeySecret": secret},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

flow!(
    a_wrong_secret_stalls_and_rotating_it_fixes_without_a_restart,
    async |s| {
        s.add([instance("i-cred1", InstanceStatus::Stopped)]);
        s.controller();
        let (key_id, key_secret) = s.sim.access_key();
        create_secret(s, "ecs-credentials", &key_id, "not-the-secret").await;
        let mut obj = ecs_instance("db", "i-cred1", PowerState::Running);
        obj.spec.credentials_secret_ref = Some(SecretReference {
            name: "ecs-credentials".into(),
        });
        s.create(&obj).await;

        let obj = s
            .wait_for_reason("db", "Stalled", "True", "CredentialsInvalid")
            .await;
        let message = condition(&obj, "Stalled").unwrap().message;
        assert!(message.contains("SignatureDoesNotMatch"), "{message}");
        assert!(
            !message.contains("not-the-secret"),
            "the secret leaked: {message}"
        );
        // Backed off. (How many looks failed so far depends on what woke the controller: the
        // Secret's own watch event may arrive after the first failure and look again.)
        let retry = obj.status.unwrap().retry;
        assert!(retry.count >= 1, "{retry:?}");
        assert_eq!(
            retry.last_error_code.as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert!(retry.next_attempt_after.is_some(), "{retry:?}");

        // Rotate the Secret: the controller notices (Secret watch) and acts at once, despite the
        // 10-minute recheck it had scheduled (far beyond what `wait_for` waits).
        Api::<Secret>::namespaced(s.client.clone(), &s.namespace)
            .patch(
                "ecs-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"accessKeySecret": key_secret}})),
            )
            .await
            .unwrap();
        s.wait_for("db", is_ready).await;
    }
);

flow!(
    a_missing_secret_names_the_secret_and_the_keys_it_needs,
    async |s| {
        s.add([instance("i-cred2", InstanceStatus::Stopped)]);
        s.controller();
        let mut obj = ecs_instance("db2", "i-cred2", PowerState::Running);
        obj.spec.credentials_secret_ref = Some(SecretReference {
            name: "nowhere".into(),
        });
        s.create(&obj).await;
        let obj = s
            .wait_for_reason("db2", "Stalled", "True", "CredentialsInvalid")
            .await;
        let message = condition(&obj, "Stalled").unwrap().message;
        assert!(
            message.contains(&format!("{}/nowhere", s.namespace))
                && message.contains("accessKeyId"),
            "{message}"
        );

        // Creating it fixes it.
        let (id, secret) = s.sim.access_key();
        create_secret(s, "nowhere", &id, &secret).await;
        s.wait_for("db2", is_ready).await;
    }
);

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
    if rebooting && s.get(&name).await.status.unwrap_or_default().last_reboot_token.is_some() {
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
            .wait_for_reason("web", "Reconciling", "True", "Retrying")
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

flow!(
    each_new_token_reboots_exactly_once,
    async |s| {
        s.add([instance("i-rb1", InstanceStatus::Running)]);
        s.controller();
        s.create(&ecs_instance("app", "i-rb1", PowerState::Running))
            .await;
        s.request_token("app", "t1").await;
        let obj = s.wait_for("app", token_done("t1")).await;
        assert_eq!(s.reboots("i-rb1"), 1);
        let last = obj.status.unwrap().last_action.unwrap();
        assert_eq!(last.token.as_deref(), Some("t1"));
        s.wait_for_event("app", "Rebooting").await;

        // Any unrelated edit: no second reboot for the same token.
        s.patch_spec("app", json!({"start": {"initLocalDisk": false}}))
            .await;
        s.wait_for("app", is_ready).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-rb1"), 1);

        // A new token right away: the instance started this minute, so the reboot is deferred
        // until a later StartTime can prove it (StartTime has minute precision). The start is
        // put half a minute ahead so the deferral holds whatever second of the minute the
        // first reboot landed in.
        s.sim
            .set_start_time(
                "i-rb1",
                jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30),
            )
            .unwrap();
        s.patch_spec("app", json!({"reboot": {"token": "t2"}}))
            .await;
        let obj = s
            .wait_for_reason("app", "Reconciling", "True", "Rebooting")
            .await;
        assert!(condition(&obj, "Ready").unwrap().message.contains("minute"));
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-rb1"), 1);

        // An hour later (as far as StartTime says): exactly one more.
        s.sim
            .set_start_time(
                "i-rb1",
                jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
            )
            .unwrap();
        // The controller sleeps until the minute it computed is over; any edit wakes it sooner.
        s.patch(
            "app",
            json!({"metadata": {"annotations": {"example.com/poke": "1"}}}),
        )
        .await;
        s.wait_for("app", token_done("t2")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-rb1"), 2);
    }
);

flow!(
    a_token_while_stopped_is_skipped_and_a_start_satisfies_a_pending_one,
    async |s| {
        s.add([
            instance("i-rb2", InstanceStatus::Stopped),
            instance("i-rb3", InstanceStatus::Stopped),
        ]);
        s.controller();
        // Time tokens: asked for now, after the instances' last boot, so they are requests
        // even on objects the controller sees for the first time.
        let t1 = requested_now();
        s.create(&with_token(
            ecs_instance("off", "i-rb2", PowerState::Stopped),
            &t1,
        ))
        .await;
        s.create(&with_token(
            ecs_instance("boot", "i-rb3", PowerState::Running),
            &t1,
        ))
        .await;
        s.wait_for("off", token_done(&t1)).await;
        s.wait_for("boot", token_done(&t1)).await;
        s.wait_for_event("off", "RebootSkipped").await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-rb2") + s.reboots("i-rb3"), 0);
        assert_eq!(
            s.sim
                .calls()
                .count(Action::StartInstance, "i-rb3", Outcome::Ok),
            1
        );
    }
);

/// Writes the status a controller that died right after recording its intent leaves behind;
/// returns the intent's `requestedAt` as stored.
async fn leave_intent(s: &Scenario, name: &str, id: &str, token: &str) -> jiff::Timestamp {
    let intent = RebootInFlight {
        token: token.into(),
        start_time_before: s.sim.instance(id).unwrap().start_time,
        requested_at: Time(jiff::Timestamp::now()),
    };
    let obj = s
        .api()
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"rebootInFlight": intent}})),
        )
        .await
        .unwrap();
    obj.status
        .and_then(|s| s.reboot_in_flight)
        .expect("the intent is stored")
        .requested_at
        .0
}

// Crash after the intent was written, before the call: the next controller waits out the grace
// (ECS shows no reboot) and then reboots, once. (`controller::decide` asserts the grace itself.)
flow!(
    crash_between_intent_and_call_reboots_once,
    async |s| {
        s.add([instance("i-crash1", InstanceStatus::Running)]);
        s.create(&with_token(
            ecs_instance("app", "i-crash1", PowerState::Running),
            "t1",
        ))
        .await;
        let requested_at = leave_intent(s, "app", "i-crash1", "t1").await;

        let options = s.fast_options();
        let grace = options.timings.reboot_confirmation_grace;
        s.controller_with(options);
        s.wait_for("app", token_done("t1")).await;
        tokio::time::sleep(QUIET).await;
        let reboots = s.call_times(Action::RebootInstance, "i-crash1");
        assert_eq!(reboots.len(), 1);
        // Inside the grace nothing is sent, whatever happened.
        let waited = secs_between(requested_at, reboots[0]);
        assert!(
            waited >= grace.as_secs_f64(),
            "rebooted {waited:.1}s after the intent, inside the {grace:?} grace"
        );
    }
);

// Crash after the call went out, before the status write: the next controller sees the reboot
// in ECS (a transition, a later StartTime) and does not send another.
flow!(
    crash_between_call_and_status_write_never_reboots_twice,
    async |s| {
        s.add([instance("i-crash2", InstanceStatus::Running)]);
        s.create(&with_token(
            ecs_instance("app", "i-crash2", PowerState::Running),
            "t1",
        ))
        .await;
        leave_intent(s, "app", "i-crash2", "t1").await;
        // The dead controller's call: ECS rebooted the instance.
        let ecs = s.ecs_client().unwrap();
        ecs.power(REGION, "i-crash2", PowerRequest::Reboot(Default::default()))
            .await
            .unwrap();

        s.controller();
        s.wait_for("app", token_done("t1")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-crash2"), 1);
    }
);

// The call executed but its answer was lost (InternalError after the fact): ambiguous, so the
// intent stays, the instance is checked, and no second reboot is sent.
flow!(
    a_lost_answer_is_resolved_from_the_instance_not_by_retrying,
    async |s| {
        s.add([instance("i-lost1", InstanceStatus::Running)]);
        s.sim
            .inject(
                FaultSpec::new(Action::RebootInstance, "InternalError")
                    .instance("i-lost1")
                    .applied(),
            )
            .unwrap();
        s.controller();
        s.create(&ecs_instance("app", "i-lost1", PowerState::Running))
            .await;
        s.request_token("app", "t1").await;
        s.wait_for("app", token_done("t1")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            s.reboots("i-lost1"),
            1,
            "the lost answer must not cause a second reboot"
        );
    }
);

fn lease(s: &Scenario, identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "ecs-power-controller".into(),
        namespace: s.namespace.clone(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

// Two replicas: only the leader calls ECS; when it dies the other takes the lease over and
// carries on, and no token is carried out twice across the failover. (When a lease may be
// taken over is `controller::leader`'s unit test.)
flow!(
    only_the_leader_calls_ecs_and_failover_keeps_reboots_exactly_once,
    async |s| {
        s.add([
            instance("i-le1", InstanceStatus::Running),
            instance("i-le2", InstanceStatus::Stopped),
        ]);
        let mut a = s.fast_options();
        a.lease = Some(lease(s, "replica-a"));
        let mut b = s.fast_options();
        b.lease = Some(lease(s, "replica-b"));
        let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.namespace);
        let holder = async || {
            leases
                .get_opt("ecs-power-controller")
                .await
                .unwrap()
                .and_then(|l| l.spec?.holder_identity)
        };
        let replica_a = s.controller_with(a);
        // replica-a holds the lease before replica-b starts.
        s.wait_until("replica-a leads", async || {
            holder().await.as_deref() == Some("replica-a")
        })
        .await;
        let replica_b = s.controller_with(b);

        let t1 = requested_now();
        s.create(&with_token(
            ecs_instance("app", "i-le1", PowerState::Running),
            &t1,
        ))
        .await;
        s.wait_for("app", token_done(t1)).await;
        let calls = |m: &ecs_power_controller::telemetry::Metrics| {
            m.ecs_call_count("DescribeInstances", "OK") + m.ecs_call_count("RebootInstance", "OK")
        };
        assert!(calls(&replica_a.metrics) > 0, "the first replica leads");
        assert_eq!(calls(&replica_b.metrics), 0, "the follower never calls ECS");

        // The leader dies without releasing the lease.
        s.kill(replica_a).await;
        s.create(&ecs_instance("web", "i-le2", PowerState::Running))
            .await;
        s.wait_for("web", is_ready).await;
        assert_eq!(holder().await.as_deref(), Some("replica-b"));
        assert!(replica_b.metrics.ecs_call_count("StartInstance", "OK") == 1);
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-le1"), 1, "no second reboot across failover");
    }
);

/// `(token, outcome)` of the object's reboot history, oldest first.
async fn history(s: &Scenario, name: &str) -> Vec<(String, RebootOutcome)> {
    let status = s.get(name).await.status.unwrap_or_default();
    status
        .reboot_history
        .into_iter()
        .map(|r| (r.token, r.outcome))
        .collect()
}

/// What `ecs-power-controller reboot NAME` does, now.
async fn reboot_command(s: &Scenario, name: &str) -> RebootRequested {
    request_reboot(
        &s.client,
        &s.namespace,
        name,
        RebootMode::Soft,
        jiff::Timestamp::now(),
    )
    .await
    .expect("the reboot command succeeds")
}

// GitOps: Git holds token git-t1 (carried out); an operator runs the `reboot` command (T2,
// carried out); Flux or Argo CD syncs the spec back to git-t1. A revert is not a request: no
// third reboot, one Normal event naming when git-t1 was carried out, Ready as it was. A new
// token in Git still reboots, once.
flow!(
    a_gitops_revert_to_a_token_carried_out_never_reboots_again,
    async |s| {
        s.add([instance("i-git1", InstanceStatus::Running)]);
        s.controller();
        s.create(&ecs_instance("app", "i-git1", PowerState::Running))
            .await;
        s.request_token("app", "git-t1").await;
        s.wait_for("app", token_done("git-t1")).await;
        assert_eq!(s.reboots("i-git1"), 1);

        // Each step below would reboot at once if it rebooted at all (no StartTime minute).
        s.boot_an_hour_ago("i-git1");
        let t2 = reboot_command(s, "app").await;
        assert_eq!(t2.previous_token.as_deref(), Some("git-t1"));
        assert_eq!(t2.superseded, None, "git-t1 was carried out");
        let obj = s.wait_for("app", token_done(&t2.token)).await;
        assert_eq!(s.reboots("i-git1"), 2);
        let ready_since = condition(&obj, "Ready").unwrap().last_transition_time;

        // The sync puts git-t1 back.
        s.boot_an_hour_ago("i-git1");
        s.patch_spec("app", json!({"reboot": {"token": "git-t1"}}))
            .await;
        s.wait_for_event("app", "RebootTokenAlreadyDone").await;
        let obj = s.wait_for("app", token_done("git-t1")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-git1"), 2, "a revert is not a request");
        assert_eq!(
            condition(&obj, "Ready").unwrap().last_transition_time,
            ready_since,
            "Ready stays as it was"
        );
        // Looked at again (an edit that is no spec change): said once, not at every look.
        s.patch(
            "app",
            json!({"metadata": {"annotations": {"example.com/poke": "1"}}}),
        )
        .await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.event_count("app", "RebootTokenAlreadyDone").await, 1);
        assert_eq!(s.reboots("i-git1"), 2);

        // A new token in Git: exactly one more reboot.
        s.patch_spec("app", json!({"reboot": {"token": "git-t3"}}))
            .await;
        s.wait_for("app", token_done("git-t3")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-git1"), 3);
        assert_eq!(
            history(s, "app").await,
            [
                ("git-t1".to_string(), RebootOutcome::Rebooted),
                (t2.token.clone(), RebootOutcome::Rebooted),
                ("git-t3".to_string(), RebootOutcome::Rebooted),
            ]
        );
    }
);

// A namespace deleted and synced again, a Velero restore, a rebuilt cluster: the object comes
// back with the token it had, and no history. A restored cluster must not reboot a fleet: the
// token is adopted as done, without a call.
flow!(
    an_object_deleted_and_created_again_with_its_token_is_not_rebooted,
    async |s| {
        s.add([instance("i-re1", InstanceStatus::Running)]);
        s.controller();
        s.create(&ecs_instance("app", "i-re1", PowerState::Running))
            .await;
        s.request_token("app", "release-7").await;
        s.wait_for("app", token_done("release-7")).await;
        assert_eq!(s.reboots("i-re1"), 1);

        s.boot_an_hour_ago("i-re1");
        s.api()
            .delete("app", &DeleteParams::default())
            .await
            .expect("delete EcsInstance");
        s.wait_until("app is gone", async || {
            s.api().get_opt("app").await.unwrap().is_none()
        })
        .await;
        s.create(&with_token(
            ecs_instance("app", "i-re1", PowerState::Running),
            "release-7",
        ))
        .await;
        s.wait_for_event("app", "RebootTokenAdopted").await;
        s.wait_for("app", token_done("release-7")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-re1"), 1, "the restored token is not a request");
        assert_eq!(
            history(s, "app").await,
            [("release-7".to_string(), RebootOutcome::Adopted)]
        );

        // A new token still reboots.
        s.patch_spec("app", json!({"reboot": {"token": "release-8"}}))
            .await;
        s.wait_for("app", token_done("release-8")).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-re1"), 2);
    }
);

// A reboot asked for at T is satisfied by any boot after T: on a new object, a time token after
// the instance's last boot is a genuine request (carried out once), one before it is done.
flow!(
    a_time_token_after_the_last_boot_reboots_a_new_object_once,
    async |s| {
        s.add([
            instance("i-tt1", InstanceStatus::Running),
            instance("i-tt2", InstanceStatus::Running),
        ]);
        s.controller();
        let asked = requested_now();
        s.create(&with_token(
            ecs_instance("fresh", "i-tt1", PowerState::Running),
            &asked,
        ))
        .await;
        // Asked for two hours ago; the instance booted an hour ago.
        let before_boot =
            (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
        s.create(&with_token(
            ecs_instance("stale", "i-tt2", PowerState::Running),
            &before_boot,
        ))
        .await;
        s.wait_for("fresh", token_done(&asked)).await;
        s.wait_for("stale", token_done(&before_boot)).await;
        s.wait_for_event("stale", "RebootTokenSatisfied").await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-tt1"), 1);
        assert_eq!(s.reboots("i-tt2"), 0);
        assert_eq!(
            history(s, "fresh").await,
            [(asked.clone(), RebootOutcome::Rebooted)]
        );
        assert_eq!(
            history(s, "stale").await,
            [(before_boot.clone(), RebootOutcome::BootedAfter)]
        );
    }
);

// Three operators run `reboot` at once while the object is paused. Each token is written over
// the one its command read (a resourceVersion precondition, retried on 409): no request
// replaces one it did not see, and each that replaces a token still pending says so. One
// reboot, after the last token, satisfies all three.
flow!(
    concurrent_reboot_commands_never_silently_collapse,
    async |s| {
        s.add([instance("i-cc1", InstanceStatus::Running)]);
        s.controller();
        let mut obj = ecs_instance("app", "i-cc1", PowerState::Running);
        obj.metadata.annotations =
            Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        s.create(&obj).await;
        s.wait_for("app", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.instance_status.is_some())
        })
        .await;

        let done = join_all((0..3).map(|_| reboot_command(s, "app"))).await;
        let tokens: Vec<&str> = done.iter().map(|d| d.token.as_str()).collect();
        let mut distinct = tokens.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "three tokens: {tokens:?}");
        // One order of writes: the first replaced nothing, each other one a token of the
        // others, none the same one.
        let mut replaced: Vec<&str> = done
            .iter()
            .filter_map(|d| d.previous_token.as_deref())
            .collect();
        assert_eq!(replaced.len(), 2, "{done:#?}");
        replaced.sort_unstable();
        replaced.dedup();
        assert_eq!(replaced.len(), 2, "two requests replaced the same token: {done:#?}");
        assert!(replaced.iter().all(|r| tokens.contains(r)), "{done:#?}");
        // Paused: nothing was carried out, so each replaced token was superseded, and said so.
        for d in &done {
            assert_eq!(d.superseded, d.previous_token, "{d:#?}");
        }
        let last = tokens
            .iter()
            .find(|t| !replaced.contains(t))
            .expect("the last write")
            .to_string();
        let spec = s.get("app").await.spec.reboot.expect("a token");
        assert_eq!(spec.token, last);

        s.patch(
            "app",
            json!({"metadata": {"annotations": {PAUSED_ANNOTATION: null}}}),
        )
        .await;
        s.wait_for("app", token_done(&last)).await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-cc1"), 1, "one reboot after all three requests");
    }
);
