//! `spec.startAfter` in one reconcile: a start or stop held for its neighbours makes no ECS
//! call and says why; released, it is the call it always was. Reboots are not ordered.

use super::*;
use crate::controller::reconcile::neighbours::Neighbours;
use crate::ordering::Peer;

/// The namespace's other EcsInstances, as the watch cache would hold them.
struct Fleet(Vec<EcsInstance>);

impl Neighbours for Fleet {
    fn get(&self, namespace: &str, name: &str) -> Option<Peer> {
        self.0
            .iter()
            .find(|o| o.namespace().as_deref() == Some(namespace) && o.name_any() == name)
            .map(Peer::of)
    }

    fn starting_after(&self, namespace: &str, name: &str) -> Vec<(String, Peer)> {
        self.0
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .filter(|o| o.spec.start_after.iter().any(|n| n == name))
            .map(|o| (o.name_any(), Peer::of(o)))
            .collect()
    }
}

/// The world of `world`, its reconciler reading `others` as the namespace's EcsInstances.
fn among(mut world: World, others: Vec<EcsInstance>) -> World {
    world.reconciler = Arc::new(
        reconciler(
            &world.cluster,
            &world.ecs,
            &world.schedules,
            &world.clock,
            Arc::new(DirectObserver),
        )
        .with_neighbours(Arc::new(Fleet(others))),
    );
    world
}

/// EcsInstance `name` whose status shows its instance `seen` (Ready when `ready`).
fn peer(name: &str, after: &[&str], seen: InstanceStatus, ready: bool) -> EcsInstance {
    let mut obj = EcsInstance::new(
        name,
        EcsInstanceSpec::minimal("i-other", PowerState::Running),
    );
    obj.metadata.namespace = Some("default".into());
    obj.spec.start_after = after.iter().map(|s| s.to_string()).collect();
    obj.status = Some(EcsInstanceStatus {
        instance_status: Some(seen),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: "x".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(now()),
        }],
        ..EcsInstanceStatus::default()
    });
    obj
}

/// `web-1` (the object under test) starting after `after`.
fn web(power_state: PowerState, after: &[&str]) -> EcsInstance {
    let mut obj = object(power_state);
    obj.spec.start_after = after.iter().map(|s| s.to_string()).collect();
    obj
}

fn ready(world: &World) -> Condition {
    condition(&world.status(), "Ready").clone()
}

#[tokio::test]
async fn a_start_waits_for_its_dependency_running_and_ready_without_calling_ecs() {
    let app = peer("app", &[], InstanceStatus::Starting, false);
    let world = among(
        World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1")),
        vec![app],
    );

    let next = world
        .reconcile(&web(PowerState::Running, &["app"]))
        .await
        .unwrap();

    assert_eq!(
        world.log(),
        [format!("describe [\"{ID}\"]"), "write status".into()]
    );
    let ready = ready(&world);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForDependency")
    );
    assert!(
        ready.message.contains("app to be Running and Ready"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&world.status(), "Reconciling").status, "True");
    // Woken by app's change; the resync is only the fallback.
    assert_eq!(next, Config::default().resync);

    // app is up and Ready: the start goes out as any other.
    let world = among(
        World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-2")),
        vec![peer("app", &[], InstanceStatus::Running, true)],
    );
    world
        .reconcile(&web(PowerState::Running, &["app"]))
        .await
        .unwrap();
    assert!(
        world.log().contains(&format!("StartInstance {ID}")),
        "{:?}",
        world.log()
    );
}

#[tokio::test]
async fn a_stop_waits_until_what_starts_after_it_is_stopped() {
    let world = among(
        World::new(Some(instance(InstanceStatus::Running)), accepted("req-1")),
        vec![peer("api", &["web-1"], InstanceStatus::Running, true)],
    );
    world
        .reconcile(&web(PowerState::Stopped, &[]))
        .await
        .unwrap();
    assert_eq!(
        world.log(),
        [format!("describe [\"{ID}\"]"), "write status".into()]
    );
    let ready = ready(&world);
    assert_eq!(ready.reason, "WaitingForDependency");
    assert!(
        ready.message.contains("api to be Stopped"),
        "{}",
        ready.message
    );

    let world = among(
        World::new(Some(instance(InstanceStatus::Running)), accepted("req-2")),
        vec![peer("api", &["web-1"], InstanceStatus::Stopped, true)],
    );
    world
        .reconcile(&web(PowerState::Stopped, &[]))
        .await
        .unwrap();
    assert!(
        world.log().contains(&format!("StopInstance {ID}")),
        "{:?}",
        world.log()
    );
}

#[tokio::test]
async fn a_cycle_stalls_naming_it_before_any_ecs_request() {
    let world = among(
        World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1")),
        vec![peer("app", &["web-1"], InstanceStatus::Stopped, false)],
    );
    world
        .reconcile(&web(PowerState::Running, &["app"]))
        .await
        .unwrap();
    assert_eq!(world.log(), ["write status"]);
    let stalled = condition(&world.status(), "Stalled").clone();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "DependencyCycle")
    );
    assert!(
        stalled.message.contains("web-1 → app → web-1"),
        "{}",
        stalled.message
    );
}

#[tokio::test]
async fn a_missing_dependency_waits_and_says_so() {
    let world = among(
        World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1")),
        Vec::new(),
    );
    world
        .reconcile(&web(PowerState::Running, &["db"]))
        .await
        .unwrap();
    assert_eq!(
        world.log(),
        [format!("describe [\"{ID}\"]"), "write status".into()]
    );
    let ready = ready(&world);
    assert_eq!(ready.reason, "WaitingForDependency");
    assert!(
        ready
            .message
            .contains("db does not exist in this namespace"),
        "{}",
        ready.message
    );
}

/// A reboot token on a running instance whose dependency is down: reboots are not ordered.
#[tokio::test]
async fn a_reboot_is_not_ordered() {
    let world = among(
        World::new(Some(instance(InstanceStatus::Running)), accepted("req-1")),
        vec![peer("app", &[], InstanceStatus::Stopped, false)],
    );
    world
        .reconcile(&with_reboot(web(PowerState::Running, &["app"]), "t-1"))
        .await
        .unwrap();
    assert!(
        world.log().contains(&format!("RebootInstance {ID}")),
        "{:?}",
        world.log()
    );
}
