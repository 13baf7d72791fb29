//! Power calls noted by the observer: after a start, stop or reboot, what was read of the
//! instance before it says nothing of its state now.

use std::sync::Arc;

use async_trait::async_trait;

use super::Shared;
use ecs_client::{Accepted, Admission, BatchAccepted, EcsApi, EcsError, Instance, PowerRequest};

/// An [`EcsApi`] that tells the observer of every power call it made (whatever the answer: a
/// failed call may have been carried out), so the next lookup of the instance reads afresh
/// rather than decide from a reading that predates the call. Dry runs change nothing.
pub(crate) struct InvalidatingEcs {
    inner: Arc<dyn EcsApi>,
    shared: Arc<Shared>,
    credentials_key: String,
}

impl InvalidatingEcs {
    pub(super) fn new(
        inner: Arc<dyn EcsApi>,
        shared: Arc<Shared>,
        credentials_key: String,
    ) -> Self {
        Self {
            inner,
            shared,
            credentials_key,
        }
    }

    fn note(&self, region: &str, ids: &[String], request: PowerRequest) {
        if !request.dry_run() {
            let key = (self.credentials_key.clone(), region.to_string());
            self.shared.acted(&key, ids);
        }
    }
}

#[async_trait]
impl EcsApi for InvalidatingEcs {
    async fn describe_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        self.inner.describe_instances(region, instance_ids).await
    }

    async fn power(
        &self,
        region: &str,
        instance_id: &str,
        request: PowerRequest,
    ) -> Result<Accepted, EcsError> {
        let answer = self.inner.power(region, instance_id, request).await;
        self.note(region, &[instance_id.to_string()], request);
        answer
    }

    async fn power_if(
        &self,
        region: &str,
        instance_id: &str,
        request: PowerRequest,
        admitted: &Admission,
    ) -> Result<Accepted, EcsError> {
        let answer = self
            .inner
            .power_if(region, instance_id, request, admitted)
            .await;
        if !matches!(answer, Err(EcsError::NotSent(_))) {
            self.note(region, &[instance_id.to_string()], request);
        }
        answer
    }

    async fn power_batch(
        &self,
        region: &str,
        instance_ids: &[String],
        request: PowerRequest,
    ) -> Result<BatchAccepted, EcsError> {
        let answer = self.inner.power_batch(region, instance_ids, request).await;
        self.note(region, instance_ids, request);
        answer
    }
}
