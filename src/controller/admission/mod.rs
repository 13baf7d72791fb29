//! Whether an EcsInstance may use ECS at all: one owner per instance, and the two opt-in
//! tenancy guards of a controller shared by many teams.
//!
//! The reconcile asks [`Gates::before_lookup`] before it reads a credential or looks at the
//! instance: a duplicate, or an object in a namespace that may not use the controller's own
//! credentials, makes no ECS request of any kind (not even DescribeInstances, so a batching or
//! fleet-wide observer never registers it). [`Gates::after_observe`] sits between the
//! observation and any mutating call: with the tag guard on, an instance whose ECS tag does
//! not list the object's namespace is only ever read. Right before its first mutating call, an
//! object that has recorded its claim on the instance asks [`Gates::after_claim`] whether it
//! still owns it once the owner index has seen that claim ([`owners`]). The rules are pure functions
//! ([`before_lookup`], [`claimed`]) over what the watch caches hold; [`Gates`] reads the caches.

pub(crate) mod owners;
pub(crate) mod tenancy;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::EcsInstance;
use crate::controller::admission::owners::{Candidate, OwnerIndex};
use crate::controller::listed::Listed;
use ecs_client::Instance;

/// Why an object may not use ECS (each is a `Stalled=True` reason, see `conditions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An older EcsInstance (`owner`, `namespace/name`) names the same instance.
    DuplicateInstance { owner: String },
    /// No `credentialsSecretRef`, and the namespace does not match the selector of the
    /// namespaces allowed the controller's own credentials.
    CredentialsNotPermitted { namespace: String, selector: String },
    /// The instance's tag `tag` does not list `namespace` (the tag guard).
    InstanceNotClaimed { tag: String, namespace: String },
}

/// The owner index has not seen an object's claim in time (a watch that lags far behind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the controller's watch has not shown the claim yet")]
pub(crate) struct ClaimNotSeen;

/// The refusal, if any, before any ECS request: `owner` is the owner of the object's instance
/// (the object itself when it owns); `shared_credentials` is the selector and whether the
/// object's namespace matches it, when that guard is on.
pub(crate) fn before_lookup(
    obj: &EcsInstance,
    namespace: &str,
    owner: &Candidate,
    shared_credentials: Option<(&str, bool)>,
) -> Option<Refusal> {
    if let Some(refusal) = duplicate(obj, owner) {
        return Some(refusal);
    }
    match shared_credentials {
        Some((selector, false)) if obj.spec.credentials_secret_ref.is_none() => {
            Some(Refusal::CredentialsNotPermitted {
                namespace: namespace.to_string(),
                selector: selector.to_string(),
            })
        }
        _ => None,
    }
}

/// The refusal of an object that does not own its instance (`owner` does).
pub(crate) fn duplicate(obj: &EcsInstance, owner: &Candidate) -> Option<Refusal> {
    (!owner.is(obj)).then(|| Refusal::DuplicateInstance {
        owner: owner.display(),
    })
}

/// Whether the instance's tag `key` lists `namespace`: its value split on commas, each entry
/// trimmed, `*` standing for any namespace.
pub(crate) fn claimed(instance: &Instance, key: &str, namespace: &str) -> bool {
    instance.tags.get(key).is_some_and(|value| {
        value
            .split(',')
            .map(str::trim)
            .any(|entry| entry == "*" || entry == namespace)
    })
}

/// The namespaces allowed the controller's own credentials: the selector, and a reflector
/// store of the Namespaces it selects (the API server evaluates the selector).
#[derive(Clone)]
pub(crate) struct SharedCredentials {
    pub selector: String,
    pub permitted: Store<PartialObjectMeta<Namespace>>,
    /// That `permitted` holds the first list (not `permitted.wait_until_ready()`, which wakes
    /// only one of several waiting reconciles: see `controller::listed`).
    pub listed: Listed,
}

/// What the gates read for one controller run: the owner index, and the guards that are on.
/// The default is all open (no other object, no guard).
#[derive(Clone, Default)]
pub(crate) struct Gates {
    pub owners: Arc<OwnerIndex>,
    pub shared_credentials: Option<SharedCredentials>,
    /// `--instance-tag-guard`: the ECS tag that must list the namespace.
    pub tag_guard: Option<String>,
}

impl Gates {
    /// Waits until the caches the gates read are filled (a namespace not yet listed must not be
    /// refused). `false`: they never will be, the run is ending; judge nothing.
    pub(crate) async fn ready(&self) -> bool {
        match &self.shared_credentials {
            Some(shared) => shared.listed.wait().await,
            None => true,
        }
    }

    /// See [`before_lookup`].
    pub(crate) fn before_lookup(&self, obj: &EcsInstance, namespace: &str) -> Option<Refusal> {
        let owner = self.owners.owner_of(obj);
        let shared = self.shared_credentials.as_ref().map(|s| {
            let permitted = s.permitted.get(&ObjectRef::new(namespace)).is_some();
            (s.selector.as_str(), permitted)
        });
        before_lookup(obj, namespace, &owner, shared)
    }

    /// [`Gates::before_lookup`] as a check a held-back call makes again just before it leaves
    /// (see `EcsApi::power_if`): the permission of this instant, not of the reconcile's start.
    pub(crate) fn admission(&self, obj: &EcsInstance, namespace: &str) -> ecs_client::Admission {
        let (gates, obj, namespace) = (self.clone(), obj.clone(), namespace.to_string());
        Arc::new(move || gates.before_lookup(&obj, &namespace).is_none())
    }

    /// After `obj` recorded its claim on its instance, made `at`, and before it acts on it:
    /// waits until the owner index has seen the claim (so it has seen every object created, and
    /// every claim written, before it), then whether `obj` still owns the instance
    /// (see [`owners`]). `Err(ClaimNotSeen)` when the index has not seen it within `within`.
    pub(crate) async fn after_claim(
        &self,
        obj: &EcsInstance,
        at: jiff::Timestamp,
        within: std::time::Duration,
    ) -> Result<Option<Refusal>, ClaimNotSeen> {
        let owner = self
            .owners
            .owner_once_seen(obj, at, within)
            .await
            .ok_or(ClaimNotSeen)?;
        Ok(duplicate(obj, &owner))
    }

    /// With the tag guard on: refused unless the instance's tag lists `namespace`.
    pub(crate) fn after_observe(&self, namespace: &str, instance: &Instance) -> Option<Refusal> {
        let tag = self.tag_guard.as_deref()?;
        (!claimed(instance, tag, namespace)).then(|| Refusal::InstanceNotClaimed {
            tag: tag.to_string(),
            namespace: namespace.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceSpec, PowerState, SecretReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn object(namespace: &str, secret: Option<&str>) -> EcsInstance {
        let mut obj = EcsInstance::new("db", EcsInstanceSpec::minimal("i-a", PowerState::Running));
        obj.metadata.namespace = Some(namespace.into());
        obj.metadata.creation_timestamp = Some(Time("2026-11-27T01:00:00Z".parse().unwrap()));
        obj.spec.credentials_secret_ref = secret.map(|name| SecretReference { name: name.into() });
        obj
    }

    fn instance(tags: &[(&str, &str)]) -> Instance {
        let mut instance = crate::testing::instance("i-a", ecs_client::InstanceStatus::Running);
        instance.tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        instance
    }

    #[test]
    fn a_duplicate_is_refused_before_anything_else_naming_its_owner() {
        let obj = object("team-b", None);
        let mut older = object("team-a", None);
        older.metadata.creation_timestamp = Some(Time("2026-11-27T00:00:00Z".parse().unwrap()));
        let owner = Candidate::of(&older);
        assert_eq!(
            before_lookup(&obj, "team-b", &owner, Some(("shared=yes", false))),
            Some(Refusal::DuplicateInstance {
                owner: "team-a/db".into()
            })
        );
        assert_eq!(
            before_lookup(&obj, "team-b", &Candidate::of(&obj), None),
            None
        );
    }

    #[test]
    fn the_shared_credentials_need_a_matching_namespace_a_secret_of_its_own_does_not() {
        let own_chain = object("team-b", None);
        let own = Candidate::of(&own_chain);
        assert_eq!(
            before_lookup(&own_chain, "team-b", &own, Some(("shared=yes", false))),
            Some(Refusal::CredentialsNotPermitted {
                namespace: "team-b".into(),
                selector: "shared=yes".into()
            })
        );
        assert_eq!(
            before_lookup(&own_chain, "team-b", &own, Some(("shared=yes", true))),
            None
        );
        let with_secret = object("team-b", Some("creds"));
        assert_eq!(
            before_lookup(
                &with_secret,
                "team-b",
                &Candidate::of(&with_secret),
                Some(("shared=yes", false))
            ),
            None
        );
    }

    #[test]
    fn a_tag_claims_for_the_namespaces_it_lists_or_for_any_with_a_star() {
        let key = "ecs.powerctl.io/namespaces";
        for (value, namespace, expected) in [
            ("team-a", "team-a", true),
            (" team-b , team-a ", "team-a", true),
            ("team-b,team-c", "team-a", false),
            ("team-ab", "team-a", false),
            ("*", "anything", true),
            ("", "team-a", false),
        ] {
            let tagged = instance(&[(key, value)]);
            assert_eq!(
                claimed(&tagged, key, namespace),
                expected,
                "{value:?} / {namespace}"
            );
        }
        assert!(!claimed(&instance(&[("other", "team-a")]), key, "team-a"));

        let gates = Gates {
            tag_guard: Some(key.into()),
            ..Gates::default()
        };
        assert_eq!(
            gates.after_observe("team-a", &instance(&[])),
            Some(Refusal::InstanceNotClaimed {
                tag: key.into(),
                namespace: "team-a".into()
            })
        );
        assert_eq!(
            gates.after_observe("team-a", &instance(&[(key, "team-a")])),
            None
        );
        assert_eq!(
            Gates::default().after_observe("team-a", &instance(&[])),
            None
        );
    }
}
