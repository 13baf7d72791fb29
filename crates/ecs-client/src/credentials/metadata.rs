//! The ECS RAM role: temporary credentials from the instance metadata service.
//!
//! Follows `alibabacloud_credentials/provider/ecs_ram_role.py` (1.0.12): hardened mode first
//! (`PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds: 21600`, then the
//! token in `X-aliyun-ecs-metadata-token`), falling back to plain GETs unless
//! `ALIBABA_CLOUD_IMDSV1_DISABLED=true`. The role is `ALIBABA_CLOUD_ECS_METADATA`, or the one
//! the service lists. Short timeouts: off ECS the address does not answer.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;

use super::cache::{Expiring, RefreshCache};
use super::http::{self, TemporaryCredentials};
use super::{Credentials, CredentialsError, CredentialsProvider};

pub(super) const NAME: &str = "ecs_ram_role";
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
const TOKEN_PATH: &str = "latest/api/token";
const CREDENTIALS_PATH: &str = "latest/meta-data/ram/security-credentials/";
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
const TOKEN_TTL_SECONDS: &str = "21600";

#[derive(Debug)]
pub struct EcsRamRoleProvider {
    endpoint: Url,
    role_name: Option<String>,
    imds_v1_disabled: bool,
    http: reqwest::Client,
    cache: RefreshCache,
}

impl EcsRamRoleProvider {
    /// `endpoint`: the metadata service base URL (`http://100.100.100.200`, or a test server).
    pub fn new(
        endpoint: &str,
        role_name: Option<String>,
        imds_v1_disabled: bool,
    ) -> Result<Self, CredentialsError> {
        let mut endpoint = Url::parse(endpoint).map_err(|e| CredentialsError::Failed {
            provider: NAME,
            reason: format!("metadata endpoint {endpoint:?} is not a URL: {e}"),
        })?;
        endpoint.set_path("/");
        Ok(Self {
            endpoint,
            role_name: role_name.filter(|r| !r.trim().is_empty()),
            imds_v1_disabled,
            http: http::client(Duration::from_secs(1), Duration::from_secs(3)),
            cache: RefreshCache::default(),
        })
    }

    fn fail(reason: String) -> CredentialsError {
        CredentialsError::Failed {
            provider: NAME,
            reason,
        }
    }

    fn url(&self, path: &str) -> Url {
        // Joining a relative path onto "/" cannot fail for the constant paths and validated
        // role names used here; fall back to the base rather than panic.
        self.endpoint
            .join(path)
            .unwrap_or_else(|_| self.endpoint.clone())
    }

    /// The hardened-mode token; `None` when the service gives none and plain mode is allowed.
    async fn session_token(&self) -> Result<Option<String>, CredentialsError> {
        let request = self
            .http
            .put(self.url(TOKEN_PATH))
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS);
        let refusal = match http::send(NAME, &format!("PUT /{TOKEN_PATH}"), request).await {
            Ok(answer) if answer.status == 200 => {
                let token = String::from_utf8_lossy(&answer.body).trim().to_string();
                if !token.is_empty() {
                    return Ok(Some(token));
                }
                Self::fail(format!("PUT /{TOKEN_PATH} answered an empty token"))
            }
            Ok(answer) => Self::fail(format!("PUT /{TOKEN_PATH} answered HTTP {}", answer.status)),
            Err(error) => error,
        };
        if !self.imds_v1_disabled {
            return Ok(None);
        }
        // Keep the kind: a metadata service that is down is an outage, not a refusal.
        let reason = format!(
            "cannot get a metadata token ({refusal}) and ALIBABA_CLOUD_IMDSV1_DISABLED=true forbids plain mode"
        );
        Err(match refusal {
            CredentialsError::Unavailable { .. } => CredentialsError::Unavailable {
                provider: NAME,
                reason,
            },
            _ => Self::fail(reason),
        })
    }

    async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let what = format!("the metadata service at {} (GET /{path})", self.endpoint);
        let answer = http::send(NAME, &what, request).await?;
        if answer.status != 200 {
            return Err(Self::fail(format!(
                "the metadata service answered GET /{path} with HTTP {} (is a RAM role attached to this instance?)",
                answer.status
            )));
        }
        String::from_utf8(answer.body)
            .map_err(|_| Self::fail(format!("the answer to GET /{path} is not UTF-8 text")))
    }

    async fn fetch(&self) -> Result<Expiring, CredentialsError> {
        let token = self.session_token().await?;
        let role = match &self.role_name {
            Some(role) => role.clone(),
            None => self
                .get_text(CREDENTIALS_PATH, token.as_deref())
                .await?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        if role.is_empty()
            || !role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(Self::fail(format!(
                "{role:?} is not a RAM role name (set ALIBABA_CLOUD_ECS_METADATA to the role attached to the instance)"
            )));
        }
        let body = self
            .get_text(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref())
            .await?;
        http::parse_json::<TemporaryCredentials>(NAME, body.as_bytes())?.into_expiring(NAME)
    }
}

#[async_trait]
impl CredentialsProvider for EcsRamRoleProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.cache.get(NAME, || self.fetch()).await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}
