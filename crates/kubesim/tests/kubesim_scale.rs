//! kubesim must not be the bottleneck at fleet scale: many objects created over HTTP, a
//! watcher's paged initial list, and a burst of updates delivered to the watch.
//!
//! Size defaults to 2,000 objects so the suite stays quick; measure the issue's 10,000 with
//! `KUBESIM_SCALE_OBJECTS=10000 cargo test --release --test kubesim_scale -- --nocapture`.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{CustomResource, CustomResourceExt};
use kubesim::{KubeSim, KubeSimOptions, Verb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.kubesim.dev",
    version = "v1",
    kind = "Widget",
    namespaced
)]
pub struct WidgetSpec {
    #[schemars(regex(pattern = r"^i-[a-z0-9]+$"))]
    pub instance_id: String,
    pub region: String,
    #[serde(default)]
    pub size: i32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_objects_list_and_watch_quickly() {
    let n: usize = std::env::var("KUBESIM_SCALE_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let sim = KubeSim::start(KubeSimOptions::default())
        .await
        .expect("start");
    let client = sim.client().expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("crd");
    await_condition(crds, Widget::crd_name(), conditions::is_crd_established())
        .await
        .expect("established");
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");

    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let w = Widget::new(
                    &format!("w{i:05}"),
                    WidgetSpec {
                        instance_id: format!("i-{i:08x}"),
                        region: "cn-hangzhou".into(),
                        size: 1,
                    },
                );
                api.create(&PostParams::default(), &w).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("creates");
    let create_time = started.elapsed();

    let (reader, writer) = reflector::store::<Widget>();
    let started = Instant::now();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let handle = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.expect("store ready");
    let list_time = started.elapsed();
    assert_eq!(reader.len(), n);
    let pages = sim.requests().count(Verb::List, "widgets");
    assert_eq!(pages as usize, n.div_ceil(500));

    // A burst of updates must all reach the watching store.
    let updates = n / 10;
    let started = Instant::now();
    futures::stream::iter(0..updates)
        .map(|i| {
            let api = api.clone();
            async move {
                api.patch(
                    &format!("w{i:05}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"size": 2}})),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("updates");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reader.state().iter().filter(|w| w.spec.size == 2).count() < updates {
        assert!(
            Instant::now() < deadline,
            "watch did not deliver all updates"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let update_time = started.elapsed();
    println!(
        "kubesim scale: {n} objects: create {:.0}/s ({create_time:.2?}); watcher initial list {list_time:.2?} ({pages} pages); {updates} updates seen by the watch in {update_time:.2?} ({:.0}/s)",
        n as f64 / create_time.as_secs_f64(),
        updates as f64 / update_time.as_secs_f64(),
    );
    handle.abort();
    sim.shutdown().await;
}
