//! kubesim, driven by kube-rs's real client: the API semantics a controller relies on.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, Status};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResource, CustomResourceExt, KubeSchema, Resource, ResourceExt};
use kubesim::{KubeSim, KubeSimOptions, RequestFilter, Verb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.kubesim.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
#[x_kube(validation = Rule::new("self.id == oldSelf.id").message("id is immutable"))]
pub struct WidgetSpec {
    #[schemars(regex(pattern = r"^w-[a-z0-9]+$"))]
    pub id: String,
    pub color: Color,
    #[schemars(range(min = 1, max = 10))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub enum Color {
    Red,
    Green,
    Blue,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

fn widget(name: &str, id: &str, color: Color) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            id: id.into(),
            color,
            size: None,
        },
    )
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = Widget::crd_name();
    crds.patch(
        name,
        &PatchParams::apply("kubesim-test").force(),
        &Patch::Apply(Widget::crd()),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("await condition");
}

async fn setup() -> (KubeSim, Client, Api<Widget>) {
    let sim = KubeSim::start(KubeSimOptions::default())
        .await
        .expect("start kubesim");
    let client = sim.client().expect("client");
    install_crd(&client).await;
    let api = Api::namespaced(client.clone(), "default");
    (sim, client, api)
}

fn api_error(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn dynamic(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<Widget>(&()),
    )
}

#[tokio::test]
async fn discovery_version_and_generated_kubeconfig_work_for_kube() {
    let (sim, client, _) = setup().await;
    let info = client.apiserver_version().await.expect("version");
    assert_eq!(info.major, "1");

    let discovery = kube::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let group = discovery
        .groups()
        .find(|g| g.name() == "test.kubesim.dev")
        .expect("CRD group discovered");
    let (ar, caps) = group.recommended_kind("Widget").expect("Widget kind");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));

    let aggregated = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    assert!(aggregated.has_group("coordination.k8s.io"));
    assert!(aggregated.has_group("test.kubesim.dev"));

    let dir = std::env::temp_dir().join(format!("kubesim-kubeconfig-{}", sim.addr().port()));
    sim.write_kubeconfig(&dir).expect("write kubeconfig");
    let kc = kube::config::Kubeconfig::read_from(&dir).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config from kubeconfig");
    assert_eq!(config.default_namespace, "default");
    let via_file = Client::try_from(config).expect("client from kubeconfig");
    let nss: Api<Namespace> = Api::all(via_file);
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
    let _ = std::fs::remove_file(&dir);
    sim.shutdown().await;
}

#[tokio::test]
async fn crud_generation_and_optimistic_concurrency() {
    let (sim, _client, api) = setup().await;
    let created = api
        .create(&PostParams::default(), &widget("a", "w-1", Color::Red))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let again = api
        .create(&PostParams::default(), &widget("a", "w-1", Color::Red))
        .await
        .expect_err("duplicate create");
    let s = api_error(again);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));

    // A spec change bumps generation; a label change does not.
    let mut changed = created.clone();
    changed.spec.color = Color::Blue;
    let v2 = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_eq!(v2.metadata.generation, Some(2));
    let v3 = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "x"}}})),
        )
        .await
        .expect("label patch");
    assert_eq!(v3.metadata.generation, Some(2));
    assert_ne!(v3.resource_version(), v2.resource_version());

    // Writing with the stale object is refused.
    let stale = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect_err("stale replace");
    let s = api_error(stale);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("the object has been modified"),
        "{}",
        s.message
    );

    // A no-op write does not bump resourceVersion (no watch event, no hot loop).
    let same = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "x"}}})),
        )
        .await
        .expect("no-op patch");
    assert_eq!(same.resource_version(), v3.resource_version());

    let gone = api
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(gone.is_right(), "deleted at once without finalizers");
    let s = api_error(api.get("a").await.expect_err("gone"));
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    sim.shutdown().await;
}

#[tokio::test]
async fn schema_violations_are_rejected_with_field_causes() {
    let (sim, client, _) = setup().await;
    let dynapi = dynamic(&client);
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kubesim.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "bad"},
        "spec": {"id": "nope", "color": "Purple", "size": 11},
    }))
    .expect("dynamic object");
    let s = api_error(
        dynapi
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("invalid"),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let causes = s.details.expect("details").causes;
    let find = |field: &str| {
        causes
            .iter()
            .find(|c| c.field == field)
            .unwrap_or_else(|| panic!("no cause for {field} in {causes:?}"))
    };
    assert_eq!(find("spec.color").reason, "FieldValueNotSupported");
    assert!(
        find("spec.color")
            .message
            .contains("\"Red\", \"Green\", \"Blue\"")
    );
    assert_eq!(find("spec.id").reason, "FieldValueInvalid");
    assert!(
        find("spec.id")
            .message
            .contains("should match '^w-[a-z0-9]+$'")
    );
    assert_eq!(find("spec.size").reason, "FieldValueInvalid");
    assert!(
        s.message
            .starts_with("Widget.test.kubesim.dev \"bad\" is invalid: ["),
        "{}",
        s.message
    );

    let missing: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
        "metadata": {"name": "missing"}, "spec": {"id": "w-1"},
    }))
    .expect("dynamic object");
    let s = api_error(
        dynapi
            .create(&PostParams::default(), &missing)
            .await
            .expect_err("required"),
    );
    let causes = s.details.expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].field.as_str()),
        ("FieldValueRequired", "spec.color")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_fields_are_pruned_unless_strict_validation_is_asked_for() {
    let (sim, client, api) = setup().await;
    let dynapi = dynamic(&client);
    let extra: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
        "metadata": {"name": "extra"},
        "spec": {"id": "w-1", "color": "Red", "turbo": true},
        "sidecar": {"x": 1},
    }))
    .expect("dynamic object");
    let stored = dynapi
        .create(&PostParams::default(), &extra)
        .await
        .expect("create");
    assert_eq!(stored.data["spec"], json!({"id": "w-1", "color": "Red"}));
    assert!(stored.data.get("sidecar").is_none());
    let typed = api.get("extra").await.expect("typed get");
    assert_eq!(typed.spec.id, "w-1");

    let strict = PatchParams::apply("strict-mgr").validation_strict();
    let patch =
        json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget", "spec": {"turbo": true}});
    let s = api_error(
        api.patch("extra", &strict, &Patch::Apply(patch))
            .await
            .expect_err("strict"),
    );
    assert_eq!(s.code, 400);
    assert!(
        s.message.contains("unknown field \"spec.turbo\""),
        "{}",
        s.message
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_writes() {
    let (sim, _client, api) = setup().await;
    let mut w = widget("s", "w-1", Color::Red);
    w.status = Some(WidgetStatus {
        observed_generation: Some(99),
        phase: Some("Sneaky".into()),
    });
    let created = api
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    assert_eq!(created.status, None, "status is dropped on create");

    let mut with_status = created.clone();
    with_status.status = Some(WidgetStatus {
        observed_generation: Some(1),
        phase: Some("Ready".into()),
    });
    with_status.spec.color = Color::Green; // ignored on /status
    let after = api
        .replace_status("s", &PostParams::default(), &with_status)
        .await
        .expect("replace status");
    assert_eq!(
        after.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
    assert_eq!(after.spec.color, Color::Red);
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep generation"
    );

    let mut main = after.clone();
    main.status = None; // ignored on the main resource
    main.spec.size = Some(3);
    let after = api
        .replace("s", &PostParams::default(), &main)
        .await
        .expect("replace");
    assert_eq!(
        after.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
    assert_eq!(after.spec.size, Some(3));
    assert_eq!(after.metadata.generation, Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn cel_transition_rule_keeps_id_immutable() {
    let (sim, _client, api) = setup().await;
    api.create(&PostParams::default(), &widget("c", "w-1", Color::Red))
        .await
        .expect("create");
    let s = api_error(
        api.patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"id": "w-2"}})),
        )
        .await
        .expect_err("immutable"),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let causes = s.details.expect("details").causes;
    assert_eq!(causes[0].field, "spec");
    assert!(causes[0].message.contains("id is immutable"), "{causes:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn merge_json_and_server_side_apply_patches() {
    let (sim, _client, api) = setup().await;
    // Apply creates a missing object.
    let applied = api
        .patch(
            "p",
            &PatchParams::apply("owner"),
            &Patch::Apply(json!({
                "apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
                "metadata": {"name": "p", "labels": {"a": "1"}},
                "spec": {"id": "w-1", "color": "Red", "size": 2},
            })),
        )
        .await
        .expect("apply create");
    assert_eq!(applied.spec.size, Some(2));

    // JSON patch with a test op, as kube's finalizer helper sends.
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
    ]))
    .expect("json patch");
    let p = api
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(jp))
        .await
        .expect("json patch");
    assert_eq!(p.labels().get("b").map(String::as_str), Some("2"));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/a", "value": "0"}]))
            .expect("json patch");
    let s = api_error(
        api.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .expect_err("failed test op"),
    );
    assert_eq!(s.code, 422);

    // Status via apply with force, as controllers do.
    let status = json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
        "status": {"phase": "Ready", "observedGeneration": 1}});
    let s1 = api
        .patch_status(
            "p",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("apply status");
    assert_eq!(
        s1.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
    let mf = s1.metadata.managed_fields.clone().unwrap_or_default();
    assert!(mf.iter().any(|m| m.manager.as_deref() == Some("ctrl")
        && m.subresource.as_deref() == Some("status")
        && m.operation.as_deref() == Some("Apply")));
    // Re-applying the same status is a no-op.
    let s2 = api
        .patch_status(
            "p",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("apply status again");
    assert_eq!(s1.resource_version(), s2.resource_version());

    // Another manager changing an owned field conflicts unless it forces.
    let other = json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget", "spec": {"size": 5}});
    let s = api_error(
        api.patch("p", &PatchParams::apply("intruder"), &Patch::Apply(&other))
            .await
            .expect_err("conflict"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("conflict with \"owner\""),
        "{}",
        s.message
    );
    let forced = api
        .patch(
            "p",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.spec.size, Some(5));

    // The owner dropping a field it alone owns removes it.
    let fewer = api
        .patch(
            "p",
            &PatchParams::apply("owner"),
            &Patch::Apply(
                json!({"apiVersion": "test.kubesim.dev/v1", "kind": "Widget",
                "spec": {"id": "w-1", "color": "Red"}}),
            ),
        )
        .await
        .expect("owner re-apply");
    assert_eq!(
        fewer.labels().get("a"),
        None,
        "label a was only owned by owner"
    );
    assert_eq!(fewer.spec.size, Some(5), "size is now owned by intruder");

    // Merge patch with null deletes.
    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"b": null}}})),
        )
        .await
        .expect("merge patch");
    assert!(merged.labels().get("b").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn list_paging_and_selectors() {
    let (sim, _client, api) = setup().await;
    for i in 0..25 {
        let mut w = widget(&format!("w{i:02}"), "w-1", Color::Red);
        let tier = ["web", "db", "cache"][i % 3];
        w.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        if i % 5 == 0 {
            w.labels_mut().insert("canary".into(), "true".into());
        }
        api.create(&PostParams::default(), &w)
            .await
            .expect("create");
    }
    let mut names = Vec::new();
    let mut pages = 0;
    let mut lp = ListParams::default().limit(10);
    loop {
        let page = api.list(&lp).await.expect("page");
        pages += 1;
        names.extend(page.items.iter().map(|w| w.name_any()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "ordered by name, no repeats"
    );

    let count = |sel: &'static str| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(sel))
                .await
                .expect("list")
                .items
                .len()
        }
    };
    assert_eq!(count("tier=web").await, 9);
    assert_eq!(count("tier in (web,db)").await, 17);
    assert_eq!(count("tier notin (web,db)").await, 8);
    assert_eq!(count("canary").await, 5);
    assert_eq!(count("!canary,tier=db").await, 7);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=w07"))
        .await
        .expect("field selector");
    assert_eq!(by_name.items.len(), 1);
    let s = api_error(
        api.list(&ListParams::default().fields("spec.id=w-1"))
            .await
            .expect_err("unsupported field"),
    );
    assert_eq!(s.code, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn finalizer_helper_blocks_deletion_until_cleanup() {
    let (sim, _client, api) = setup().await;
    api.create(&PostParams::default(), &widget("f", "w-1", Color::Red))
        .await
        .expect("create");
    let name = "widgets.test.kubesim.dev/cleanup";
    let cleaned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = |obj: Widget| {
        let api = api.clone();
        let cleaned = cleaned.clone();
        async move {
            finalizer(&api, name, Arc::new(obj), |ev| async move {
                if let Finalizer::Cleanup(_) = ev {
                    cleaned.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(Action::await_change())
            })
            .await
        }
    };
    run(api.get("f").await.expect("get"))
        .await
        .expect("add finalizer");
    assert_eq!(
        api.get("f").await.expect("get").finalizers(),
        [name.to_string()]
    );

    let pending = api
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = pending
        .left()
        .expect("still present while finalizer pending");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.generation,
        Some(2),
        "deletion bumps generation"
    );
    // No new finalizers once deleting.
    let s = api_error(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [name, "other/x"]}})),
        )
        .await
        .expect_err("adding a finalizer while deleting"),
    );
    assert_eq!(s.code, 422);

    run(api.get("f").await.expect("get"))
        .await
        .expect("cleanup");
    assert!(cleaned.load(std::sync::atomic::Ordering::SeqCst));
    let s = api_error(api.get("f").await.expect_err("gone after last finalizer"));
    assert_eq!(s.code, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn recorder_publishes_events_and_series() {
    let (sim, client, api) = setup().await;
    let w = api
        .create(&PostParams::default(), &widget("e", "w-1", Color::Red))
        .await
        .expect("create");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kubesim-test".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Started".into(),
        note: Some("started the widget".into()),
        action: "Start".into(),
        secondary: None,
    };
    recorder
        .publish(&ev, &w.object_ref(&()))
        .await
        .expect("publish");
    recorder
        .publish(&ev, &w.object_ref(&()))
        .await
        .expect("publish again (series)");
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let list = events
        .list(&ListParams::default().fields("regarding.name=e"))
        .await
        .expect("list events");
    assert_eq!(
        list.items.len(),
        1,
        "the repeat became a series, not a new event"
    );
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Started"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
    // One store behind both APIs: `kubectl describe` and `kubectl events --for` read core v1
    // with involvedObject selectors and find what the Recorder wrote through events.k8s.io.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let seen = core
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name=e,involvedObject.kind=Widget,involvedObject.uid={}",
            w.uid().unwrap()
        )))
        .await
        .expect("list core events");
    assert_eq!(seen.items.len(), 1);
    let c = &seen.items[0];
    assert_eq!(c.metadata.name, e.metadata.name);
    assert_eq!(c.message.as_deref(), Some("started the widget"));
    assert_eq!(c.reporting_component.as_deref(), Some("kubesim-test"));
    assert_eq!(c.involved_object.name.as_deref(), Some("e"));
    assert_eq!(c.series.as_ref().and_then(|s| s.count), Some(2));
    assert_eq!(sim.requests().count(Verb::Create, "events"), 1);
    assert_eq!(sim.requests().count(Verb::Patch, "events"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn lease_replace_with_stale_version_conflicts() {
    let sim = KubeSim::start(KubeSimOptions::default())
        .await
        .expect("start");
    let leases: Api<Lease> = Api::namespaced(sim.client().expect("client"), "default");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    let mut by_b = created.clone();
    by_b.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let taken = leases
        .replace("leader", &PostParams::default(), &by_b)
        .await
        .expect("b takes over");
    assert_eq!(
        taken.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );
    let mut by_c = created;
    by_c.spec.as_mut().expect("spec").holder_identity = Some("c".into());
    let s = api_error(
        leases
            .replace("leader", &PostParams::default(), &by_c)
            .await
            .expect_err("stale"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    sim.shutdown().await;
}

#[tokio::test]
async fn namespaces_must_exist_and_secrets_round_trip() {
    let sim = KubeSim::start(KubeSimOptions::default())
        .await
        .expect("start");
    let client = sim.client().expect("client");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("creds".into()),
            ..Default::default()
        },
        string_data: None,
        data: Some(
            [(
                "key".to_string(),
                k8s_openapi::ByteString(b"value".to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let in_team: Api<Secret> = Api::namespaced(client.clone(), "team");
    let s = api_error(
        in_team
            .create(&PostParams::default(), &secret)
            .await
            .expect_err("no namespace"),
    );
    assert_eq!(s.code, 404);
    assert!(
        s.message.contains("namespaces \"team\" not found"),
        "{}",
        s.message
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("team".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    in_team
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let got = in_team.get("creds").await.expect("get secret");
    assert_eq!(got.data.expect("data")["key"].0, b"value");
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_faults_500_429_and_delay() {
    let (sim, _client, api) = setup().await;
    api.create(&PostParams::default(), &widget("x", "w-1", Color::Red))
        .await
        .expect("create");
    sim.faults().reset_counts();

    sim.faults()
        .fail_next(1, RequestFilter::any().verb(Verb::Get).resource("widgets"));
    let s = api_error(api.get("x").await.expect_err("injected 500"));
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    api.get("x").await.expect("only one failure was injected");

    // kube's client retries 429 on its own, so two throttled answers still end in success.
    sim.faults()
        .throttle_next(2, 0, RequestFilter::any().verb(Verb::Get));
    api.get("x").await.expect("retried past 429s");
    assert_eq!(sim.requests().count(Verb::Get, "widgets"), 2 + 3);

    sim.faults().delay(
        Duration::from_millis(300),
        RequestFilter::any().resource("widgets"),
    );
    let started = Instant::now();
    api.get("x").await.expect("slow get");
    // A floor only: a loaded machine makes the answer later, never sooner.
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Cleared, even an hour's delay no longer applies (that a cleared delay is not slept at
    // all is the unit test of `Faults`).
    sim.faults().delay(
        Duration::from_secs(3600),
        RequestFilter::any().resource("widgets"),
    );
    sim.faults().clear();
    tokio::time::timeout(Duration::from_secs(60), api.get("x"))
        .await
        .expect("the cleared delay is not applied")
        .expect("fast get");
    sim.shutdown().await;
}

/// One replica's requests never answer (a stalled connection), the other's are served; once
/// cleared, the hung request is served late.
#[tokio::test]
async fn a_hang_holds_one_clients_requests_until_cleared() {
    let (sim, _client, api) = setup().await;
    api.create(&PostParams::default(), &widget("x", "w-1", Color::Red))
        .await
        .expect("create");
    let mut config = sim.config().expect("config");
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static("controller/replica-a"),
    ));
    let replica_a: Api<Widget> =
        Api::namespaced(Client::try_from(config).expect("client"), "default");
    sim.faults().hang(
        RequestFilter::any()
            .resource("widgets")
            .user_agent("replica-a"),
    );

    api.get("x").await.expect("other clients are served");
    let hung = tokio::spawn(async move { replica_a.get("x").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!hung.is_finished(), "a hung request has no answer");
    sim.faults().clear();
    let answer = tokio::time::timeout(Duration::from_secs(10), hung)
        .await
        .expect("served once cleared")
        .unwrap();
    assert_eq!(answer.expect("get").name_any(), "x");
    sim.shutdown().await;
}
