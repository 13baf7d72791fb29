//! The Kubernetes side of one reconcile: the credentials Secret it reads, the status it writes
//! (the reboot intent and the claim on the instance first, when it needs them),
//! the events it publishes.
//!
//! Behind a trait so that reconcile is unit-tested against an in-memory cluster; [`KubeCluster`]
//! is the real one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::Event;

use crate::controller::k8s::events::Publisher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use crate::api::{EcsInstance, EcsInstanceStatus, RebootInFlight};

/// A Secret's data and the `resourceVersion` it was read at.
pub(crate) struct SecretData {
    pub data: BTreeMap<String, Vec<u8>>,
    pub resource_version: Option<String>,
}

/// The field manager of every status write (`managedFields` names it, not `unknown`).
pub(crate) const FIELD_MANAGER: &str = "ecs-power-controller";

/// The outcome of a status write made conditional on a resourceVersion ([`patch_status_at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Written; the object's resourceVersion now (the precondition of the next write).
    At(Option<String>),
    /// The object changed since that version (409 Conflict): nothing was written.
    Conflict,
}

/// What a reconcile reads from and writes to Kubernetes. Status writes are merge patches of
/// the status subresource of `obj` (in `obj`'s namespace), each conditional on the
/// resourceVersion the decision was made from: a cache that trails the API server must never
/// overwrite what a newer reconcile recorded (a rolled-back reboot token reboots again).
#[async_trait]
pub(crate) trait Cluster: Send + Sync {
    /// The Secret `name` in `namespace`; `None` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, kube::Error>;

    /// Records a reboot intent, conditional on `obj` still being at `version`.
    async fn write_intent(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        intent: &RebootInFlight,
    ) -> Result<Written, kube::Error>;

    /// Records `obj`'s claim on its instance (`status.claimedAt`), conditional on `obj` still
    /// being at `version`.
    async fn write_claim(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        at: &MicroTime,
    ) -> Result<Written, kube::Error>;

    /// Writes the whole status, conditional on `obj` still being at `version`.
    async fn write_status(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        status: &EcsInstanceStatus,
    ) -> Result<Written, kube::Error>;

    /// Publishes an event about `obj`; a failure is logged, never fails the reconcile.
    async fn publish(&self, obj: &EcsInstance, event: &Event);
}

/// The cluster the controller runs against.
pub(crate) struct KubeCluster {
    pub client: Client,
    pub recorder: Publisher,
}

impl KubeCluster {
    fn objects(&self, obj: &EcsInstance) -> Api<EcsInstance> {
        scoped_api(self.client.clone(), obj.namespace().as_deref())
    }
}

/// The `K`s of `namespace`, or of every namespace.
pub(crate) fn scoped_api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Merge-patches the status of `name` with `status`, as [`FIELD_MANAGER`]. With `version`, the
/// patch carries it as `metadata.resourceVersion`, which the API server treats as a
/// precondition: when the object has moved on (409 Conflict), nothing is written and the
/// caller looks again with the newer object rather than overwrite what it does not know.
pub(crate) async fn patch_status_at<K>(
    api: &Api<K>,
    name: &str,
    version: Option<&str>,
    status: serde_json::Value,
) -> Result<Written, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut patch = json!({ "status": status });
    if let Some(version) = version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
        Ok(written) => Ok(Written::At(written.resource_version())),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Written::Conflict),
        Err(err) => Err(err),
    }
}

/// The write of the status controllers (schedules, calendars): `status` as the status of `obj`
/// in `namespace`, conditional on the version `obj` was read at ([`patch_status_at`]).
pub(crate) async fn patch_status_of<K>(
    client: Client,
    namespace: &str,
    obj: &K,
    status: &impl serde::Serialize,
) -> Result<Written, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client, namespace);
    let status = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    let version = obj.resource_version();
    patch_status_at(&api, &obj.name_any(), version.as_deref(), status).await
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, kube::Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Ok(secrets.get_opt(name).await?.map(|secret| SecretData {
            resource_version: secret.resource_version(),
            data: secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        }))
    }

    async fn write_intent(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        intent: &RebootInFlight,
    ) -> Result<Written, kube::Error> {
        let intent = serde_json::to_value(intent).map_err(kube::Error::SerdeError)?;
        patch_status_at(
            &self.objects(obj),
            &obj.name_any(),
            version,
            json!({ "rebootInFlight": intent }),
        )
        .await
    }

    async fn write_claim(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        at: &MicroTime,
    ) -> Result<Written, kube::Error> {
        patch_status_at(
            &self.objects(obj),
            &obj.name_any(),
            version,
            json!({ "claimedAt": at }),
        )
        .await
    }

    async fn write_status(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        status: &EcsInstanceStatus,
    ) -> Result<Written, kube::Error> {
        let status = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
        patch_status_at(&self.objects(obj), &obj.name_any(), version, status).await
    }

    async fn publish(&self, obj: &EcsInstance, event: &Event) {
        if let Err(err) = self.recorder.publish(event, &obj.object_ref(&())).await {
            warn!(error = %err, reason = %event.reason, "could not publish an event");
        }
    }
}
