//! Reboot tokens: each new token reboots exactly once, across stopped instances, crashes
//! between intent, call and status write, lost answers, GitOps reverts, re-created objects,
//! time tokens and concurrent `reboot` commands. Run on both backends: see `flows/mod.rs`.

use ecs_client::{EcsApi, InstanceStatus, PowerRequest};
use ecs_power_controller::api::{
    PAUSED_ANNOTATION, PowerState, RebootInFlight, RebootMode, RebootOutcome,
};
use ecs_power_controller::cli::{RebootRequested, request_reboot};
use ecs_sim::{Action, FaultSpec, Outcome};
use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::QUIET;
use crate::support::scenario::*;

flow!(each_new_token_reboots_exactly_once, async |s| {
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
});

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
flow!(crash_between_intent_and_call_reboots_once, async |s| {
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
});

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

// On a new object, a time token after the instance's last boot is a genuine request (carried
// out once); one from before it, written as the object was created, was carried out by that
// boot: adopted as done at first sight, without a reboot (tokens.rs, "a time token not after
// the minute of the last boot").
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
        s.wait_for_event("stale", "RebootTokenAdopted").await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-tt1"), 1);
        assert_eq!(s.reboots("i-tt2"), 0);
        assert_eq!(
            history(s, "fresh").await,
            [(asked.clone(), RebootOutcome::Rebooted)]
        );
        assert_eq!(
            history(s, "stale").await,
            [(before_boot.clone(), RebootOutcome::Adopted)]
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
        assert_eq!(
            replaced.len(),
            2,
            "two requests replaced the same token: {done:#?}"
        );
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
