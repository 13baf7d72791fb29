//! The ECS seam of the reconciler: how it gets an API handle for an object's credentials
//! ([`EcsConnector`]) and how it learns an instance's state ([`Observer`]).
//!
//! Every reconcile observes through [`Observer`], so batching many objects' observations into
//! one DescribeInstances call per 100 instances, or reading them from a fleet-wide view
//! ([`crate::controller::ecs::fleet::FleetObserver`]), is a change of implementation, not of the reconciler. The
//! reconciler says how fresh the evidence must be ([`Freshness`]); the observer decides how to
//! get it.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::runtime::reflector::{ObjectRef, Store};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::api::EcsInstance;
use crate::controller::listed::Listed;

use ecs_client::{Credentials, EcsApi, EcsError, Instance};

/// The ECS side of a controller: the connector, and an observer that batches when the
/// connector does.
pub(crate) struct EcsSide {
    pub connector: Arc<dyn EcsConnector>,
    pub observer: Arc<dyn Observer>,
}

/// Hands out an ECS API handle for a set of credentials.
pub(crate) trait EcsConnector: Send + Sync {
    /// `None`: the controller's own credential chain (environment, RRSA, RAM role).
    fn connect(&self, credentials: Option<&Credentials>) -> Arc<dyn EcsApi>;
}

/// Which instance to look at, and with which API handle.
#[derive(Clone)]
pub(crate) struct Lookup {
    pub ecs: Arc<dyn EcsApi>,
    /// Identifies the credential set (a hash, never the secret), so observations made with
    /// different credentials are never shared.
    pub credentials_key: String,
    pub region: String,
    pub instance_id: String,
    /// The object that looks: an observer that notices a change of the instance triggers it.
    pub object: ObjectRef<EcsInstance>,
    pub freshness: Freshness,
}

/// How fresh the evidence a reconcile decides on must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// The observer's recent view of the fleet will do: a resync, or a look the observer itself
    /// triggered because the instance changed.
    View,
    /// Only a DescribeInstances sent at or after this instant: a spec change or a reboot token
    /// (exactly-once rests on evidence read after the token arrived), or a call about to be made.
    After(Instant),
}

/// The freshness a reconcile of `obj` that started at `started` needs: evidence read after it
/// started when the spec changed (a new generation), a reboot token is pending or one is in
/// flight, since the token or change arrived before the reconcile did; the observer's view
/// otherwise.
pub(crate) fn freshness_for(obj: &EcsInstance, started: Instant) -> Freshness {
    let status = obj.status.as_ref();
    let generation_changed = status.and_then(|s| s.observed_generation) != obj.metadata.generation;
    let token_pending = obj.spec.reboot.as_ref().is_some_and(|r| {
        status.and_then(|s| s.last_reboot_token.as_deref()) != Some(r.token.as_str())
    });
    let in_flight = status.is_some_and(|s| s.reboot_in_flight.is_some());
    if generation_changed || token_pending || in_flight {
        Freshness::After(started)
    } else {
        Freshness::View
    }
}

/// Looks up one instance.
#[async_trait]
pub(crate) trait Observer: Send + Sync {
    /// `Ok(None)`: ECS does not know the instance.
    async fn observe(&self, lookup: &Lookup) -> Result<Option<Instance>, EcsError>;

    /// `object` may no longer use ECS at all (a gate refused it): nothing is read on its behalf
    /// any more. Observers that keep nothing between lookups have nothing to forget.
    fn forget(&self, _object: &ObjectRef<EcsInstance>) {}

    /// The objects whose instance changed since they last looked, for as long as the stream is
    /// polled (the controller's run: a lost lease drops it and with it every read it made).
    /// Observers that only answer lookups never yield one. `listed`: that `store` holds the
    /// run's first list.
    fn changes(
        &self,
        _store: Store<EcsInstance>,
        _listed: Listed,
    ) -> BoxStream<'static, ObjectRef<EcsInstance>> {
        futures::stream::pending().boxed()
    }
}

/// Observes through `observer`; an instance it does not find is looked up once more, on its
/// own, by a DescribeInstances of that id alone sent after the miss: one row missing from one
/// answer (a batched or fleet-wide read, an eventually consistent one) is not enough to call
/// the instance gone. `Ok(None)` only when both agree.
pub(crate) async fn observe_confirmed(
    observer: &dyn Observer,
    lookup: &Lookup,
) -> Result<Option<Instance>, EcsError> {
    match observer.observe(lookup).await? {
        Some(instance) => Ok(Some(instance)),
        None => {
            tracing::info!(instance = %lookup.instance_id, "not in ECS's answer; asking for it alone before calling it gone");
            DirectObserver.observe(lookup).await
        }
    }
}

/// One DescribeInstances call per observation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DirectObserver;

#[async_trait]
impl Observer for DirectObserver {
    async fn observe(&self, lookup: &Lookup) -> Result<Option<Instance>, EcsError> {
        let ids = [lookup.instance_id.clone()];
        let found = lookup.ecs.describe_instances(&lookup.region, &ids).await?;
        Ok(found
            .into_iter()
            .find(|i| i.instance_id == lookup.instance_id))
    }
}

/// A stable, non-reversible name for a credential set (`default` for the controller's own):
/// observations are shared only between lookups with the same key.
pub(crate) fn credentials_key(credentials: Option<&Credentials>) -> String {
    let Some(c) = credentials else {
        return "default".to_string();
    };
    let mut hasher = Sha256::new();
    hasher.update(c.access_key_id.as_bytes());
    hasher.update([0]);
    hasher.update(c.access_key_secret.expose().as_bytes());
    hasher.update([0]);
    if let Some(token) = &c.security_token {
        hasher.update(token.expose().as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        EcsInstanceSpec, EcsInstanceStatus, PowerState, RebootInFlight, RebootMode, RebootRequest,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// An object at generation 3 whose last reconcile recorded `status`.
    fn object(status: EcsInstanceStatus) -> EcsInstance {
        let mut obj = EcsInstance::new(
            "web-1",
            EcsInstanceSpec::minimal("i-1", PowerState::Running),
        );
        obj.metadata.generation = Some(3);
        obj.status = Some(status);
        obj
    }

    fn reconciled() -> EcsInstanceStatus {
        EcsInstanceStatus {
            observed_generation: Some(3),
            last_reboot_token: Some("t1".into()),
            ..EcsInstanceStatus::default()
        }
    }

    #[test]
    fn only_a_resync_with_nothing_new_takes_the_view() {
        let started = Instant::now();
        assert_eq!(
            freshness_for(&object(reconciled()), started),
            Freshness::View
        );

        // A new generation (or an object never reconciled).
        let mut changed = object(reconciled());
        changed.metadata.generation = Some(4);
        assert_eq!(freshness_for(&changed, started), Freshness::After(started));
        let mut new = object(reconciled());
        new.status = None;
        assert_eq!(freshness_for(&new, started), Freshness::After(started));

        // A token not yet carried out; one carried out takes the view again.
        let mut token = object(reconciled());
        token.spec.reboot = Some(RebootRequest {
            token: "t2".into(),
            mode: RebootMode::Soft,
        });
        assert_eq!(freshness_for(&token, started), Freshness::After(started));
        token.spec.reboot.as_mut().unwrap().token = "t1".into();
        assert_eq!(freshness_for(&token, started), Freshness::View);

        // A reboot in flight is settled on evidence read after it was sent.
        let in_flight = object(EcsInstanceStatus {
            reboot_in_flight: Some(RebootInFlight {
                token: "t2".into(),
                start_time_before: None,
                requested_at: Time(jiff::Timestamp::UNIX_EPOCH),
            }),
            ..reconciled()
        });
        assert_eq!(
            freshness_for(&in_flight, started),
            Freshness::After(started)
        );
    }

    /// An observer whose answers left the instance out (a batched or fleet-wide read that
    /// lost one row).
    struct LostRow;

    #[async_trait]
    impl Observer for LostRow {
        async fn observe(&self, _: &Lookup) -> Result<Option<Instance>, EcsError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn a_miss_is_confirmed_by_a_lookup_of_that_id_alone_before_it_counts() {
        let ecs = crate::testing::FakeEcs::new();
        let known = crate::testing::target(&ecs, "default", crate::testing::REGION, "i-7");
        let found = observe_confirmed(&LostRow, &known).await.unwrap();
        assert_eq!(found.map(|i| i.instance_id), Some("i-7".to_string()));

        let gone = crate::testing::target(&ecs, "default", crate::testing::REGION, "i-gone");
        assert_eq!(observe_confirmed(&LostRow, &gone).await.unwrap(), None);
        let lookups: Vec<Vec<String>> = ecs
            .calls_of("DescribeInstances")
            .into_iter()
            .map(|c| c.ids)
            .collect();
        assert_eq!(
            lookups,
            [vec!["i-7".to_string()], vec!["i-gone".to_string()]]
        );

        // A reading that finds it is not asked again.
        assert!(
            observe_confirmed(&DirectObserver, &known)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(ecs.calls_of("DescribeInstances").len(), 3);
    }

    #[test]
    fn keys_differ_by_secret_and_never_contain_it() {
        let a = Credentials::new("LTAI1", "secret-one", None);
        let b = Credentials::new("LTAI1", "secret-two", None);
        let ka = credentials_key(Some(&a));
        assert_ne!(ka, credentials_key(Some(&b)));
        assert_eq!(ka, credentials_key(Some(&a)));
        assert!(!ka.contains("secret"));
        assert_eq!(credentials_key(None), "default");
    }
}
