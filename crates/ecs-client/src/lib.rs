//! Everything that talks to the ECS OpenAPI: signing, the HTTP client, credentials, errors.
//!
//! The controller only sees [`EcsApi`]; the signed HTTP client is its real implementation,
//! and tests put an in-memory fake or the simulator behind it.

pub mod client;
pub mod command;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod ratelimit;
pub mod retry;
pub mod sign;
pub mod transport;
pub mod types;
pub mod wire;

#[cfg(test)]
pub(crate) mod testing;

use async_trait::async_trait;

pub use client::{EcsClient, EcsClientConfig};
pub use credentials::{Credentials, CredentialsProvider};
pub use error::{ApiError, EcsError, ErrorClass};
pub use types::*;

/// The ECS calls the controller makes: a look, and the three power actions on one instance or
/// on a batch. Every method is one logical call; the implementation owns chunking, paging,
/// retries and rate limiting. Few methods, so decorators (metering, batching) and fakes stay
/// short.
/// Whether a mutating call may still go out: asked again by whatever holds a call back before
/// sending it (batching), so a permission withdrawn meanwhile stops it. See
/// [`EcsApi::power_if`].
pub type Admission = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

#[async_trait]
pub trait EcsApi: Send + Sync {
    /// DescribeInstances for these ids (any number: chunked by 100, every page read).
    /// Ids that do not exist are simply absent from the answer, as with ECS itself.
    async fn describe_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, EcsError>;

    /// StartInstance, StopInstance or RebootInstance. A passed dry run is
    /// `Ok(Accepted { dry_run: true, .. })`.
    async fn power(
        &self,
        region: &str,
        instance_id: &str,
        request: PowerRequest,
    ) -> Result<Accepted, EcsError>;

    /// [`power`](Self::power), unless `admitted` says no by the time the call would leave:
    /// `Err(EcsError::NotSent)` then, and nothing was sent. A decorator that holds calls back
    /// before sending (batching) asks again just before they leave.
    async fn power_if(
        &self,
        region: &str,
        instance_id: &str,
        request: PowerRequest,
        admitted: &Admission,
    ) -> Result<Accepted, EcsError> {
        if !admitted() {
            return Err(EcsError::NotSent(request.action().single().into()));
        }
        self.power(region, instance_id, request).await
    }

    /// StartInstances, StopInstances or RebootInstances with `BatchOptimization=SuccessFirst`
    /// (at most 100 ids; a reboot's `force` is sent as `ForceReboot`).
    async fn power_batch(
        &self,
        region: &str,
        instance_ids: &[String],
        request: PowerRequest,
    ) -> Result<BatchAccepted, EcsError>;
}
