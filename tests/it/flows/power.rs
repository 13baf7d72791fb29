//! Power flows: a stopped instance started, a running one stopped, drift corrected or (under
//! `driftPolicy: Report`) reported, dry run, pause, an unknown instance and a security lock
//! stalled. Run on both backends: see `flows/mod.rs`.

use std::time::Duration;

use ecs_client::{InstanceStatus, StoppedMode};
use ecs_power_controller::api::{DriftPolicy, PAUSED_ANNOTATION, PowerState, StopSpec};
use ecs_sim::{Action, Outcome};
use serde_json::json;

use super::QUIET;
use crate::support::scenario::*;

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
        let replica = s.controller_with(options);
        s.create(&ecs_instance("web", "i-drift1", PowerState::Running))
            .await;
        s.wait_for("web", is_ready).await;
        assert_eq!(replica.metrics.drift_count(&s.namespace, "stopped"), 0);

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
        s.wait_for_event("web", "DriftCorrected").await;
        assert_eq!(s.event_count("web", "DriftCorrected").await, 1);
        assert_eq!(replica.metrics.drift_count(&s.namespace, "stopped"), 1);
    }
);

// Under `driftPolicy: Report`, a VM started by hand while it should be stopped is reported
// (Ready=False, reason Drifted; one DriftDetected event; counted) and left running; stopped
// again by hand, the object is Ready again.
flow!(
    under_report_a_vm_started_behind_our_back_is_reported_and_left_running,
    async |s| {
        s.add([instance("i-report1", InstanceStatus::Running)]);
        let mut options = s.fast_options();
        options.resync = Duration::from_millis(500);
        let replica = s.controller_with(options);
        let mut obj = ecs_instance("batch", "i-report1", PowerState::Stopped);
        obj.spec.drift_policy = DriftPolicy::Report;
        s.create(&obj).await;
        // Stopping it the first time is the spec, not drift.
        s.wait_for("batch", is_ready).await;

        // Someone starts it in the console.
        s.sim
            .set_status("i-report1", InstanceStatus::Running)
            .unwrap();
        let obj = s
            .wait_for_reason("batch", "Ready", "False", "Drifted")
            .await;
        assert_eq!(cond(&obj, "Reconciling").0, "False");
        assert_eq!(cond(&obj, "Stalled").0, "False");
        let drift = obj.status.unwrap().drift.expect("status.drift");
        assert_eq!(drift.instance_status, InstanceStatus::Running);
        s.wait_for_event("batch", "DriftDetected").await;
        // Several resyncs later: still running, reported once, counted once.
        tokio::time::sleep(QUIET * 4).await;
        assert_eq!(s.sim.status("i-report1"), Some(InstanceStatus::Running));
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-report1"),
            1
        );
        assert_eq!(s.event_count("batch", "DriftDetected").await, 1);
        assert_eq!(replica.metrics.drift_count(&s.namespace, "started"), 1);

        // Stopped again by hand: Ready, nothing left to report.
        s.sim
            .set_status("i-report1", InstanceStatus::Stopped)
            .unwrap();
        let obj = s.wait_for("batch", is_ready).await;
        assert_eq!(obj.status.unwrap().drift, None);
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-report1"),
            1
        );
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

        let obj = s
            .wait_for_reason("canary", "Ready", "False", "DryRun")
            .await;
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
        s.create(&ecs_instance(
            "ghost",
            "i-doesnotexist",
            PowerState::Running,
        ))
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

flow!(a_security_lock_is_stalled_and_never_started, async |s| {
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
});
