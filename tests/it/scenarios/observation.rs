//! How an instance is observed, end to end (issue 24 item 8): one DescribeInstances answer
//! that leaves the instance's row out (the simulator's scripted omission) is not enough to
//! call it gone. Flux fails a Kustomization fast on `Stalled`, so the object must never show
//! `Stalled=True` for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_power_controller::controller::{BatchSettings, Config};
use ecs_sim::Action;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::support::scenario::*;

/// How long to keep watching once the row was left out: the reconcile it triggers has long
/// written its status by then.
const QUIET: Duration = Duration::from_millis(500);

/// Whether `name` has shown `Stalled=True` in any version written since this was called (every
/// status write is a watch event).
fn ever_stalled(s: &Scenario, name: &str) -> Arc<AtomicBool> {
    let stalled = Arc::new(AtomicBool::new(false));
    let seen = stalled.clone();
    // With a backoff: a watch that fails must not spin the test's runtime.
    let objects = watcher(
        s.api(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects();
    tokio::spawn(async move {
        let mut objects = std::pin::pin!(objects);
        while let Some(obj) = objects.next().await {
            match obj {
                Ok(obj) if cond(&obj, "Stalled").0 == "True" => seen.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(err) => eprintln!("ever_stalled: the watch failed: {err}"),
            }
        }
    });
    stalled
}

fn describes(s: &Scenario, id: &str) -> u64 {
    s.sim.calls().count_all(Action::DescribeInstances, id)
}

/// As `run` ships (the fleet observer reading every managed instance each resync): one page
/// leaves the instance out. The object is looked at, asks ECS for that instance alone, finds it
/// and stays Ready; it never shows Stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_missing_once_from_a_fleet_page_never_stalls_the_object() {
    run_flow(Backend::Local, async |s| {
        let id = "i-rowless1";
        s.add([instance(id, InstanceStatus::Running)]);
        s.controller_with(Config {
            batch: Some(BatchSettings::default()),
            resync: Duration::from_millis(500),
            ..s.fast_options()
        });
        s.create(&ecs_instance("web", id, PowerState::Running))
            .await;
        s.wait_for("web", is_ready).await;
        let stalled = ever_stalled(s, "web");

        s.sim.omit_from_describe(id, 1);
        s.wait_until("a page without the row", async || {
            s.sim.faults().omitted.is_empty()
        })
        .await;
        let after = describes(s, id);
        s.wait_until("two more readings", async || describes(s, id) >= after + 2)
            .await;
        tokio::time::sleep(QUIET).await;

        assert!(!stalled.load(Ordering::SeqCst), "the object showed Stalled");
        let web = s.get("web").await;
        assert!(is_ready(&web), "{:?}", web.status);
        assert_eq!(
            web.status.unwrap().instance_status,
            Some(InstanceStatus::Running)
        );
    })
    .await;
}

/// Without batching (one DescribeInstances per look): the look an annotation edit triggers
/// gets an answer without the row, asks again and finds the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_missing_once_from_a_direct_lookup_never_stalls_the_object() {
    run_flow(Backend::Local, async |s| {
        let id = "i-rowless2";
        s.add([instance(id, InstanceStatus::Running)]);
        s.controller();
        s.create(&ecs_instance("web", id, PowerState::Running))
            .await;
        s.wait_for("web", is_ready).await;
        let stalled = ever_stalled(s, "web");

        s.sim.omit_from_describe(id, 1);
        s.patch(
            "web",
            json!({"metadata": {"annotations": {"example.com/touched": "1"}}}),
        )
        .await;
        s.wait_until("an answer without the row", async || {
            s.sim.faults().omitted.is_empty()
        })
        .await;
        tokio::time::sleep(QUIET).await;

        assert!(!stalled.load(Ordering::SeqCst), "the object showed Stalled");
        assert!(is_ready(&s.get("web").await));
    })
    .await;
}
