//! The namespaces allowed the controller's own credentials (`--shared-credentials-selector`).
//!
//! A metadata-only watch of the Namespaces the selector selects: the API server evaluates the
//! selector (the syntax of `kubectl get -l`), and a namespace whose labels stop matching leaves
//! the watch as a delete. Its reflector store is what the gate reads (see `admission`); its
//! events wake the EcsInstances of a namespace that joined or left, so a label change takes
//! effect without a restart and without waiting for a resync.

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::api::EcsInstance;
use crate::controller::admission::SharedCredentials;
use crate::controller::listed::Listed;
use crate::controller::reconcile::conditions::{STALLED, Stall};

/// Why `run` cannot use the selector.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "--shared-credentials-selector {selector:?} is not a label selector the API server accepts ({message}); write it as for `kubectl get namespaces -l`, e.g. ecs.powerctl.io/shared-credentials=allowed"
    )]
    Invalid { selector: String, message: String },
    #[error(
        "--shared-credentials-selector needs list and watch on namespaces, cluster-wide, which this service account lacks ({message}). A single-namespace install (a Role) cannot grant that: install deploy/overlays/multi-tenant, or grant the ClusterRole the namespaces rule"
    )]
    Forbidden { message: String },
    #[error("--shared-credentials-selector: cannot list namespaces: {0}")]
    Kube(#[from] kube::Error),
}

/// Fails fast, naming the flag and the fix, when the API server refuses the selector or the
/// controller may not list Namespaces (otherwise the watch would retry for ever while every
/// object without a Secret stays refused).
pub(crate) async fn check(client: &Client, selector: &str) -> Result<(), SelectorError> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .list_metadata(&ListParams::default().labels(selector).limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 400 => Err(SelectorError::Invalid {
            selector: selector.to_string(),
            message: status.message,
        }),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(SelectorError::Forbidden {
            message: status.message,
        }),
        Err(err) => Err(err.into()),
    }
}

/// The gate's view of the selected namespaces, and the objects to reconcile when a namespace
/// joins or leaves the selection (the stream also keeps the view filled: poll it).
pub(crate) fn watch(
    client: Client,
    selector: &str,
    objects: Store<EcsInstance>,
) -> (
    SharedCredentials,
    impl Stream<Item = ObjectRef<EcsInstance>> + Send + 'static,
) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let events = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
    from_events(events, selector, objects)
}

/// What [`watch`] makes of the namespace watch's events.
fn from_events(
    events: impl Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<Namespace>>>>
    + Send
    + 'static,
    selector: &str,
    objects: Store<EcsInstance>,
) -> (
    SharedCredentials,
    impl Stream<Item = ObjectRef<EcsInstance>> + Send + 'static,
) {
    let (permitted, writer) = reflector::store();
    let (listed_sender, listed) = Listed::new();
    let view = permitted.clone();
    let changes = events
        .reflect(writer)
        .filter_map(move |event| {
            let woken = match event {
                Ok(watcher::Event::Apply(ns) | watcher::Event::Delete(ns)) => {
                    in_namespace(&objects.state(), &ns.name_any())
                }
                // After a relist (the watch was down): whoever the view now judges otherwise
                // than its status says.
                Ok(watcher::Event::InitDone) => {
                    // The store has the list now (`reflect` applied it before passing it on).
                    listed_sender.send_replace(true);
                    misjudged(&objects.state(), |ns| {
                        view.get(&ObjectRef::new(ns)).is_some()
                    })
                }
                Ok(_) => Vec::new(),
                Err(err) => {
                    warn!(error = %err, "watching the namespaces allowed the shared credentials");
                    Vec::new()
                }
            };
            std::future::ready(Some(stream::iter(woken)))
        })
        .flatten();
    let gate = SharedCredentials {
        selector: selector.to_string(),
        permitted,
        listed,
    };
    (gate, changes)
}

/// The objects in `namespace`.
fn in_namespace(
    objects: &[std::sync::Arc<EcsInstance>],
    namespace: &str,
) -> Vec<ObjectRef<EcsInstance>> {
    objects
        .iter()
        .filter(|obj| obj.namespace().as_deref() == Some(namespace))
        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
        .collect()
}

/// The objects using the shared credentials (no Secret) whose status disagrees with
/// `permitted`: refused in a namespace now allowed, or not refused in one now refused.
fn misjudged(
    objects: &[std::sync::Arc<EcsInstance>],
    permitted: impl Fn(&str) -> bool,
) -> Vec<ObjectRef<EcsInstance>> {
    let refused_reason = Stall::CredentialsNotPermitted.reason();
    objects
        .iter()
        .filter(|obj| obj.spec.credentials_secret_ref.is_none())
        .filter(|obj| {
            let refused = obj.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == STALLED && c.status == "True" && c.reason == refused_reason)
            });
            let allowed = obj.namespace().is_some_and(|ns| permitted(&ns));
            refused == allowed
        })
        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceSpec, EcsInstanceStatus, PowerState, SecretReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use std::sync::Arc;

    fn object(namespace: &str, name: &str, refused: bool, secret: bool) -> Arc<EcsInstance> {
        let mut obj = EcsInstance::new(name, EcsInstanceSpec::minimal("i-a", PowerState::Running));
        obj.metadata.namespace = Some(namespace.into());
        obj.spec.credentials_secret_ref = secret.then(|| SecretReference {
            name: "creds".into(),
        });
        obj.status = Some(EcsInstanceStatus {
            conditions: vec![Condition {
                type_: STALLED.into(),
                status: if refused { "True" } else { "False" }.into(),
                reason: "CredentialsNotPermitted".into(),
                message: String::new(),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..EcsInstanceStatus::default()
        });
        Arc::new(obj)
    }

    fn names(refs: Vec<ObjectRef<EcsInstance>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    fn namespace(name: &str) -> PartialObjectMeta<Namespace> {
        let mut ns = PartialObjectMeta::<Namespace>::default();
        ns.metadata.name = Some(name.into());
        ns
    }

    /// Reconciles already waiting when the first list of namespaces comes in: every one of
    /// them goes on, whatever order they were polled in.
    #[tokio::test(start_paused = true)]
    async fn every_reconcile_waiting_for_the_first_list_goes_on_when_it_is_in() {
        let (events, rx) = futures::channel::mpsc::unbounded();
        let (objects, _writer) = reflector::store::<EcsInstance>();
        let (gate, changes) = from_events(rx, "team=allowed", objects);
        tokio::spawn(changes.for_each(|_| async {}));
        let gates = crate::controller::admission::Gates {
            shared_credentials: Some(gate.clone()),
            ..Default::default()
        };
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let gates = gates.clone();
                tokio::spawn(async move { gates.ready().await })
            })
            .collect();
        // Every waiter has polled (and is waiting) before the list comes in.
        tokio::task::yield_now().await;
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(namespace("team-a")),
            watcher::Event::InitDone,
        ] {
            events.unbounded_send(Ok(event)).unwrap();
        }
        for (i, waiter) in waiting.into_iter().enumerate() {
            tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
                .await
                .unwrap_or_else(|_| panic!("waiter {i} still waits after the list is in"))
                .unwrap();
        }
        assert!(gate.permitted.get(&ObjectRef::new("team-a")).is_some());
    }

    #[test]
    fn a_namespace_change_wakes_its_objects_only() {
        let objects = [
            object("team-a", "a1", false, false),
            object("team-b", "b1", false, false),
            object("team-a", "a2", true, true),
        ];
        assert_eq!(names(in_namespace(&objects, "team-a")), ["a1", "a2"]);
    }

    #[test]
    fn after_a_relist_objects_judged_otherwise_than_their_status_says_are_woken() {
        let objects = [
            object("allowed", "refused-but-now-allowed", true, false),
            object("allowed", "fine", false, false),
            object("refused", "acting-but-now-refused", false, false),
            object("refused", "already-refused", true, false),
            object("refused", "own-secret", false, true),
        ];
        let woken = names(misjudged(&objects, |ns| ns == "allowed"));
        assert_eq!(woken, ["refused-but-now-allowed", "acting-but-now-refused"]);
    }
}
