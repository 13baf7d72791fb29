//! Everything that talks to the ECS OpenAPI: signing, the HTTP client, credentials, errors.
//!
//! The controller only sees [`EcsApi`]; the signed HTTP client is its real implementation,
//! and tests put an in-memory fake or the simulator behind it.

pub mod cli;
pub mod client;
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

/// The ECS calls the controller makes. Every method is one logical call; the implementation
/// owns chunking, paging, retries and rate limiting.
#[async_trait]
pub trait EcsApi: Send + Sync {
    /// DescribeInstances for these ids (any number: chunked by 100, every page read).
    /// Ids that do not exist are simply absent from the answer, as with ECS itself.
    async fn describe_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, EcsError>;

    async fn start_instance(
        &self,
        region: &str,
        instance_id: &str,
        options: &StartOptions,
    ) -> Result<Accepted, EcsError>;

    async fn stop_instance(
        &self,
        region: &str,
        instance_id: &str,
        options: &StopOptions,
    ) -> Result<Accepted, EcsError>;

    async fn reboot_instance(
        &self,
        region: &str,
        instance_id: &str,
        options: &RebootOptions,
    ) -> Result<Accepted, EcsError>;

    /// StartInstances with `BatchOptimization=SuccessFirst` (at most 100 ids).
    async fn start_instances(
        &self,
        region: &str,
        instance_ids: &[String],
        options: &StartOptions,
    ) -> Result<BatchAccepted, EcsError>;

    /// StopInstances with `BatchOptimization=SuccessFirst` (at most 100 ids).
    async fn stop_instances(
        &self,
        region: &str,
        instance_ids: &[String],
        options: &StopOptions,
    ) -> Result<BatchAccepted, EcsError>;

    /// RebootInstances with `BatchOptimization=SuccessFirst` (at most 100 ids; `force` is sent
    /// as `ForceReboot`).
    async fn reboot_instances(
        &self,
        region: &str,
        instance_ids: &[String],
        options: &RebootOptions,
    ) -> Result<BatchAccepted, EcsError>;
}
