//! One owner per instance, made to stick (issue 24 item 4): an object about to make its first
//! mutating call records its claim first and acts only once the owner index (fed by the
//! watch, here by the test) has seen it and still names it the owner.

use super::*;
use crate::controller::admission::Gates;
use kube::runtime::watcher;

/// Gates over an owner index fed as the watch feeds it, holding `objects`.
fn watched(objects: &[&EcsInstance]) -> Gates {
    let gates = Gates::default();
    gates.owners.fed_by_watch();
    for obj in objects {
        gates.owners.apply(&watcher::Event::Apply((*obj).clone()));
    }
    gates
}

/// `obj` as the watch shows it once its claim made `at` is written.
fn with_claim(obj: &EcsInstance, at: Timestamp) -> EcsInstance {
    let mut obj = obj.clone();
    obj.status.get_or_insert_with(Default::default).claimed_at = Some(MicroTime(at));
    obj
}

/// The watch, `lag` behind: once the claim is written, delivers `before` (events the API
/// server stored before it), then the claim.
fn deliver_after_the_claim(
    world: &World,
    gates: &Gates,
    obj: &EcsInstance,
    before: Vec<EcsInstance>,
    lag: Duration,
) -> tokio::task::JoinHandle<()> {
    let (cluster, owners, obj) = (world.cluster.clone(), gates.owners.clone(), obj.clone());
    tokio::spawn(async move {
        let at = loop {
            if let Some(at) = cluster.claims.lock().unwrap().first().copied() {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(lag).await;
        for earlier in before {
            owners.apply(&watcher::Event::Apply(earlier));
        }
        owners.apply(&watcher::Event::Apply(with_claim(&obj, at)));
    })
}

fn created(mut obj: EcsInstance, name: &str, at: &str) -> EcsInstance {
    obj.metadata.name = Some(name.into());
    obj.metadata.creation_timestamp = Some(Time(at.parse().unwrap()));
    obj
}

/// `zz-own` alone in the cache wants the instance Running: it writes its claim, waits for the
/// watch to show it (2 s behind), and only then starts the instance.
#[tokio::test(start_paused = true)]
async fn the_claim_is_written_and_seen_before_the_first_call() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1"));
    let zz = created(
        object(PowerState::Running),
        "zz-own",
        "2026-11-22T10:29:00Z",
    );
    let gates = watched(&[&zz]);
    let watch = deliver_after_the_claim(&world, &gates, &zz, Vec::new(), seconds(2));

    world.reconciler.reconcile(&zz, &gates).await.unwrap();
    watch.await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            "write claim".into(),
            format!("StartInstance {ID}"),
            "write status".into()
        ]
    );
    assert_eq!(world.status().claimed_at.map(|t| t.0), Some(now()));
}

/// Issue 24 item 4 with a lagging watch: `aa-own` was created (and claimed the instance) just
/// before `zz-own`, but the cache has not shown either yet when `zz-own` is about to stop
/// the instance. Once its own claim shows, so does `aa-own`'s earlier one: `zz-own` sends
/// nothing, withdraws its claim and is Stalled naming `aa-own`.
#[tokio::test(start_paused = true)]
async fn a_claim_written_before_ours_and_seen_only_now_keeps_us_from_acting() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-1"));
    let zz = created(
        object(PowerState::Stopped),
        "zz-own",
        "2026-11-22T10:29:00Z",
    );
    let aa = created(
        object(PowerState::Running),
        "aa-own",
        "2026-11-22T10:29:00Z",
    );
    let gates = watched(&[&zz]);
    let aa_claimed = with_claim(&aa, "2026-11-22T10:29:00.5Z".parse().unwrap());
    let watch = deliver_after_the_claim(&world, &gates, &zz, vec![aa_claimed], seconds(1));

    let next = world.reconciler.reconcile(&zz, &gates).await.unwrap();
    watch.await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            "write claim".into(),
            "write status".into()
        ]
    );
    assert_eq!(next, Config::default().resync);
    let status = world.status();
    assert_eq!(status.claimed_at, None, "a duplicate holds no claim");
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "DuplicateInstance")
    );
    assert!(
        stalled.message.contains("default/aa-own"),
        "{}",
        stalled.message
    );
}

/// A watch that does not show the claim within the bound: nothing is sent, the claim stays
/// recorded, and the object is looked at again soon.
#[tokio::test(start_paused = true)]
async fn a_claim_the_watch_does_not_show_in_time_ends_the_pass_without_a_call() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1"));
    let zz = created(
        object(PowerState::Running),
        "zz-own",
        "2026-11-22T10:29:00Z",
    );
    let gates = watched(&[&zz]);

    let next = world.reconciler.reconcile(&zz, &gates).await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            "write claim".into(),
            "write status".into()
        ]
    );
    assert_eq!(next, seconds(1));
    assert_eq!(world.status().claimed_at.map(|t| t.0), Some(now()));
}

/// An object that has claimed the instance (it acted before) is not written again: it acts at
/// once, however old the other objects naming the instance are.
#[tokio::test(start_paused = true)]
async fn an_object_that_claimed_before_acts_without_a_new_claim_and_keeps_the_instance() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-1"));
    let at: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    let zz = with_claim(
        &created(
            object(PowerState::Stopped),
            "zz-own",
            "2026-11-22T10:00:00Z",
        ),
        at,
    );
    let older = created(
        object(PowerState::Running),
        "aa-own",
        "2026-11-22T09:00:00Z",
    );
    let gates = watched(&[&older, &zz]);

    world.reconciler.reconcile(&zz, &gates).await.unwrap();
    let other = World::new(Some(instance(InstanceStatus::Running)), accepted("req-2"));
    other.reconciler.reconcile(&older, &gates).await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            format!("StopInstance {ID}"),
            "write status".into()
        ]
    );
    assert_eq!(world.status().claimed_at.map(|t| t.0), Some(at));
    // aa-own, older but unclaimed: nothing at ECS at all.
    assert_eq!(other.log(), ["write status"]);
    assert_eq!(other.status().claimed_at, None);
    assert_eq!(
        condition(&other.status(), "Stalled").reason,
        "DuplicateInstance"
    );
}
