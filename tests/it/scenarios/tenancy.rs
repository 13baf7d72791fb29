//! The controller as a service shared by many teams (issue 11 items 2 and 3): one owner per ECS
//! instance, the namespaces allowed the controller's own credentials, and the tag through which
//! an instance's owner consents to its power being changed. These need several namespaces and a
//! controller watching all of them, so they run on the in-process API server only.

use std::collections::BTreeMap;
use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::{EcsInstance, PowerState, SecretReference};
use ecs_power_controller::controller::Config;
use ecs_sim::{Action, KeySpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubesim::{RequestFilter, Verb};
use serde_json::json;

use crate::support::scenario::*;

/// How long a flow watches for calls that must not come (they would come at once).
const QUIET: Duration = Duration::from_millis(500);

/// The tag the tag-guard scenarios use.
const CLAIM_TAG: &str = "ecs.powerctl.io/namespaces";

/// The label the shared-credentials scenarios select namespaces by.
const SHARED: &str = "ecs.powerctl.io/shared-credentials";

/// A controller watching every namespace, with the scenario's quick timings.
fn cluster_wide(s: &Scenario) -> Config {
    Config {
        namespace: None,
        ..s.fast_options()
    }
}

async fn create_namespace(s: &Scenario, name: &str, labels: serde_json::Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(s.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

async fn label_namespace(s: &Scenario, name: &str, labels: serde_json::Value) {
    Api::<Namespace>::all(s.client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("label namespace");
}

/// A Secret with an AccessKey in `namespace`.
async fn create_secret(s: &Scenario, namespace: &str, name: &str, id: &str, secret: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"accessKeyId": id, "accessKeySecret": secret},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}

fn objects(s: &Scenario, namespace: &str) -> Api<EcsInstance> {
    Api::namespaced(s.client.clone(), namespace)
}

async fn create_in(s: &Scenario, namespace: &str, obj: &EcsInstance) {
    objects(s, namespace)
        .create(&PostParams::default(), obj)
        .await
        .expect("create EcsInstance");
}

/// Waits until `namespace/name` has a condition with this status and reason.
async fn wait_for_reason_in(
    s: &Scenario,
    namespace: &str,
    name: &str,
    (type_, status, reason): (&str, &str, &str),
) -> EcsInstance {
    let api = objects(s, namespace);
    let what = format!("{namespace}/{name}: {type_}={status} ({reason})");
    s.wait_until(&what, async || {
        api.get(name).await.is_ok_and(|o| {
            cond(&o, type_) == (status.to_string(), reason.to_string())
                && o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
        })
    })
    .await;
    api.get(name).await.unwrap()
}

async fn wait_ready_in(s: &Scenario, namespace: &str, name: &str) -> EcsInstance {
    let api = objects(s, namespace);
    s.wait_until(&format!("{namespace}/{name}: Ready"), async || {
        api.get(name).await.is_ok_and(|o| is_ready(&o))
    })
    .await;
    api.get(name).await.unwrap()
}

/// Every request ECS received that named `id`, whatever the action or outcome.
fn requests_naming(s: &Scenario, id: &str) -> usize {
    s.sim
        .calls()
        .log()
        .iter()
        .filter(|c| c.instances.iter().any(|(i, _)| i == id))
        .count()
}

/// Every request ECS received signed with the AccessKey `key_id`.
fn requests_signed_by(s: &Scenario, key_id: &str) -> usize {
    s.sim
        .calls()
        .log()
        .iter()
        .filter(|c| c.access_key_id.as_deref() == Some(key_id))
        .count()
}

/// Two teams name the same VM, one wanting it Running, the other Stopped. The older object owns
/// it; the other is Stalled naming the owner and makes no ECS request at all (its requests
/// would be signed with its own key). Deleting the owner hands the VM over at once (the resync
/// is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objects_naming_one_instance_do_not_fight_and_the_next_takes_over() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-shared1", InstanceStatus::Stopped)]);
        s.sim.add_key(KeySpec {
            id: "LTAIteamb".into(),
            secret: "team-b-secret".into(),
            security_token: None,
        });
        create_namespace(s, "team-a", json!({})).await;
        create_namespace(s, "team-b", json!({})).await;
        create_secret(s, "team-b", "creds", "LTAIteamb", "team-b-secret").await;
        s.controller_with(cluster_wide(s));

        create_in(
            s,
            "team-a",
            &ecs_instance("db", "i-shared1", PowerState::Running),
        )
        .await;
        wait_ready_in(s, "team-a", "db").await;
        let mut copy = ecs_instance("db", "i-shared1", PowerState::Stopped);
        copy.spec.credentials_secret_ref = Some(SecretReference {
            name: "creds".into(),
        });
        create_in(s, "team-b", &copy).await;

        let stalled =
            wait_for_reason_in(s, "team-b", "db", ("Stalled", "True", "DuplicateInstance")).await;
        assert_eq!(
            cond(&stalled, "Ready"),
            ("False".into(), "DuplicateInstance".into())
        );
        let message = condition(&stalled, "Stalled").unwrap().message;
        assert!(message.contains("team-a/db"), "{message}");
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            requests_signed_by(s, "LTAIteamb"),
            0,
            "the duplicate made a request"
        );
        assert_eq!(s.sim.status("i-shared1"), Some(InstanceStatus::Running));
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-shared1"),
            0
        );
        assert!(is_ready(&objects(s, "team-a").get("db").await.unwrap()));

        // The owner goes: team-b's object owns the VM now and stops it, with its own key.
        objects(s, "team-a")
            .delete("db", &DeleteParams::default())
            .await
            .expect("delete the owner");
        wait_ready_in(s, "team-b", "db").await;
        assert_eq!(s.sim.status("i-shared1"), Some(InstanceStatus::Stopped));
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-shared1"),
            1
        );
        assert!(requests_signed_by(s, "LTAIteamb") > 0);
    })
    .await;
}

/// With `--shared-credentials-selector`, an object in a namespace the selector does not match
/// and without a Secret of its own is Stalled without any ECS request; one with a Secret in its
/// namespace works as usual. Labelling the namespace lets it in, removing the label shuts
/// another out, both without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_selected_namespaces_use_the_controllers_credentials_and_labels_take_effect_live() {
    run_flow(Backend::Local, async |s| {
        s.add([
            instance("i-teama1", InstanceStatus::Stopped),
            instance("i-teamb1", InstanceStatus::Stopped),
            instance("i-teamc1", InstanceStatus::Stopped),
        ]);
        create_namespace(s, "team-a", json!({ SHARED: "allowed" })).await;
        create_namespace(s, "team-b", json!({})).await;
        create_namespace(s, "team-c", json!({})).await;
        let (id, secret) = s.sim.access_key();
        create_secret(s, "team-c", "creds", &id, &secret).await;
        let selector = format!("{SHARED}=allowed");
        s.controller_with(Config {
            shared_credentials_selector: Some(selector.clone()),
            ..cluster_wide(s)
        });

        create_in(
            s,
            "team-a",
            &ecs_instance("web", "i-teama1", PowerState::Running),
        )
        .await;
        create_in(
            s,
            "team-b",
            &ecs_instance("web", "i-teamb1", PowerState::Running),
        )
        .await;
        let mut own = ecs_instance("web", "i-teamc1", PowerState::Running);
        own.spec.credentials_secret_ref = Some(SecretReference {
            name: "creds".into(),
        });
        create_in(s, "team-c", &own).await;

        wait_ready_in(s, "team-a", "web").await;
        wait_ready_in(s, "team-c", "web").await;
        let refused = wait_for_reason_in(
            s,
            "team-b",
            "web",
            ("Stalled", "True", "CredentialsNotPermitted"),
        )
        .await;
        let message = condition(&refused, "Stalled").unwrap().message;
        assert!(message.contains(&selector), "{message}");
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            requests_naming(s, "i-teamb1"),
            0,
            "a request for a refused namespace"
        );
        assert_eq!(s.sim.status("i-teamb1"), Some(InstanceStatus::Stopped));

        // The administrator admits team-b and withdraws team-a.
        label_namespace(s, "team-b", json!({ SHARED: "allowed" })).await;
        wait_ready_in(s, "team-b", "web").await;
        assert_eq!(
            s.sim.calls().count_all(Action::StartInstance, "i-teamb1"),
            1
        );
        label_namespace(s, "team-a", json!({ SHARED: null })).await;
        wait_for_reason_in(
            s,
            "team-a",
            "web",
            ("Stalled", "True", "CredentialsNotPermitted"),
        )
        .await;
    })
    .await;
}

/// The controller starts with objects already waiting in several namespaces the selector
/// admits, and the API server is slow to list those namespaces: every object waits for the
/// list, and every one is judged once it is in (none waits for ever on a signal only one waiter
/// hears: kube's `Store::wait_until_ready` wakes only the last task to poll it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_waiting_for_a_slow_namespace_list_are_all_judged_once_it_is_in() {
    run_flow(Backend::Local, async |s| {
        let teams = ["team-a", "team-b", "team-c", "team-d"];
        for (i, team) in teams.iter().enumerate() {
            let id = format!("i-slowns{i}");
            s.add([instance(&id, InstanceStatus::Stopped)]);
            create_namespace(s, team, json!({ SHARED: "allowed" })).await;
            create_in(s, team, &ecs_instance("web", &id, PowerState::Running)).await;
        }
        s.kube().faults().delay(
            Duration::from_secs(2),
            RequestFilter::any().verb(Verb::List).resource("namespaces"),
        );
        s.controller_with(Config {
            shared_credentials_selector: Some(format!("{SHARED}=allowed")),
            ..cluster_wide(s)
        });
        for team in teams {
            wait_ready_in(s, team, "web").await;
        }
    })
    .await;
}

/// As `run` ships (batching on, so the fleet observer reads the cloud fleet by fleet, every
/// resync): a namespace that loses its label is read for no more, periodic pages included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fleet_observer_a_namespace_that_loses_its_label_is_read_for_no_more() {
    use ecs_power_controller::controller::BatchSettings;
    run_flow(Backend::Local, async |s| {
        s.add([
            instance("i-teama1", InstanceStatus::Running),
            instance("i-teama2", InstanceStatus::Running),
        ]);
        create_namespace(s, "team-a", json!({ SHARED: "allowed" })).await;
        create_namespace(s, "team-b", json!({ SHARED: "allowed" })).await;
        let resync = Duration::from_millis(500);
        s.controller_with(Config {
            shared_credentials_selector: Some(format!("{SHARED}=allowed")),
            batch: Some(BatchSettings::default()),
            resync,
            ..cluster_wide(s)
        });
        for (ns, id) in [("team-a", "i-teama1"), ("team-b", "i-teama2")] {
            create_in(s, ns, &ecs_instance("web", id, PowerState::Running)).await;
            wait_ready_in(s, ns, "web").await;
        }

        label_namespace(s, "team-a", json!({ SHARED: null })).await;
        wait_for_reason_in(
            s,
            "team-a",
            "web",
            ("Stalled", "True", "CredentialsNotPermitted"),
        )
        .await;
        // A page already on its way when the refusal was recorded has landed by now.
        tokio::time::sleep(QUIET).await;
        let (refused, admitted) = (
            requests_naming(s, "i-teama1"),
            requests_naming(s, "i-teama2"),
        );
        // Several resyncs: the fleet observer keeps reading team-b's instance, not team-a's.
        s.wait_until("team-b's instance read again twice", async || {
            requests_naming(s, "i-teama2") >= admitted + 2
        })
        .await;
        assert_eq!(
            requests_naming(s, "i-teama1"),
            refused,
            "the refused namespace's instance was read again"
        );
    })
    .await;
}

/// A selector the API server cannot parse stops `run` at once, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_shared_credentials_selector_stops_the_controller_naming_the_flag() {
    run_flow(Backend::Local, async |s| {
        let running = s
            .spawn_controller(Config {
                shared_credentials_selector: Some("team in (a".into()),
                ..cluster_wide(s)
            })
            .expect("spawned");
        s.wait_until("the controller stops", async || running.is_finished())
            .await;
        let err = running.stop().await.expect_err("a start-up error");
        assert!(
            err.to_string().contains("--shared-credentials-selector"),
            "{err}"
        );
    })
    .await;
}

/// A controller whose service account may not list Namespaces (a single-namespace install's
/// Role) stops at start-up, saying what the selector needs and which install grants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_selector_without_the_right_to_list_namespaces_stops_the_controller_with_the_fix() {
    run_flow(Backend::Local, async |s| {
        s.kube().faults().forbid_next(
            1,
            RequestFilter::any().verb(Verb::List).resource("namespaces"),
        );
        let running = s
            .spawn_controller(Config {
                shared_credentials_selector: Some(format!("{SHARED}=allowed")),
                ..cluster_wide(s)
            })
            .expect("spawned");
        s.wait_until("the controller stops", async || running.is_finished())
            .await;
        let err = running
            .stop()
            .await
            .expect_err("a start-up error")
            .to_string();
        assert!(
            err.contains("--shared-credentials-selector") && err.contains("multi-tenant"),
            "{err}"
        );
    })
    .await;
}

/// With `--instance-tag-guard`, an instance whose tag does not list the object's namespace is
/// read (DescribeInstances) but never stopped; once its owner tags it for the namespace, the
/// controller stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_guard_only_reads_an_unclaimed_instance_and_acts_once_the_tag_claims_it() {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-tagged1", InstanceStatus::Running).tag(CLAIM_TAG, "team-x")]);
        s.controller_with(Config {
            instance_tag_guard: Some(CLAIM_TAG.into()),
            // The guard looks again at most every resync (and every minute): quick here.
            resync: Duration::from_secs(1),
            ..s.fast_options()
        });
        s.create(&ecs_instance("batch", "i-tagged1", PowerState::Stopped))
            .await;

        let refused = s
            .wait_for_reason("batch", "Stalled", "True", "InstanceNotClaimed")
            .await;
        let message = condition(&refused, "Stalled").unwrap().message;
        assert!(
            message.contains(CLAIM_TAG) && message.contains(&s.namespace),
            "{message}"
        );
        assert_eq!(
            refused.status.as_ref().unwrap().instance_status,
            Some(InstanceStatus::Running),
            "the instance is read"
        );
        assert!(
            s.sim
                .calls()
                .count_all(Action::DescribeInstances, "i-tagged1")
                > 0
        );
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-tagged1"),
            0
        );

        // The instance's owner claims it for this namespace (among others).
        let claim = format!("team-x, {}", s.namespace);
        s.sim
            .set_tags(
                "i-tagged1",
                BTreeMap::from([(CLAIM_TAG.to_string(), claim)]),
            )
            .unwrap();
        s.wait_for("batch", is_ready).await;
        assert_eq!(s.sim.status("i-tagged1"), Some(InstanceStatus::Stopped));
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-tagged1"),
            1
        );
    })
    .await;
}

/// Waits until just after a whole second of the wall clock, so that two objects created half a
/// second later and a second after that share one `creationTimestamp` (whole seconds).
async fn start_of_a_second() {
    let now = jiff::Timestamp::now();
    let into = now.subsec_nanosecond() as u64;
    tokio::time::sleep(Duration::from_nanos(1_000_000_000 - into) + Duration::from_millis(50))
        .await;
}

/// Issue 24 item 4: two objects naming one VM, created half a second apart (the same
/// `creationTimestamp` second), the first wanting the VM Running and the second Stopped, with
/// the EcsInstance watch `lag` behind the API server. Whatever their names, the first one
/// created owns the VM: exactly one object ever sends a mutating call (one StartInstance,
/// never a StopInstance), and the second is Stalled naming the first.
async fn two_objects_half_a_second_apart(first: &str, second: &str, lag: Option<Duration>) {
    run_flow(Backend::Local, async |s| {
        s.add([instance("i-twins1", InstanceStatus::Stopped)]);
        if let Some(lag) = lag {
            s.kube()
                .faults()
                .lag_watches(lag, RequestFilter::any().resource("ecsinstances"));
        }
        s.controller();

        start_of_a_second().await;
        s.create(&ecs_instance(first, "i-twins1", PowerState::Running))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.create(&ecs_instance(second, "i-twins1", PowerState::Stopped))
            .await;

        let stalled = s
            .wait_for_reason(second, "Stalled", "True", "DuplicateInstance")
            .await;
        let message = condition(&stalled, "Stalled").unwrap().message;
        assert!(
            message.contains(&format!("{}/{first}", s.namespace)),
            "{message}"
        );
        assert_eq!(
            stalled.status.as_ref().unwrap().claimed_at,
            None,
            "the duplicate holds no claim"
        );
        let owner = s.wait_for(first, is_ready).await;
        assert!(owner.status.as_ref().unwrap().claimed_at.is_some());
        // Long enough for a takeover to have sent its call (the lag included).
        tokio::time::sleep(QUIET + lag.unwrap_or_default() * 2).await;
        assert_eq!(s.sim.status("i-twins1"), Some(InstanceStatus::Running));
        let calls = s.sim.calls();
        assert_eq!(
            (
                calls.count_all(Action::StartInstance, "i-twins1"),
                calls.count_all(Action::StopInstance, "i-twins1"),
            ),
            (1, 0),
            "only the first object acts"
        );
        s.kube().faults().clear();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objects_created_within_a_second_the_first_owns_whatever_the_names() {
    two_objects_half_a_second_apart("zz-own", "aa-own", None).await;
    two_objects_half_a_second_apart("aa-own", "zz-own", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objects_created_within_a_second_behind_a_lagging_watch_only_the_first_acts() {
    let lag = Some(Duration::from_millis(1500));
    two_objects_half_a_second_apart("zz-own", "aa-own", lag).await;
    two_objects_half_a_second_apart("aa-own", "zz-own", lag).await;
}
