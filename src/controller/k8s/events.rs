//! Publishing events so that every ECS RequestId stays findable.
//!
//! kube's `Recorder` folds a repeat of an event (same type, reason, action and object) into a
//! series of the first one and only bumps the series: the note stays the first occurrence's. For
//! this controller the note carries the ECS RequestId of each call ("Dry run of StopInstance
//! passed (RequestId ...)", "RebootInstance accepted (RequestId ...)"), which is what an
//! operator quotes to Alibaba Cloud support; a dry-run object rechecked every resync showed one
//! RequestId for 83 calls. So here the note is part of an event's identity: a repeat with the
//! same note becomes a series as before (the same wait, said again), a new note (a new
//! RequestId) is a new event with its own message.
//!
//! Otherwise the behaviour is kube's: `events.k8s.io/v1`, the same naming, a series patched
//! with a merge patch, repeats remembered for six minutes.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::controller::truncate::truncated;

/// How long a published event is remembered for a series (kube's Recorder: six minutes).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What makes two publications the same event: kube's key plus the note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    warning: bool,
    reason: String,
    action: String,
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    note: Option<String>,
}

struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes controller events; one per process, shared by all reconciles.
pub(crate) struct Publisher {
    client: Client,
    reporter: Reporter,
    published: Mutex<HashMap<Key, Published>>,
}

impl Publisher {
    pub(crate) fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the event, or, when the same event (note included) was published in the last
    /// six minutes, counts one more occurrence in its series.
    pub(crate) async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let note = ev.note.clone().map(truncated);
        let key = Key {
            warning: matches!(ev.type_, EventType::Warning),
            reason: ev.reason.clone(),
            action: ev.action.clone(),
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
                regarding.kind.clone(),
            ),
            note: note.clone(),
        };
        // The lock is not held across requests: reconciles of different objects publish at once.
        let repeat = {
            let mut published = self.published.lock().await;
            published.retain(|_, p| p.last + SERIES_WINDOW > now);
            published
                .get(&key)
                .map(|p| (p.namespace.clone(), p.name.clone(), p.count + 1))
        };
        if let Some((namespace, name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(now),
            };
            Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "series": series })),
                )
                .await?;
            if let Some(p) = self.published.lock().await.get_mut(&key) {
                p.count = p.count.max(count);
                p.last = now;
            }
            return Ok(());
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = event_name(
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            now,
        );
        let event = K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note,
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.to_string()),
            related: ev.secondary.clone(),
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.published.lock().await.insert(
            key,
            Published {
                namespace,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

/// The longest name the API server takes for an event (a DNS subdomain).
const NAME_LIMIT: usize = 253;

/// An event's name: kube's `<object>.<time in hex>`, which a series keeps. An object's name may
/// itself be 253 characters, and a name past the limit is refused (every event of the object
/// lost): then it is the object name's beginning, 8 hex digits of its SHA-256 (two long names
/// that begin alike stay apart), and the time.
fn event_name(object: &str, now: Timestamp) -> String {
    let time = format!(".{:x}", now.as_nanosecond());
    if object.len() + time.len() <= NAME_LIMIT {
        return format!("{object}{time}");
    }
    let digest = hex::encode(&Sha256::digest(object.as_bytes())[..4]);
    let mut end = NAME_LIMIT - time.len() - digest.len() - 1;
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    // A subdomain's parts start and end with a letter or digit.
    let beginning = object[..end].trim_end_matches(['.', '-']);
    if beginning.is_empty() {
        format!("{digest}{time}")
    } else {
        format!("{beginning}.{digest}{time}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ListParams;

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: "DryRun".into(),
            note: Some(note.into()),
            action: "StopInstance".into(),
            secondary: None,
        }
    }

    /// A publisher on an in-process API server, and a client of it.
    async fn on_kubesim() -> (kubesim::KubeSim, Client, Publisher) {
        let api = kubesim::KubeSim::start(kubesim::KubeSimOptions {
            auto_create_namespaces: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let client = api.client().unwrap();
        let publisher = Publisher::new(
            client.clone(),
            Reporter {
                controller: "ecs-power-controller".into(),
                instance: None,
            },
        );
        (api, client, publisher)
    }

    #[tokio::test]
    async fn the_same_note_is_a_series_and_a_new_request_id_a_new_event() {
        let (api, client, publisher) = on_kubesim().await;
        let regarding = ObjectReference {
            kind: Some("EcsInstance".into()),
            name: Some("canary-1".into()),
            namespace: Some("default".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        for note in [
            "passed (RequestId A)",
            "passed (RequestId A)",
            "passed (RequestId B)",
        ] {
            publisher.publish(&event(note), &regarding).await.unwrap();
        }
        let mut listed = Api::<K8sEvent>::namespaced(client, "default")
            .list(&ListParams::default().fields("regarding.name=canary-1"))
            .await
            .unwrap()
            .items;
        listed.sort_by_key(|e| e.note.clone());
        let seen: Vec<(Option<String>, Option<i32>)> = listed
            .iter()
            .map(|e| (e.note.clone(), e.series.as_ref().map(|s| s.count)))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("passed (RequestId A)".into()), Some(2)),
                (Some("passed (RequestId B)".into()), None),
            ]
        );
        api.shutdown().await;
    }

    /// An object's name may be 253 characters: its events' names still fit, stay apart for
    /// two names that begin alike, and a repeat still joins its series.
    #[tokio::test]
    async fn an_object_with_the_longest_name_keeps_its_events() {
        let (api, client, publisher) = on_kubesim().await;
        let long = |last: char| format!("{}{last}", "web-".repeat(63));
        let (first, second) = (long('a'), long('b'));
        assert_eq!(first.len(), 253);
        for name in [&first, &second, &first] {
            let regarding = ObjectReference {
                kind: Some("EcsInstance".into()),
                name: Some(name.clone()),
                namespace: Some("default".into()),
                uid: Some(format!("u-{name}")),
                ..ObjectReference::default()
            };
            publisher
                .publish(&event("passed (RequestId A)"), &regarding)
                .await
                .unwrap();
        }
        for (name, count) in [(&first, Some(2)), (&second, None)] {
            let listed = Api::<K8sEvent>::namespaced(client.clone(), "default")
                .list(&ListParams::default().fields(&format!("regarding.name={name}")))
                .await
                .unwrap()
                .items;
            assert_eq!(listed.len(), 1, "one event for {name}");
            let event_name = listed[0].metadata.name.clone().unwrap();
            assert!(event_name.len() <= NAME_LIMIT, "{event_name}");
            assert_eq!(listed[0].series.as_ref().map(|s| s.count), count);
        }
        api.shutdown().await;
    }

    #[test]
    fn event_names_are_subdomains_at_every_length() {
        let now: Timestamp = "2026-11-27T12:00:00.123456789Z".parse().unwrap();
        assert_eq!(
            event_name("canary-1", now),
            format!("canary-1.{:x}", now.as_nanosecond())
        );
        for length in 200..=253 {
            // Cut points land on a dot and on a dash.
            for filler in ["a.b-c", "abcd.", "ab-cd"] {
                let name: String = filler.repeat(64)[..length]
                    .trim_end_matches(['.', '-'])
                    .to_string()
                    + "z";
                let event = event_name(&name, now);
                assert!(
                    event.len() <= NAME_LIMIT,
                    "{length}: {} characters",
                    event.len()
                );
                assert!(
                    event.split('.').all(|part| !part.is_empty()
                        && !part.starts_with('-')
                        && !part.ends_with('-')),
                    "{event}"
                );
                assert_eq!(event, event_name(&name, now), "stable");
            }
        }
    }

    /// Events come from many places (a reconcile, the reboot command): whatever the note, the
    /// published one is at most 1 KB (the events.k8s.io limit), cut on a character boundary.
    #[tokio::test]
    async fn a_huge_note_is_published_cut_short() {
        let (api, client, publisher) = on_kubesim().await;
        let regarding = ObjectReference {
            kind: Some("EcsInstance".into()),
            name: Some("huge-1".into()),
            namespace: Some("default".into()),
            ..ObjectReference::default()
        };
        let note = format!("StartInstance failed: {}", "é".repeat(100_000));
        publisher.publish(&event(&note), &regarding).await.unwrap();
        let listed = Api::<K8sEvent>::namespaced(client, "default")
            .list(&ListParams::default().fields("regarding.name=huge-1"))
            .await
            .unwrap()
            .items;
        let published = listed[0].note.clone().unwrap();
        assert!(published.len() <= 1024, "{} bytes", published.len());
        assert!(published.starts_with("StartInstance failed: éé"));
        api.shutdown().await;
    }
}
