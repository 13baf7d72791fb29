//! kubesim under `kube::runtime`: watchers that survive dropped watches and 410s, streaming
//! lists, and a real `Controller` reconciling a custom resource end to end.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use kubesim::{KubeSim, KubeSimOptions, RequestFilter, Verb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.kubesim.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub id: String,
    #[serde(default)]
    pub size: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

async fn setup() -> (KubeSim, Client, Api<Widget>) {
    let sim = KubeSim::start(KubeSimOptions::default())
        .await
        .expect("start kubesim");
    let client = sim.client().expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("create CRD");
    tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(crds, Widget::crd_name(), conditions::is_crd_established()),
    )
    .await
    .expect("established in time")
    .expect("await");
    let api = Api::namespaced(client.clone(), "default");
    (sim, client, api)
}

async fn create(api: &Api<Widget>, name: &str) {
    let w = Widget::new(
        name,
        WidgetSpec {
            id: format!("id-{name}"),
            size: 1,
        },
    );
    api.create(&PostParams::default(), &w)
        .await
        .expect("create");
}

/// Runs a watcher in the background and reports what it sees as short strings.
fn observe(api: Api<Widget>, config: watcher::Config) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(item) = stream.next().await {
            let line = match item {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(w)) => format!("initapply:{}", w.name_any()),
                Ok(watcher::Event::InitDone) => "initdone".to_string(),
                Ok(watcher::Event::Apply(w)) => format!("apply:{}", w.name_any()),
                Ok(watcher::Event::Delete(w)) => format!("delete:{}", w.name_any()),
                Err(watcher::Error::WatchError(s)) => format!("error:{}", s.code),
                Err(e) => format!("error:{e}"),
            };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn expect_seen(rx: &mut mpsc::UnboundedReceiver<String>, want: &str) {
    let deadline = Duration::from_secs(10);
    let found = tokio::time::timeout(deadline, async {
        while let Some(line) = rx.recv().await {
            if line == want {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "watcher never saw {want}");
}

#[tokio::test]
async fn watcher_sees_changes_and_resumes_after_dropped_watches_without_relisting() {
    let (sim, _client, api) = setup().await;
    let mut seen = observe(api.clone(), watcher::Config::default());
    expect_seen(&mut seen, "initdone").await;
    create(&api, "a").await;
    expect_seen(&mut seen, "apply:a").await;

    sim.faults().reset_counts();
    sim.faults().drop_watches();
    create(&api, "b").await;
    expect_seen(&mut seen, "apply:b").await;
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    expect_seen(&mut seen, "delete:a").await;
    let counts = sim.requests();
    assert!(counts.count(Verb::Watch, "widgets") >= 1, "{counts}");
    assert_eq!(
        counts.count(Verb::List, "widgets"),
        0,
        "resumed from resourceVersion:\n{counts}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn watcher_relists_after_410_gone() {
    let (sim, _client, api) = setup().await;
    let mut seen = observe(api.clone(), watcher::Config::default());
    expect_seen(&mut seen, "initdone").await;

    // Hold the re-watch long enough for a change to happen and be compacted away.
    sim.faults().delay(
        Duration::from_millis(400),
        RequestFilter::any().verb(Verb::Watch),
    );
    sim.faults().drop_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    create(&api, "c").await;
    sim.faults().compact_history();
    expect_seen(&mut seen, "error:410").await;
    sim.faults().clear();
    expect_seen(&mut seen, "initapply:c").await;
    expect_seen(&mut seen, "initdone").await;
    create(&api, "d").await;
    expect_seen(&mut seen, "apply:d").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_and_the_end_bookmark() {
    let (sim, _client, api) = setup().await;
    create(&api, "early").await;
    sim.faults().reset_counts();
    let mut seen = observe(api.clone(), watcher::Config::default().streaming_lists());
    expect_seen(&mut seen, "initapply:early").await;
    expect_seen(&mut seen, "initdone").await;
    create(&api, "late").await;
    expect_seen(&mut seen, "apply:late").await;
    assert_eq!(sim.requests().count(Verb::List, "widgets"), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn label_selected_watch_sees_objects_leave_the_selection_as_deletes() {
    let (sim, _client, api) = setup().await;
    let mut seen = observe(api.clone(), watcher::Config::default().labels("tier=web"));
    expect_seen(&mut seen, "initdone").await;
    create(&api, "x").await;
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
    )
    .await
    .expect("label");
    expect_seen(&mut seen, "apply:x").await;
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "db"}}})),
    )
    .await
    .expect("relabel");
    expect_seen(&mut seen, "delete:x").await;
    sim.shutdown().await;
}

/// A metadata-only watch of Namespaces narrowed by a label selector (what a controller keeps of
/// the namespaces a policy admits): labelled namespaces come and go as their labels change, and
/// a selector the server cannot parse is a 400 naming it.
#[tokio::test]
async fn namespace_metadata_watch_follows_label_changes() {
    let (sim, client, _) = setup().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labelled = |name: &str, shared: &str| -> Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"shared": shared}},
        }))
        .expect("a namespace")
    };
    namespaces
        .create(&PostParams::default(), &labelled("team-a", "yes"))
        .await
        .expect("create team-a");
    namespaces
        .create(&PostParams::default(), &labelled("team-b", "no"))
        .await
        .expect("create team-b");
    let (tx, mut seen) = mpsc::unbounded_channel();
    let config = watcher::Config::default().labels("shared=yes");
    let metadata: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut stream = watcher(metadata, config).default_backoff().boxed();
        while let Some(Ok(event)) = stream.next().await {
            let line = match event {
                watcher::Event::InitApply(ns) => format!("initapply:{}", ns.name_any()),
                watcher::Event::InitDone => "initdone".to_string(),
                watcher::Event::Apply(ns) => format!("apply:{}", ns.name_any()),
                watcher::Event::Delete(ns) => format!("delete:{}", ns.name_any()),
                watcher::Event::Init => continue,
            };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    expect_seen(&mut seen, "initapply:team-a").await;
    expect_seen(&mut seen, "initdone").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let relabel = async |name: &str, shared: &str| {
        namespaces
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"shared": shared}}})),
            )
            .await
            .expect("relabel");
    };
    relabel("team-b", "yes").await;
    expect_seen(&mut seen, "apply:team-b").await;
    relabel("team-a", "no").await;
    expect_seen(&mut seen, "delete:team-a").await;

    let bad = namespaces
        .list_metadata(&kube::api::ListParams::default().labels("shared in (yes"))
        .await
        .expect_err("an unparsable selector");
    let kube::Error::Api(status) = bad else {
        panic!("not an API error: {bad}");
    };
    assert_eq!(status.code, 400, "{status:?}");

    // Without RBAC of its own, kubesim answers 403 on request, worded as the API server does.
    sim.faults().forbid_next(
        1,
        RequestFilter::any().verb(Verb::List).resource("namespaces"),
    );
    let forbidden = namespaces
        .list_metadata(&kube::api::ListParams::default())
        .await
        .expect_err("forbidden once");
    let kube::Error::Api(status) = forbidden else {
        panic!("not an API error: {forbidden}");
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status
            .message
            .contains("cannot list resource \"namespaces\" in API group \"\" at the cluster scope"),
        "{}",
        status.message
    );
    namespaces
        .list_metadata(&kube::api::ListParams::default())
        .await
        .expect("only one request was forbidden");
    sim.shutdown().await;
}

struct Ctx {
    client: Client,
    reconciles: AtomicUsize,
}

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = w.namespace().unwrap_or_default();
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    let status = json!({
        "apiVersion": "test.kubesim.dev/v1",
        "kind": "Widget",
        "status": {"observedGeneration": w.metadata.generation, "phase": "Ready"},
    });
    api.patch_status(
        &w.name_any(),
        &PatchParams::apply("widget-ctrl").force(),
        &Patch::Apply(status),
    )
    .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &kube::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

async fn wait_converged(api: &Api<Widget>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = api.list(&Default::default()).await.expect("list");
        let done = list
            .items
            .iter()
            .filter(|w| {
                w.status.as_ref().and_then(|s| s.observed_generation) == w.metadata.generation
                    && w.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
            })
            .count();
        if done == n && list.items.len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done}/{n} converged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn controller_reconciles_end_to_end_through_faults_and_goes_quiet() {
    let (sim, client, api) = setup().await;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    // Status writes fail a few times and watches drop mid-way: nothing is lost.
    sim.faults().fail_next(
        3,
        RequestFilter::any()
            .verb(Verb::Patch)
            .resource("widgets/status"),
    );
    for i in 0..30 {
        create(&api, &format!("w{i:02}")).await;
        if i == 15 {
            sim.faults().drop_watches();
        }
    }
    wait_converged(&api, 30).await;

    // A spec change is reconciled again (observedGeneration follows generation).
    api.patch(
        "w07",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 9}})),
    )
    .await
    .expect("spec change");
    wait_converged(&api, 30).await;
    let w = api.get("w07").await.expect("get");
    assert_eq!(w.status.and_then(|s| s.observed_generation), Some(2));

    // Converged: re-applying an identical status is a no-op, so no events, no hot loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ctx.reconciles.load(Ordering::SeqCst);
    sim.faults().reset_counts();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ctx.reconciles.load(Ordering::SeqCst),
        before,
        "reconciles kept coming"
    );
    assert_eq!(sim.requests().writes(), 0, "{}", sim.requests());
    handle.abort();
    sim.shutdown().await;
}
