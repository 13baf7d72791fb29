//! Noticing that a credentials Secret changed, with `get` alone.
//!
//! A watch (or list) of Secrets cannot be narrowed by RBAC to the Secrets EcsInstances
//! reference, nor to their metadata: granting it lets the controller read every Secret it can
//! see. So the controller only ever gets Secrets by name. What a change must do is lift the
//! backoff of an object that failed with the old Secret (a missing Secret, a wrong key): every
//! `every`, the Secrets of objects in such a backoff are looked at (metadata only), and an object
//! whose Secret is no longer the version its backoff recorded (`status.retry.secretVersion`) is
//! reconciled at once. Objects that are not failing pick a changed Secret up at their next look.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use tokio::time::MissedTickBehavior;
use tracing::warn;

use crate::api::EcsInstance;

/// A Secret: namespace and name.
type SecretKey = (String, String);

/// An object whose backoff was recorded against a version of its Secret (`None`: the Secret was
/// missing then).
#[derive(Debug, PartialEq)]
struct Waiting {
    secret: SecretKey,
    object: ObjectRef<EcsInstance>,
    recorded: Option<String>,
}

/// The objects in a backoff that a change of their Secret lifts.
fn waiting(objects: &[Arc<EcsInstance>]) -> Vec<Waiting> {
    objects
        .iter()
        .filter_map(|obj| {
            let reference = obj.spec.credentials_secret_ref.as_ref()?;
            let retry = &obj.status.as_ref()?.retry;
            let namespace = obj.namespace()?;
            (retry.count > 0).then(|| Waiting {
                secret: (namespace, reference.name.clone()),
                object: ObjectRef::from_obj(obj.as_ref()),
                recorded: retry.secret_version.clone(),
            })
        })
        .collect()
}

/// The objects to reconcile now: their Secret's version (`None`: missing) is not the one their
/// backoff recorded. Secrets that could not be read are left out.
fn changed(
    waiting: Vec<Waiting>,
    versions: &HashMap<SecretKey, Option<String>>,
) -> Vec<ObjectRef<EcsInstance>> {
    waiting
        .into_iter()
        .filter(|w| versions.get(&w.secret).is_some_and(|v| *v != w.recorded))
        .map(|w| w.object)
        .collect()
}

/// Every `every`, the objects whose Secret changed since their backoff began (see the module).
pub(crate) fn changes(
    client: Client,
    store: Store<EcsInstance>,
    every: Duration,
) -> impl Stream<Item = ObjectRef<EcsInstance>> + Send + 'static {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let looks = futures::stream::unfold(tick, move |mut tick| {
        let (client, store) = (client.clone(), store.clone());
        async move {
            tick.tick().await;
            let waiting = waiting(&store.state());
            let mut versions = HashMap::new();
            for w in &waiting {
                if versions.contains_key(&w.secret) {
                    continue;
                }
                let (namespace, name) = &w.secret;
                let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
                match secrets.get_metadata_opt(name).await {
                    Ok(secret) => {
                        let version = secret.and_then(|s| s.resource_version());
                        versions.insert(w.secret.clone(), version);
                    }
                    Err(err) => {
                        warn!(error = %err, namespace, name, "could not look at a credentials Secret");
                    }
                }
            }
            Some((futures::stream::iter(changed(waiting, &versions)), tick))
        }
    });
    futures::StreamExt::flatten(looks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        EcsInstanceSpec, EcsInstanceStatus, PowerState, RetryStatus, SecretReference,
    };

    fn object(
        name: &str,
        secret: Option<&str>,
        retry: Option<(u32, Option<&str>)>,
    ) -> Arc<EcsInstance> {
        let mut obj = EcsInstance::new(name, EcsInstanceSpec::minimal("i-a", PowerState::Running));
        obj.spec.credentials_secret_ref = secret.map(|s| SecretReference { name: s.into() });
        obj.metadata.namespace = Some("team-a".into());
        obj.status = retry.map(|(count, version)| EcsInstanceStatus {
            retry: RetryStatus {
                count,
                secret_version: version.map(str::to_string),
                ..RetryStatus::default()
            },
            ..EcsInstanceStatus::default()
        });
        Arc::new(obj)
    }

    fn key(name: &str) -> SecretKey {
        ("team-a".into(), name.into())
    }

    #[test]
    fn only_objects_in_a_backoff_with_a_secret_are_looked_after() {
        let objects = [
            object("failing", Some("creds"), Some((2, Some("v1")))),
            object("healthy", Some("creds"), Some((0, None))),
            object("new", Some("creds"), None),
            object("own-chain", None, Some((3, None))),
        ];
        let waiting = waiting(&objects);
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].object.name, "failing");
        assert_eq!(waiting[0].secret, key("creds"));
        assert_eq!(waiting[0].recorded.as_deref(), Some("v1"));
    }

    #[test]
    fn a_rotated_or_created_secret_lifts_the_backoff_an_unchanged_one_does_not() {
        let objects = [
            object("rotated", Some("a"), Some((1, Some("v1")))),
            object("unchanged", Some("b"), Some((1, Some("v7")))),
            object("created", Some("c"), Some((1, None))),
            object("still-missing", Some("d"), Some((1, None))),
            object("unreadable", Some("e"), Some((1, Some("v1")))),
        ];
        let versions = HashMap::from([
            (key("a"), Some("v2".to_string())),
            (key("b"), Some("v7".to_string())),
            (key("c"), Some("v1".to_string())),
            (key("d"), None),
        ]);
        let names: Vec<_> = changed(waiting(&objects), &versions)
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["rotated", "created"]);
    }
}
