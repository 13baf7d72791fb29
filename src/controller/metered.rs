//! Counts and times every ECS call, whatever implementation is behind [`EcsApi`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::telemetry::Metrics;
use ecs_client::{
    Accepted, BatchAccepted, EcsApi, EcsError, Instance, RebootOptions, StartOptions, StopOptions,
};

/// An [`EcsApi`] that records `ecs_calls` and `ecs_call_duration_seconds` for each call.
pub struct MeteredEcs {
    inner: Arc<dyn EcsApi>,
    metrics: Metrics,
}

impl MeteredEcs {
    pub fn new(inner: Arc<dyn EcsApi>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn metered<T>(
        &self,
        action: &str,
        call: impl Future<Output = Result<T, EcsError>>,
    ) -> Result<T, EcsError> {
        let started = Instant::now();
        let result = call.await;
        let code = match &result {
            Ok(_) => "OK",
            Err(err) => err.code(),
        };
        self.metrics.ecs_call(action, code, started.elapsed());
        result
    }
}

#[async_trait]
impl EcsApi for MeteredEcs {
    async fn describe_instances(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        self.metered(
            "DescribeInstances",
            self.inner.describe_instances(region, ids),
        )
        .await
    }

    async fn start_instance(
        &self,
        region: &str,
        id: &str,
        options: &StartOptions,
    ) -> Result<Accepted, EcsError> {
        self.metered(
            "StartInstance",
            self.inner.start_instance(region, id, options),
        )
        .await
    }

    async fn stop_instance(
        &self,
        region: &str,
        id: &str,
        options: &StopOptions,
    ) -> Result<Accepted, EcsError> {
        self.metered(
            "StopInstance",
            self.inner.stop_instance(region, id, options),
        )
        .await
    }

    async fn reboot_instance(
        &self,
        region: &str,
        id: &str,
        options: &RebootOptions,
    ) -> Result<Accepted, EcsError> {
        self.metered(
            "RebootInstance",
            self.inner.reboot_instance(region, id, options),
        )
        .await
    }

    async fn start_instances(
        &self,
        region: &str,
        ids: &[String],
        options: &StartOptions,
    ) -> Result<BatchAccepted, EcsError> {
        self.metered(
            "StartInstances",
            self.inner.start_instances(region, ids, options),
        )
        .await
    }

    async fn stop_instances(
        &self,
        region: &str,
        ids: &[String],
        options: &StopOptions,
    ) -> Result<BatchAccepted, EcsError> {
        self.metered(
            "StopInstances",
            self.inner.stop_instances(region, ids, options),
        )
        .await
    }

    async fn reboot_instances(
        &self,
        region: &str,
        ids: &[String],
        options: &RebootOptions,
    ) -> Result<BatchAccepted, EcsError> {
        self.metered(
            "RebootInstances",
            self.inner.reboot_instances(region, ids, options),
        )
        .await
    }
}
