//! The ordering rules, one scenario each: chains, diamonds, cycles, missing names, and what
//! paused and dry-run neighbours count as.

use super::*;
use ecs_client::InstanceStatus::{Running, Starting, Stopped, Stopping};

/// A peer that starts after `after`, whose status shows `instance` (`ready`: Ready=True).
fn peer(after: &[&str], instance: Option<InstanceStatus>, ready: bool) -> Peer {
    Peer {
        start_after: after.iter().map(|s| s.to_string()).collect(),
        instance,
        ready,
        inert: false,
    }
}

fn up(after: &[&str]) -> Peer {
    peer(after, Some(Running), true)
}

fn down(after: &[&str]) -> Peer {
    peer(after, Some(Stopped), true)
}

fn peers(list: &[(&str, Peer)]) -> Peers {
    list.iter()
        .map(|(n, p)| (n.to_string(), p.clone()))
        .collect()
}

fn waiting_on(hold: Option<Hold>) -> Vec<String> {
    match hold {
        Some(Hold::Waiting { on, .. }) => on.into_iter().map(|w| w.name).collect(),
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn an_instance_without_neighbours_never_waits() {
    let fleet = peers(&[("db", down(&[])), ("other", down(&[]))]);
    assert_eq!(hold("db", Change::Start, &fleet), None);
    assert_eq!(hold("db", Change::Stop, &fleet), None);
}

#[test]
fn a_chain_starts_db_then_app_then_web() {
    // 08:00: all three stopped, all due to start. Only db may go.
    let mut fleet = peers(&[
        ("db", down(&[])),
        ("app", down(&["db"])),
        ("web", down(&["app"])),
    ]);
    assert_eq!(hold("db", Change::Start, &fleet), None);
    assert_eq!(waiting_on(hold("app", Change::Start, &fleet)), ["db"]);
    assert_eq!(waiting_on(hold("web", Change::Start, &fleet)), ["app"]);

    // db is Running but its status is not Ready yet: app still waits.
    fleet.0.insert("db".into(), peer(&[], Some(Running), false));
    assert_eq!(waiting_on(hold("app", Change::Start, &fleet)), ["db"]);
    // db Ready: app goes; web waits for app, not for db.
    fleet.0.insert("db".into(), up(&[]));
    assert_eq!(hold("app", Change::Start, &fleet), None);
    assert_eq!(waiting_on(hold("web", Change::Start, &fleet)), ["app"]);
    fleet.0.insert("app".into(), up(&["db"]));
    assert_eq!(hold("web", Change::Start, &fleet), None);
}

#[test]
fn a_chain_stops_in_reverse_web_then_app_then_db() {
    let mut fleet = peers(&[("db", up(&[])), ("app", up(&["db"])), ("web", up(&["app"]))]);
    assert_eq!(hold("web", Change::Stop, &fleet), None);
    assert_eq!(waiting_on(hold("app", Change::Stop, &fleet)), ["web"]);
    assert_eq!(waiting_on(hold("db", Change::Stop, &fleet)), ["app"]);
    // Stopping is not Stopped.
    fleet
        .0
        .insert("web".into(), peer(&["app"], Some(Stopping), false));
    assert_eq!(waiting_on(hold("app", Change::Stop, &fleet)), ["web"]);
    fleet.0.insert("web".into(), down(&["app"]));
    assert_eq!(hold("app", Change::Stop, &fleet), None);
    fleet.0.insert("app".into(), down(&["db"]));
    assert_eq!(hold("db", Change::Stop, &fleet), None);
}

#[test]
fn a_diamond_waits_for_both_sides() {
    // web starts after api and worker, both start after db.
    let mut fleet = peers(&[
        ("db", up(&[])),
        ("api", up(&["db"])),
        ("worker", peer(&["db"], Some(Starting), false)),
        ("web", down(&["worker", "api"])),
    ]);
    let hold_web = hold("web", Change::Start, &fleet);
    assert_eq!(waiting_on(hold_web.clone()), ["worker"]);
    let Some(Hold::Waiting { needed, on, .. }) = hold_web else {
        unreachable!()
    };
    assert_eq!(needed, Needed::RunningAndReady);
    assert_eq!(on[0].now, Some(Starting));
    fleet.0.insert("worker".into(), up(&["db"]));
    assert_eq!(hold("web", Change::Start, &fleet), None);
    // Down: db waits for both api and worker, sorted by name.
    assert_eq!(
        waiting_on(hold("db", Change::Stop, &fleet)),
        ["api", "worker"]
    );
}

#[test]
fn self_reference_is_a_cycle_of_one() {
    let fleet = peers(&[("db", down(&["db"]))]);
    assert_eq!(
        hold("db", Change::Start, &fleet),
        Some(Hold::Cycle(vec!["db".into(), "db".into()]))
    );
    assert_eq!(
        hold("db", Change::Stop, &fleet),
        Some(Hold::Cycle(vec!["db".into(), "db".into()]))
    );
}

#[test]
fn a_cycle_is_named_in_start_after_order_from_each_member() {
    // a starts after b, b after c, c after a; d starts after a but is on no cycle.
    let fleet = peers(&[
        ("a", down(&["b"])),
        ("b", down(&["c"])),
        ("c", down(&["a"])),
        ("d", down(&["a"])),
    ]);
    assert_eq!(
        hold("a", Change::Start, &fleet),
        Some(Hold::Cycle(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(String::from)
                .collect()
        ))
    );
    assert_eq!(
        peers_cycle(&fleet, "c"),
        Some(
            vec!["c", "a", "b", "c"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    // d only waits (for a, which never comes up while the cycle stands).
    assert_eq!(waiting_on(hold("d", Change::Start, &fleet)), ["a"]);
    let message = hold("b", Change::Stop, &fleet).unwrap().to_string();
    assert!(message.contains("b → c → a → b"), "{message}");
    assert!(message.contains("spec.startAfter"), "{message}");
}

fn peers_cycle(fleet: &Peers, name: &str) -> Option<Vec<String>> {
    fleet.cycle_through(name)
}

#[test]
fn the_shortest_cycle_is_reported() {
    // a → b → a, and a longer way back through c → d.
    let fleet = peers(&[
        ("a", down(&["c", "b"])),
        ("b", down(&["a"])),
        ("c", down(&["d"])),
        ("d", down(&["a"])),
    ]);
    assert_eq!(
        fleet.cycle_through("a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

#[test]
fn a_missing_name_waits_and_is_named_and_creating_it_releases_the_wait() {
    let mut fleet = peers(&[("app", down(&["db", "cache"])), ("cache", up(&[]))]);
    let hold_app = hold("app", Change::Start, &fleet).unwrap();
    let Hold::Waiting { on, .. } = &hold_app else {
        panic!("{hold_app:?}")
    };
    assert_eq!(
        on,
        &[Waited {
            name: "db".into(),
            now: None,
            missing: true
        }]
    );
    let message = hold_app.to_string();
    assert!(
        message.contains("db does not exist in this namespace"),
        "{message}"
    );
    // Created, not yet up: waits for it like any other.
    fleet.0.insert("db".into(), peer(&[], None, false));
    let message = hold("app", Change::Start, &fleet).unwrap().to_string();
    assert!(message.contains("db (not observed yet)"), "{message}");
    assert!(!message.contains("does not exist"), "{message}");
    fleet.0.insert("db".into(), up(&[]));
    assert_eq!(hold("app", Change::Start, &fleet), None);
    // A stop of app has no dependents: a missing dependency does not hold it.
    assert_eq!(hold("app", Change::Stop, &fleet), None);
}

#[test]
fn paused_and_dry_run_neighbours_count_only_by_their_instance() {
    // db paused (or dry run) and its instance Stopped: it will never start it, app waits.
    let inert = |instance| Peer {
        inert: true,
        ..peer(&[], Some(instance), false)
    };
    let mut fleet = peers(&[("db", inert(Stopped)), ("app", down(&["db"]))]);
    assert_eq!(waiting_on(hold("app", Change::Start, &fleet)), ["db"]);
    // Its instance Running (started by hand): satisfied, though not Ready.
    fleet.0.insert("db".into(), inert(Running));
    assert_eq!(hold("app", Change::Start, &fleet), None);
    // On the way down, a paused app still Running holds db's stop.
    let mut fleet = peers(&[
        ("db", up(&[])),
        (
            "app",
            Peer {
                inert: true,
                ..up(&["db"])
            },
        ),
    ]);
    assert_eq!(waiting_on(hold("db", Change::Stop, &fleet)), ["app"]);
    fleet.0.insert(
        "app".into(),
        Peer {
            inert: true,
            ..down(&["db"])
        },
    );
    assert_eq!(hold("db", Change::Stop, &fleet), None);
}

#[test]
fn the_peer_of_an_object_reads_its_status_and_annotations() {
    use crate::api::{EcsInstanceSpec, PAUSED_ANNOTATION, PowerState};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    let mut obj = EcsInstance::new(
        "app",
        EcsInstanceSpec::minimal("i-app", PowerState::Running),
    );
    obj.metadata.namespace = Some("shop".into());
    obj.spec.start_after = vec!["db".into()];
    assert_eq!(Peer::of(&obj), peer(&["db"], None, false));
    obj.status = Some(EcsInstanceStatus {
        instance_status: Some(Running),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "InstanceRunning".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }],
        ..EcsInstanceStatus::default()
    });
    assert!(Peer::of(&obj).reached(Needed::RunningAndReady));
    obj.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    assert!(Peer::of(&obj).inert);
    let mut other = obj.clone();
    other.metadata.namespace = Some("elsewhere".into());
    other.metadata.name = Some("db".into());
    let fleet = Peers::in_namespace([&obj, &other], "shop");
    assert!(fleet.get("app").is_some() && fleet.get("db").is_none());
    assert_eq!(fleet.started_after("db"), BTreeSet::from(["app"]));
}

#[test]
fn the_waiting_message_names_each_neighbour_and_its_state() {
    let fleet = peers(&[
        ("db-1", peer(&[], Some(Starting), false)),
        ("db-2", peer(&[], Some(Stopped), false)),
        ("app", down(&["db-1", "db-2", "db-3", "db-4"])),
    ]);
    let message = hold("app", Change::Start, &fleet).unwrap().to_string();
    assert_eq!(
        message,
        "Waiting before starting (spec.startAfter): db-1, db-2 to be Running and Ready. db-3, db-4 do not exist in this namespace: create them or remove them from spec.startAfter."
    );
    let fleet = peers(&[("db", up(&[])), ("app", up(&["db"]))]);
    assert_eq!(
        hold("db", Change::Stop, &fleet).unwrap().to_string(),
        "Waiting before stopping (they start after this one): app to be Stopped."
    );
}

#[test]
fn gathering_reads_only_what_the_change_needs() {
    let fleet = peers(&[
        ("db", up(&[])),
        ("app", up(&["db"])),
        ("web", up(&["app"])),
        ("unrelated", up(&[])),
    ]);
    let get = |n: &str| fleet.get(n).cloned();
    let dependents = |name: &str| {
        let fleet = fleet.clone();
        let name = name.to_string();
        move || {
            fleet
                .started_after(&name)
                .into_iter()
                .map(|n| (n.to_string(), fleet.get(n).cloned().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    // A start of web: web, app and db (the chain it reaches), never who starts after it.
    let start = Peers::gather(
        "web",
        Change::Start,
        up(&["app"]),
        get,
        || -> Vec<(String, Peer)> { panic!("a start does not list dependents") },
    );
    let names: Vec<&str> = start.0.keys().map(String::as_str).collect();
    assert_eq!(names, ["app", "db", "web"]);
    // A stop of db: db and app (who starts after it).
    let stop = Peers::gather("db", Change::Stop, up(&[]), get, dependents("db"));
    let names: Vec<&str> = stop.0.keys().map(String::as_str).collect();
    assert_eq!(names, ["app", "db"]);
    assert_eq!(
        hold("db", Change::Stop, &stop),
        hold("db", Change::Stop, &fleet)
    );
    // A cycle is found through the gathered names alone.
    let cycle = peers(&[("a", down(&["b"])), ("b", down(&["a"]))]);
    let gathered = Peers::gather(
        "a",
        Change::Start,
        down(&["b"]),
        |n| cycle.get(n).cloned(),
        Vec::new,
    );
    assert!(matches!(
        hold("a", Change::Start, &gathered),
        Some(Hold::Cycle(_))
    ));
}
