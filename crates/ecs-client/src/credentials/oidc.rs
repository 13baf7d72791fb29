//! RRSA: a pod's OIDC token exchanged for temporary credentials with STS `AssumeRoleWithOIDC`.
//!
//! The request follows `alibabacloud_credentials/provider/oidc.py` (1.0.12): an anonymous RPC
//! call (the OIDC token is the proof, there is no signature) with `Action=AssumeRoleWithOIDC`,
//! `Format=JSON`, `Version=2015-04-01`, `DurationSeconds`, `RoleArn`, `OIDCProviderArn`,
//! `OIDCToken`, `RoleSessionName`, `Timestamp` (and `Policy` when set). The Python SDK sends
//! them as a GET query; we POST the same parameters as a form body instead (STS, like every RPC
//! endpoint, reads both), which keeps the token out of URLs, proxy logs and error texts.
//! The token file is read again on every refresh: the kubelet rotates it.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;

use super::cache::{Expiring, RefreshCache};
use super::http::{self, TemporaryCredentials};
use super::{Credentials, CredentialsError, CredentialsProvider, scrub};

const NAME: &str = "oidc_role_arn";
/// STS refuses sessions shorter than this.
pub const MIN_DURATION_SECONDS: u32 = 900;

/// What `AssumeRoleWithOIDC` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcRoleConfig {
    /// `ALIBABA_CLOUD_ROLE_ARN`.
    pub role_arn: String,
    /// `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`.
    pub oidc_provider_arn: String,
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (on ACK: `/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token`).
    pub token_file: PathBuf,
    /// `ALIBABA_CLOUD_ROLE_SESSION_NAME`, default `ecs-power-controller-<unix time>`.
    pub role_session_name: String,
    pub duration_seconds: u32,
    /// `https://sts.aliyuncs.com/` unless a region, the VPC form or an override says otherwise.
    pub sts_endpoint: Url,
}

#[derive(Debug)]
pub struct OidcRoleProvider {
    config: OidcRoleConfig,
    http: reqwest::Client,
    cache: RefreshCache,
}

impl OidcRoleProvider {
    pub fn new(config: OidcRoleConfig) -> Result<Self, CredentialsError> {
        let fail = |reason: String| CredentialsError::Failed {
            provider: NAME,
            reason,
        };
        if config.duration_seconds < MIN_DURATION_SECONDS {
            return Err(fail(format!(
                "session duration {}s is below STS's minimum of {MIN_DURATION_SECONDS}s",
                config.duration_seconds
            )));
        }
        for (value, name) in [
            (&config.role_arn, "role ARN (ALIBABA_CLOUD_ROLE_ARN)"),
            (
                &config.oidc_provider_arn,
                "OIDC provider ARN (ALIBABA_CLOUD_OIDC_PROVIDER_ARN)",
            ),
        ] {
            if value.trim().is_empty() {
                return Err(fail(format!("the {name} is empty")));
            }
        }
        Ok(Self {
            config,
            http: http::client(Duration::from_secs(5), Duration::from_secs(15)),
            cache: RefreshCache::default(),
        })
    }

    async fn fetch(&self) -> Result<Expiring, CredentialsError> {
        let fail = |reason: String| CredentialsError::Failed {
            provider: NAME,
            reason,
        };
        let token = tokio::fs::read_to_string(&self.config.token_file)
            .await
            .map_err(|e| {
                fail(format!(
                    "cannot read the OIDC token file {}: {e}",
                    self.config.token_file.display()
                ))
            })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(fail(format!(
                "the OIDC token file {} is empty",
                self.config.token_file.display()
            )));
        }
        let timestamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let duration = self.config.duration_seconds.to_string();
        let form = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            ("DurationSeconds", duration.as_str()),
            ("RoleArn", self.config.role_arn.as_str()),
            ("OIDCProviderArn", self.config.oidc_provider_arn.as_str()),
            ("OIDCToken", token),
            ("RoleSessionName", self.config.role_session_name.as_str()),
            ("Timestamp", timestamp.as_str()),
        ];
        let request = self.http.post(self.config.sts_endpoint.clone()).form(&form);
        let http::Answer { status, body } =
            http::send(NAME, "STS AssumeRoleWithOIDC", request).await?;
        if status != 200 {
            // Quote STS's code and message (they say what to fix: an expired token, a trust
            // policy that does not name this provider), with the token scrubbed out just in case.
            let reason = match serde_json::from_slice::<StsError>(&body) {
                Ok(StsError {
                    code: Some(code),
                    message,
                    request_id,
                }) => format!(
                    "STS refused AssumeRoleWithOIDC (HTTP {status}): {}: {} (RequestId {})",
                    code,
                    message.unwrap_or_default(),
                    request_id.unwrap_or_default()
                ),
                _ => format!("STS refused AssumeRoleWithOIDC with HTTP {status}"),
            };
            return Err(fail(scrub(&reason, &[token])));
        }
        let answer: StsAnswer = http::parse_json(NAME, &body)?;
        let Some(credentials) = answer.credentials else {
            return Err(fail("STS's answer has no Credentials".into()));
        };
        // STS's Credentials object has no Code; the rest is the shared temporary-credentials shape.
        credentials.into_expiring(NAME)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswer {
    credentials: Option<TemporaryCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsError {
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

#[async_trait]
impl CredentialsProvider for OidcRoleProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.cache.get(NAME, || self.fetch()).await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}
