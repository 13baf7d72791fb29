//! Counts and times every ECS call, whatever implementation is behind [`EcsApi`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::telemetry::Metrics;
use ecs_client::{Accepted, BatchAccepted, EcsApi, EcsError, Instance, PowerRequest};

/// An [`EcsApi`] that records `ecs_calls` and `ecs_call_duration_seconds` for each call,
/// labelled with the ECS action and the answer's code (`OK`, or the error code; a passed dry
/// run is labelled `DryRunOperation`, the code ECS answered it with).
pub(crate) struct CountingEcs {
    inner: Arc<dyn EcsApi>,
    metrics: Metrics,
}

impl CountingEcs {
    pub(crate) fn new(inner: Arc<dyn EcsApi>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn counted<T>(
        &self,
        action: &str,
        call: impl Future<Output = Result<T, EcsError>>,
        code: impl Fn(&T) -> &'static str,
    ) -> Result<T, EcsError> {
        let started = Instant::now();
        let result = call.await;
        let code = match &result {
            Ok(answer) => code(answer),
            Err(err) => err.code(),
        };
        self.metrics.ecs_call(action, code, started.elapsed());
        result
    }
}

fn ok<T>(_: &T) -> &'static str {
    "OK"
}

#[async_trait]
impl EcsApi for CountingEcs {
    async fn describe_instances(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        let call = self.inner.describe_instances(region, ids);
        self.counted("DescribeInstances", call, ok).await
    }

    async fn power(
        &self,
        region: &str,
        id: &str,
        request: PowerRequest,
    ) -> Result<Accepted, EcsError> {
        let call = self.inner.power(region, id, request);
        self.counted(request.action().single(), call, |a: &Accepted| {
            if a.dry_run { "DryRunOperation" } else { "OK" }
        })
        .await
    }

    async fn power_batch(
        &self,
        region: &str,
        ids: &[String],
        request: PowerRequest,
    ) -> Result<BatchAccepted, EcsError> {
        let call = self.inner.power_batch(region, ids, request);
        self.counted(request.action().batch(), call, ok).await
    }
}
