//! The observation seam: how the reconciler learns an instance's state.
//!
//! Every reconcile observes through [`Observer`], so batching many objects' observations into
//! one DescribeInstances call per 100 instances is a change of implementation, not of the
//! reconciler.

use std::sync::Arc;

use async_trait::async_trait;

use ecs_client::{Credentials, EcsApi, EcsError, Instance};

/// Hands out an ECS API handle for a set of credentials.
pub trait EcsConnector: Send + Sync {
    /// `None`: the controller's own credential chain (environment, RRSA, RAM role).
    fn connect(&self, credentials: Option<&Credentials>) -> Arc<dyn EcsApi>;
}

/// Which instance to look at, and with which API handle.
#[derive(Clone)]
pub struct Target {
    pub ecs: Arc<dyn EcsApi>,
    /// Identifies the credential set (a hash, never the secret), so observations made with
    /// different credentials are never shared.
    pub credentials_key: String,
    pub region: String,
    pub instance_id: String,
}

/// Looks up one instance.
#[async_trait]
pub trait Observer: Send + Sync {
    /// `Ok(None)`: ECS does not know the instance.
    async fn observe(&self, target: &Target) -> Result<Option<Instance>, EcsError>;
}

/// One DescribeInstances call per observation.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectObserver;

#[async_trait]
impl Observer for DirectObserver {
    async fn observe(&self, target: &Target) -> Result<Option<Instance>, EcsError> {
        let ids = [target.instance_id.clone()];
        let found = target.ecs.describe_instances(&target.region, &ids).await?;
        Ok(found
            .into_iter()
            .find(|i| i.instance_id == target.instance_id))
    }
}
