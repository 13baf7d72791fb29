//! The fleet observer against a fake ECS, on tokio's paused clock: what it reads when, whom it
//! triggers, and which reading may answer which lookup.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use tokio::time::Instant;

use super::*;
use crate::api::{EcsInstanceSpec, PowerState};
use crate::controller::ecs::observe::Freshness;
use crate::testing::{FakeEcs, api_error, id, target};
use ecs_client::{EcsApi, InstanceStatus, PowerRequest, StopOptions};

const REGION: &str = "cn-hangzhou";
const RESYNC: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_secs(1);

fn observer() -> Arc<FleetObserver> {
    Arc::new(FleetObserver::new(FleetSettings {
        resync: RESYNC,
        transition_poll: POLL,
        batch: BatchSettings::default(),
    }))
}

fn lookup(ecs: &Arc<FakeEcs>, n: usize, freshness: Freshness) -> Lookup {
    Lookup {
        freshness,
        ..target(ecs, "default", REGION, &id(n))
    }
}

/// The objects of `range` look for the first time (a fresh reading each, as a new
/// generation needs).
async fn register(observer: &Arc<FleetObserver>, ecs: &Arc<FakeEcs>, range: Range<usize>) {
    let looks = range.map(|n| {
        let observer = observer.clone();
        let lookup = lookup(ecs, n, Freshness::After(Instant::now()));
        async move { observer.observe(&lookup).await.unwrap() }
    });
    futures::future::join_all(looks).await;
}

/// What the controller's run does with the change stream: polls it, collecting the triggers.
/// The store lists the objects of `listed` (`None`: it has not listed yet).
fn follow(
    observer: &Arc<FleetObserver>,
    listed: Option<Range<usize>>,
) -> (Writer<EcsInstance>, Arc<Mutex<Vec<String>>>) {
    let (store, mut writer) = reflector::store::<EcsInstance>();
    let (listed_sender, listed_signal) = crate::controller::listed::Listed::new();
    if let Some(range) = listed {
        writer.apply_watcher_event(&watcher::Event::Init);
        for n in range {
            let mut obj = EcsInstance::new(
                &format!("obj-{}", id(n)),
                EcsInstanceSpec::minimal(&id(n), PowerState::Running),
            );
            obj.metadata.namespace = Some("team-a".into());
            writer.apply_watcher_event(&watcher::Event::InitApply(obj));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        listed_sender.send_replace(true);
    }
    let triggered = Arc::new(Mutex::new(Vec::new()));
    let mut changes = observer.changes(store, listed_signal);
    let seen = triggered.clone();
    tokio::spawn(async move {
        while let Some(object) = changes.next().await {
            seen.lock().unwrap().push(object.name);
        }
    });
    (writer, triggered)
}

fn describes(ecs: &FakeEcs) -> Vec<Vec<String>> {
    ecs.calls_of("DescribeInstances")
        .into_iter()
        .map(|c| c.ids)
        .collect()
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn every_resync_reads_each_managed_instance_once_in_full_sorted_pages_spread_over_the_period()
{
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..250).await;
    assert_eq!(
        describes(&ecs).len(),
        3,
        "the first looks share three calls"
    );
    let (_writer, triggered) = follow(&observer, None);

    // The first pass starts one resync after the fleet was first read.
    sleep(RESYNC * 2 - POLL).await;
    let calls = ecs.calls_of("DescribeInstances");
    let pass: Vec<_> = calls[3..].to_vec();
    let sizes: Vec<usize> = pass.iter().map(|c| c.ids.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let mut all: Vec<String> = pass.iter().flat_map(|c| c.ids.clone()).collect();
    assert!(all.is_sorted(), "pages hold neighbouring ids");
    all.dedup();
    assert_eq!(all.len(), 250);
    // Spread: a page every third of the period, so a spec change never queues behind a burst.
    assert_eq!(pass[1].at - pass[0].at, RESYNC / 3);
    assert_eq!(pass[2].at - pass[1].at, RESYNC / 3);

    // Resyncs take the view: no call at all.
    let before = describes(&ecs).len();
    for n in 0..250 {
        let seen = observer
            .observe(&lookup(&ecs, n, Freshness::View))
            .await
            .unwrap();
        assert_eq!(seen.unwrap().status, InstanceStatus::Running);
    }
    assert_eq!(describes(&ecs).len(), before);

    // The next period: exactly ceil(250/100) calls again, and nothing changed, nobody triggered.
    sleep(RESYNC).await;
    assert_eq!(describes(&ecs).len(), before + 3);
    assert!(triggered.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_instance_changed_behind_the_controllers_back_triggers_its_object_once() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..3).await;
    let (_writer, triggered) = follow(&observer, None);

    ecs.set_status(&id(1), InstanceStatus::Stopped);
    sleep(RESYNC + POLL).await;
    assert_eq!(*triggered.lock().unwrap(), ["obj-i-1"]);

    // Read again before the object looked: the same change triggers nobody twice.
    sleep(RESYNC).await;
    assert_eq!(*triggered.lock().unwrap(), ["obj-i-1"]);

    // The object's reconcile looks (the view shows the change) and the instance is started
    // again: that is news once more.
    let seen = observer
        .observe(&lookup(&ecs, 1, Freshness::View))
        .await
        .unwrap();
    assert_eq!(seen.unwrap().status, InstanceStatus::Stopped);
    ecs.set_status(&id(1), InstanceStatus::Running);
    sleep(RESYNC).await;
    assert_eq!(*triggered.lock().unwrap(), ["obj-i-1", "obj-i-1"]);
}

#[tokio::test(start_paused = true)]
async fn instances_in_transition_are_read_every_transition_poll_and_the_others_are_not() {
    let ecs = FakeEcs::new();
    let observer = observer();
    ecs.set_status(&id(2), InstanceStatus::Starting);
    register(&observer, &ecs, 0..3).await;
    let (_writer, triggered) = follow(&observer, None);
    let before = describes(&ecs).len();

    sleep(POLL * 3 + POLL / 2).await;
    let polls = describes(&ecs)[before..].to_vec();
    assert_eq!(
        polls,
        vec![vec![id(2)]; 3],
        "only the moving instance, once per poll"
    );
    assert!(
        triggered.lock().unwrap().is_empty(),
        "still Starting: no news"
    );

    ecs.set_status(&id(2), InstanceStatus::Running);
    sleep(POLL).await;
    assert_eq!(*triggered.lock().unwrap(), ["obj-i-2"]);
    let settled = describes(&ecs).len();
    sleep(POLL * 5).await;
    assert_eq!(describes(&ecs).len(), settled, "Running: no more polls");
}

#[tokio::test(start_paused = true)]
async fn a_reading_sent_before_a_token_arrived_never_answers_the_tokens_reconcile() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..1).await;
    let (_writer, _) = follow(&observer, None);

    // The periodic read of i-0 goes out at the resync and takes 5 s to answer.
    ecs.set_latency(Duration::from_secs(5));
    sleep(RESYNC).await;
    let page_sent = describes(&ecs).len();
    assert_eq!(page_sent, 2, "the periodic page is on its way");
    // Meanwhile the instance is stopped outside, and a reboot token arrives.
    sleep(Duration::from_millis(500)).await;
    ecs.set_status(&id(0), InstanceStatus::Stopped);
    sleep(Duration::from_millis(500)).await;
    let token_arrived = Instant::now();
    // The page answers (Running, as it was when sent): the newest answer in hand.
    sleep(Duration::from_secs(5)).await;
    ecs.set_latency(Duration::from_millis(2));

    // A resync would take it…
    let view = observer
        .observe(&lookup(&ecs, 0, Freshness::View))
        .await
        .unwrap();
    assert_eq!(view.unwrap().status, InstanceStatus::Running);
    assert_eq!(describes(&ecs).len(), page_sent);
    // …the token's reconcile reads for itself, and sees what happened after the token.
    let fresh = observer
        .observe(&lookup(&ecs, 0, Freshness::After(token_arrived)))
        .await
        .unwrap();
    assert_eq!(fresh.unwrap().status, InstanceStatus::Stopped);
    assert_eq!(describes(&ecs).len(), page_sent + 1);
    let own = ecs.calls_of("DescribeInstances").last().unwrap().at;
    assert!(own >= token_arrived.duration_since(ecs.started()));

    // That reading is now the view: the next resync of the object needs no call.
    let view = observer
        .observe(&lookup(&ecs, 0, Freshness::View))
        .await
        .unwrap();
    assert_eq!(view.unwrap().status, InstanceStatus::Stopped);
    assert_eq!(describes(&ecs).len(), page_sent + 1);
}

#[tokio::test(start_paused = true)]
async fn after_a_power_call_the_next_look_reads_afresh_even_for_a_resync() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..1).await;
    let view = lookup(&ecs, 0, Freshness::View);
    observer.observe(&view).await.unwrap();
    assert_eq!(describes(&ecs).len(), 1, "the view answered");

    let invalidating = observer.invalidating(ecs.clone(), "default".into());
    let stop = PowerRequest::Stop(StopOptions::default());
    invalidating.power(REGION, &id(0), stop).await.unwrap();
    observer.observe(&view).await.unwrap();
    assert_eq!(describes(&ecs).len(), 2, "read after the StopInstance");
    observer.observe(&view).await.unwrap();
    assert_eq!(
        describes(&ecs).len(),
        2,
        "and that reading answers from now on"
    );
}

#[tokio::test(start_paused = true)]
async fn periodic_pages_wait_while_a_fresh_lookup_of_the_region_is_pending() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..100).await;
    let (_writer, _) = follow(&observer, None);

    let urgent = observer.shared.priority.urgent(REGION);
    sleep(RESYNC + Duration::from_secs(10)).await;
    assert_eq!(
        describes(&ecs).len(),
        1,
        "the page waits for the latency path"
    );
    drop(urgent);
    sleep(HOLDOFF - Duration::from_millis(10)).await;
    assert_eq!(
        describes(&ecs).len(),
        1,
        "nor does it slip into a gap between two fresh lookups"
    );
    sleep(Duration::from_millis(20)).await;
    assert_eq!(
        describes(&ecs).len(),
        2,
        "it goes once the hold-off is over"
    );
}

#[tokio::test(start_paused = true)]
async fn deleted_and_idle_objects_are_no_longer_read_for() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..3).await;
    // obj-i-2 was deleted: the store lists the other two.
    let (_writer, _) = follow(&observer, Some(0..2));

    sleep(RESYNC + POLL).await;
    assert_eq!(describes(&ecs).last().unwrap(), &[id(0), id(1)]);

    // Nobody looks any more (a gate stops their reconciles before the observe step): after
    // two resyncs without a look they are forgotten, and nothing is read at all.
    sleep(RESYNC * 3).await;
    let settled = describes(&ecs).len();
    sleep(RESYNC * 3).await;
    assert_eq!(describes(&ecs).len(), settled);
    assert!(lock(&observer.shared.fleets).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_old_view_answers_a_resync_while_the_pages_succeed_and_not_once_they_fail() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..1).await;
    let (_writer, _) = follow(&observer, None);
    let view = lookup(&ecs, 0, Freshness::View);

    // A fresh lookup keeps the periodic pages waiting (a latency path that never pauses): the
    // view ages past three resyncs, but the fleet's last page succeeded.
    sleep(RESYNC + POLL).await;
    let reads = describes(&ecs).len();
    assert_eq!(reads, 2, "one page went out");
    let held = observer.shared.priority.urgent(REGION);
    sleep(RESYNC * 3).await;
    observer.observe(&view).await.unwrap();
    assert_eq!(describes(&ecs).len(), reads, "the view answered");
    drop(held);

    // ECS fails every read from now on: once a page has failed, the old view answers nobody;
    // the resync reads for itself and gets ECS's error to record.
    ecs.fail_requests(api_error("ServiceUnavailable", 503));
    sleep(RESYNC * 4).await;
    assert!(observer.observe(&view).await.is_err());
}

/// A gate refuses an object that registered earlier (its Namespace lost the shared-credentials
/// label): from that moment nothing is read on its behalf, not even the pass already planned.
#[tokio::test(start_paused = true)]
async fn a_refused_object_is_read_for_no_more() {
    let ecs = FakeEcs::new();
    let observer = observer();
    register(&observer, &ecs, 0..3).await;
    let (_writer, _) = follow(&observer, Some(0..3));
    sleep(RESYNC + POLL).await;
    assert_eq!(describes(&ecs).last().unwrap(), &[id(0), id(1), id(2)]);

    let refused = lookup(&ecs, 1, Freshness::View).object;
    observer.forget(&refused);
    let before = describes(&ecs).len();
    sleep(RESYNC * 2).await;
    let after = describes(&ecs);
    assert!(after.len() > before, "the others are still read");
    for page in &after[before..] {
        assert!(
            !page.contains(&id(1)),
            "{page:?} reads the refused object's instance"
        );
    }
}
