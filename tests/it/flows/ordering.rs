//! Ordered start and stop (`spec.startAfter`), on both backends (see `flows/mod.rs`): db →
//! app → web come up in that order and go down in reverse, a cycle stalls with no ECS call, a
//! missing dependency waits and says so until it is created.
//!
//! The order is read from the simulator's call log (its sequence numbers), never from the
//! clock. The simulator's transitions are instantaneous here: an instance is Running as soon
//! as its start is accepted, so a start later in the log than the dependency's own start, and
//! only after the controller has seen that dependency Running and Ready, is the order asked for.

use ecs_client::InstanceStatus;
use ecs_power_controller::api::{EcsInstance, PowerState};
use ecs_sim::{Action, CallRecord, Outcome};
use serde_json::json;

use super::QUIET;
use crate::support::scenario::*;

/// EcsInstance `name` for `id`, wanting `power`, started after `after`.
fn tier(name: &str, id: &str, power: PowerState, after: &[&str]) -> EcsInstance {
    let mut obj = ecs_instance(name, id, power);
    obj.spec.start_after = after.iter().map(|s| s.to_string()).collect();
    obj
}

/// The sequence number of the accepted call of `actions` (single or batch) naming `id`.
fn accepted_seq(log: &[CallRecord], actions: [Action; 2], id: &str) -> u64 {
    let seqs: Vec<u64> = log
        .iter()
        .filter(|r| r.action.is_some_and(|a| actions.contains(&a)))
        .filter(|r| {
            r.instances
                .iter()
                .any(|(i, o)| i == id && *o == Outcome::Ok)
        })
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seqs.len(),
        1,
        "{id}: exactly one accepted call of {actions:?}"
    );
    seqs[0]
}

const STARTS: [Action; 2] = [Action::StartInstance, Action::StartInstances];
const STOPS: [Action; 2] = [Action::StopInstance, Action::StopInstances];

// Three tiers created at once, all wanting Running: db is started first, app only once db is
// Running and Ready, web only once app is; stopped, they go down web, app, db.
flow!(db_app_web_start_in_order_and_stop_in_reverse, async |s| {
    s.add([
        instance("i-db1", InstanceStatus::Stopped),
        instance("i-app1", InstanceStatus::Stopped),
        instance("i-web1", InstanceStatus::Stopped),
    ]);
    s.controller();
    // The dependents first: they must not run ahead of a db that is not even there.
    s.create(&tier("web", "i-web1", PowerState::Running, &["app"]))
        .await;
    s.create(&tier("app", "i-app1", PowerState::Running, &["db"]))
        .await;
    s.create(&tier("db", "i-db1", PowerState::Running, &[]))
        .await;
    for name in ["db", "app", "web"] {
        s.wait_for(name, is_ready).await;
    }
    let log = s.sim.calls().log();
    let (db, app, web) = (
        accepted_seq(&log, STARTS, "i-db1"),
        accepted_seq(&log, STARTS, "i-app1"),
        accepted_seq(&log, STARTS, "i-web1"),
    );
    assert!(
        db < app && app < web,
        "starts in order db {db}, app {app}, web {web}"
    );

    for name in ["db", "app", "web"] {
        s.patch_spec(name, json!({"powerState": "Stopped"})).await;
    }
    for name in ["db", "app", "web"] {
        s.wait_for(name, |o| {
            is_ready(o)
                && o.status.as_ref().and_then(|st| st.instance_status)
                    == Some(InstanceStatus::Stopped)
        })
        .await;
    }
    let log = s.sim.calls().log();
    let (db, app, web) = (
        accepted_seq(&log, STOPS, "i-db1"),
        accepted_seq(&log, STOPS, "i-app1"),
        accepted_seq(&log, STOPS, "i-web1"),
    );
    assert!(
        web < app && app < db,
        "stops in reverse web {web}, app {app}, db {db}"
    );
});

// a starts after b and b after a, both created before the controller starts (so it sees the
// cycle whole): both are Stalled (DependencyCycle) naming the cycle, and nothing is asked of
// ECS for either, not even DescribeInstances.
flow!(a_start_after_cycle_stalls_without_any_ecs_call, async |s| {
    s.add([
        instance("i-cyc1", InstanceStatus::Stopped),
        instance("i-cyc2", InstanceStatus::Stopped),
    ]);
    s.create(&tier("a", "i-cyc1", PowerState::Running, &["b"]))
        .await;
    s.create(&tier("b", "i-cyc2", PowerState::Running, &["a"]))
        .await;
    s.controller();
    for (name, cycle) in [("a", "a → b → a"), ("b", "b → a → b")] {
        let obj = s
            .wait_for_reason(name, "Stalled", "True", "DependencyCycle")
            .await;
        let message = condition(&obj, "Stalled").unwrap().message;
        assert!(message.contains(cycle), "{message}");
    }
    tokio::time::sleep(QUIET).await;
    for id in ["i-cyc1", "i-cyc2"] {
        assert!(
            s.sim
                .calls()
                .log()
                .iter()
                .all(|r| r.instances.iter().all(|(i, _)| i != id)),
            "no ECS call named {id}"
        );
    }
});

// app starts after db, which does not exist yet: app waits (WaitingForDependency, saying db
// does not exist) with no start; creating db releases it, db first.
flow!(
    a_missing_dependency_waits_and_creating_it_releases_the_wait,
    async |s| {
        s.add([
            instance("i-latedb1", InstanceStatus::Stopped),
            instance("i-lateapp1", InstanceStatus::Stopped),
        ]);
        s.controller();
        s.create(&tier("app", "i-lateapp1", PowerState::Running, &["db"]))
            .await;
        let obj = s
            .wait_for_reason("app", "Ready", "False", "WaitingForDependency")
            .await;
        let message = condition(&obj, "Ready").unwrap().message;
        assert!(message.contains("db does not exist"), "{message}");
        assert_eq!(cond(&obj, "Reconciling").0, "True");
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            s.sim.calls().count_all(Action::StartInstance, "i-lateapp1"),
            0
        );

        s.create(&tier("db", "i-latedb1", PowerState::Running, &[]))
            .await;
        s.wait_for("app", is_ready).await;
        let log = s.sim.calls().log();
        assert!(accepted_seq(&log, STARTS, "i-latedb1") < accepted_seq(&log, STARTS, "i-lateapp1"));
    }
);
