//! The signed HTTP client for the ECS OpenAPI: the real [`EcsApi`].
//!
//! Requests are sent the way the official SDKs send them: `POST /` with every parameter in the
//! query string and an empty body, signed with V3 (`ACS3-HMAC-SHA256`, headers) by default or
//! V1 (HMAC-SHA1, `Signature` in the query) on request. Both `alibabacloud-tea-openapi` with
//! `signature_algorithm='v2'` and the legacy `aliyun-python-sdk-core` send V1 that way too.
//!
//! Every attempt waits for its (region, action) rate-limit token and any throttle pause, takes
//! fresh credentials (temporary ones rotate), a fresh nonce and timestamp, and is retried only
//! as [`crate::retry`] allows. The HTTP guards (no redirects, bounded bodies, capped waits) are
//! [`crate::transport`]'s; every error answer is redacted of the request's credentials and
//! signature before it leaves this module.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngExt;
use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::EcsApi;
use crate::credentials::{Credentials, CredentialsProvider};
use crate::endpoint::{EndpointConfig, host_header};
use crate::error::{ApiError, EcsError, ErrorClass, redact};
use crate::ratelimit::{RateLimiter, RateLimits};
use crate::retry::{CallKind, RetryPolicy};
use crate::sign::{self, EMPTY_BODY_SHA256, SignatureVersion, V3Input};
use crate::transport::{self, describe};
use crate::types::{Accepted, BatchAccepted, BatchItem, Instance, PowerRequest};
use crate::wire::{Acknowledgement, BatchResponse, DescribeInstancesResponse, ErrorBody};

/// The ECS API version every action here belongs to.
pub const API_VERSION: &str = "2014-05-26";
/// DescribeInstances takes at most 100 ids, and batch actions at most 100 `InstanceId.N`.
pub const MAX_IDS_PER_CALL: usize = 100;
/// A safety stop for paging: 100 ids per chunk never need more than a few pages.
const MAX_PAGES: usize = 50;

/// How the client talks to ECS.
#[derive(Clone, Debug, PartialEq)]
pub struct EcsClientConfig {
    pub endpoint: EndpointConfig,
    pub signature_version: SignatureVersion,
    /// TCP + TLS set-up.
    pub connect_timeout: Duration,
    /// The whole request, first byte to last.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
}

impl Default for EcsClientConfig {
    fn default() -> Self {
        Self {
            endpoint: EndpointConfig::default(),
            signature_version: SignatureVersion::V3,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
        }
    }
}

/// The ECS client. Cheap to clone; clones share connections and rate-limit buckets.
#[derive(Clone)]
pub struct EcsClient {
    http: reqwest::Client,
    config: Arc<EcsClientConfig>,
    credentials: Arc<dyn CredentialsProvider>,
    limiter: RateLimiter,
}

impl std::fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsClient")
            .field("config", &self.config)
            .field("credentials", &self.credentials.name())
            .finish_non_exhaustive()
    }
}

/// A parameter list as sent: (name, raw value).
type Params = Vec<(String, String)>;

fn param(name: impl Into<String>, value: impl Into<String>) -> (String, String) {
    (name.into(), value.into())
}

fn flag(value: bool) -> String {
    if value { "true" } else { "false" }.to_string()
}

impl EcsClient {
    pub fn new(
        config: EcsClientConfig,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> Result<Self, EcsError> {
        let http = transport::http_client(config.connect_timeout, config.request_timeout).map_err(
            |e| {
                EcsError::InvalidInput(format!(
                    "cannot set up the HTTP client (is a TLS provider installed?): {e}"
                ))
            },
        )?;
        Ok(Self {
            http,
            limiter: RateLimiter::new(config.rate_limits.clone()),
            config: Arc::new(config),
            credentials,
        })
    }

    /// The same client (connections, rate-limit buckets, settings) signing with other
    /// credentials: every credential set shares one quota budget.
    pub fn with_credentials(&self, credentials: Arc<dyn CredentialsProvider>) -> Self {
        Self {
            credentials,
            ..self.clone()
        }
    }

    pub fn config(&self) -> &EcsClientConfig {
        &self.config
    }

    /// Calls `action` with retries; decodes the success body as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        region: &str,
        params: &[(String, String)],
        kind: CallKind,
    ) -> Result<T, EcsError> {
        let started = Instant::now();
        // A call about one instance is throttled as that instance (see `crate::ratelimit`).
        let caller = params
            .iter()
            .find(|(name, _)| name == "InstanceId")
            .map(|(_, id)| id.as_str());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match self.attempt(action, region, caller, params).await {
                Ok((status, body)) => serde_json::from_slice(&body).map_err(|e| EcsError::Decode {
                    action: action.to_string(),
                    http_status: status,
                    detail: format!("the body is not the expected JSON: {e}"),
                }),
                Err(error) => Err(error),
            };
            let error = match outcome {
                Ok(value) => {
                    self.limiter.succeeded(region, action, caller);
                    return Ok(value);
                }
                Err(error) => error,
            };
            if let EcsError::Api(api) = &error
                && error.class() == ErrorClass::Throttled
            {
                // The whole (region, action) waits, not just this call; an instance throttled
                // again waits alone (see `crate::ratelimit`).
                self.limiter
                    .throttled(region, action, caller, api.retry_after);
            }
            match self
                .config
                .retry
                .next_delay(kind, &error, attempt, started.elapsed())
            {
                Some(delay) => {
                    tracing::debug!(action, attempt, ?delay, error = %error, "retrying ECS call");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }

    /// One signed request: the HTTP status and body of a 2xx answer, or the error.
    async fn attempt(
        &self,
        action: &str,
        region: &str,
        caller: Option<&str>,
        params: &[(String, String)],
    ) -> Result<(u16, Vec<u8>), EcsError> {
        let url = self.config.endpoint.url_for(region)?;
        self.limiter.acquire(region, action, caller).await;
        let credentials = self.credentials.credentials().await?;
        let (request, signature) = match self.config.signature_version {
            SignatureVersion::V3 => self.signed_v3(action, url.clone(), params, &credentials),
            SignatureVersion::V1 => self.signed_v1(action, url.clone(), params, &credentials),
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(action, &url, e))?;
        let status = response.status().as_u16();
        let decode = |detail: String| EcsError::Decode {
            action: action.to_string(),
            http_status: status,
            detail,
        };
        if transport::is_redirect(status) {
            return Err(decode(
                "a redirect, not followed: ECS never redirects (check the ECS endpoint and any proxy in between)".into(),
            ));
        }
        let retry_after =
            transport::retry_after(response.headers(), status, jiff::Timestamp::now());
        let body = transport::read_body(response)
            .await
            .map_err(|e| decode(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok((status, body));
        }
        // A server may quote the request back (the V1 string to sign holds the security token):
        // nothing downstream (status, events, logs, the CLI) ever sees these.
        let mut secrets = vec![credentials.access_key_secret.expose(), signature.as_str()];
        secrets.extend(credentials.security_token.as_ref().map(|t| t.expose()));
        Err(match ErrorBody::parse(&body, status) {
            Some(api) => EcsError::Api(ApiError { retry_after, ..api }.redacted(&secrets)),
            None => decode(format!(
                "not an ECS error body: {}",
                snippet(&redact(&String::from_utf8_lossy(&body), &secrets))
            )),
        })
    }

    /// V3: parameters in the query, `x-acs-*` headers, `Authorization`.
    fn signed_v3(
        &self,
        action: &str,
        mut url: Url,
        params: &[(String, String)],
        credentials: &Credentials,
    ) -> (reqwest::RequestBuilder, String) {
        let mut headers = vec![
            param("host", host_header(&url)),
            param("x-acs-action", action),
            param("x-acs-version", API_VERSION),
            param("x-acs-date", timestamp()),
            param("x-acs-signature-nonce", nonce()),
            param("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        if let Some(token) = &credentials.security_token {
            headers.push(param("x-acs-security-token", token.expose()));
        }
        let input = V3Input {
            method: "POST",
            path: "/",
            query: params,
            headers: &headers,
            payload_hash: EMPTY_BODY_SHA256,
        };
        let secret = credentials.access_key_secret.expose();
        let authorization = input.authorization(&credentials.access_key_id, secret);
        let signature = input.signature(secret);
        set_query(&mut url, params);
        let mut request = self.http.post(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        (request.header("authorization", authorization), signature)
    }

    /// V1: the RPC common parameters and `Signature` join the query.
    fn signed_v1(
        &self,
        action: &str,
        mut url: Url,
        params: &[(String, String)],
        credentials: &Credentials,
    ) -> (reqwest::RequestBuilder, String) {
        let mut all: Params = params.to_vec();
        all.extend([
            param("AccessKeyId", credentials.access_key_id.as_str()),
            param("Action", action),
            param("Format", "JSON"),
            param("SignatureMethod", "HMAC-SHA1"),
            param("SignatureNonce", nonce()),
            param("SignatureVersion", "1.0"),
            param("Timestamp", timestamp()),
            param("Version", API_VERSION),
        ]);
        if let Some(token) = &credentials.security_token {
            all.push(param("SecurityToken", token.expose()));
        }
        let string_to_sign = sign::v1_string_to_sign("POST", &all);
        let signature = sign::v1_signature(credentials.access_key_secret.expose(), &string_to_sign);
        all.push(param("Signature", signature.clone()));
        set_query(&mut url, &all);
        (self.http.post(url), signature)
    }

    async fn single(
        &self,
        action: &str,
        region: &str,
        instance_id: &str,
        mut params: Params,
    ) -> Result<String, EcsError> {
        validate_instance_id(instance_id)?;
        params.push(param("RegionId", region));
        params.push(param("InstanceId", instance_id));
        let ack: Acknowledgement = self
            .call(action, region, &params, CallKind::Mutation)
            .await?;
        Ok(ack.request_id)
    }

    async fn batch(
        &self,
        action: &str,
        region: &str,
        instance_ids: &[String],
        mut params: Params,
    ) -> Result<BatchAccepted, EcsError> {
        if instance_ids.is_empty() || instance_ids.len() > MAX_IDS_PER_CALL {
            return Err(EcsError::InvalidInput(format!(
                "{action} takes 1 to {MAX_IDS_PER_CALL} instance ids, got {}",
                instance_ids.len()
            )));
        }
        for (n, id) in instance_ids.iter().enumerate() {
            validate_instance_id(id)?;
            params.push(param(format!("InstanceId.{}", n + 1), id.as_str()));
        }
        params.push(param("RegionId", region));
        params.push(param("BatchOptimization", "SuccessFirst"));
        let answer: BatchResponse = self
            .call(action, region, &params, CallKind::Mutation)
            .await?;
        let request_id = answer.request_id;
        let items = answer
            .instance_responses
            .instance_response
            .into_iter()
            .map(|item| BatchItem {
                result: match item.error_code() {
                    None => Ok(()),
                    // A batch item has no HTTP status of its own: 0 says so, and the error
                    // class comes from the code alone.
                    Some(code) => Err(EcsError::Api(ApiError {
                        code,
                        message: item.message.clone().unwrap_or_default(),
                        request_id: request_id.clone(),
                        http_status: 0,
                        recommend: None,
                        retry_after: None,
                    })),
                },
                previous_status: item.previous_status.as_deref().and_then(|s| s.parse().ok()),
                current_status: item.current_status.as_deref().and_then(|s| s.parse().ok()),
                instance_id: item.instance_id,
            })
            .collect();
        Ok(BatchAccepted { request_id, items })
    }
}

#[async_trait]
impl EcsApi for EcsClient {
    async fn describe_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        // An empty InstanceIds would list every instance of the region: never send that.
        let mut instances = Vec::new();
        for id in instance_ids {
            validate_instance_id(id)?;
        }
        for chunk in instance_ids.chunks(MAX_IDS_PER_CALL) {
            let ids = serde_json::to_string(chunk).map_err(|e| {
                EcsError::InvalidInput(format!("instance ids cannot be encoded: {e}"))
            })?;
            let mut next_token: Option<String> = None;
            for page in 0.. {
                if page == MAX_PAGES {
                    return Err(EcsError::Decode {
                        action: "DescribeInstances".into(),
                        http_status: 200,
                        detail: format!(
                            "still paging after {MAX_PAGES} pages; NextToken never ended"
                        ),
                    });
                }
                let mut params = vec![
                    param("RegionId", region),
                    param("InstanceIds", ids.as_str()),
                    param("MaxResults", MAX_IDS_PER_CALL.to_string()),
                ];
                if let Some(token) = &next_token {
                    params.push(param("NextToken", token.as_str()));
                }
                let answer: DescribeInstancesResponse = self
                    .call("DescribeInstances", region, &params, CallKind::Read)
                    .await?;
                instances.extend(answer.instances.instance.into_iter().map(Instance::from));
                match answer.next_token.filter(|t| !t.is_empty()) {
                    Some(token) if Some(&token) != next_token.as_ref() => next_token = Some(token),
                    _ => break,
                }
            }
        }
        Ok(instances)
    }

    async fn power(
        &self,
        region: &str,
        instance_id: &str,
        request: PowerRequest,
    ) -> Result<Accepted, EcsError> {
        let params = power_params(request, false);
        match self
            .single(request.action().single(), region, instance_id, params)
            .await
        {
            Ok(request_id) => Ok(Accepted {
                request_id,
                dry_run: false,
            }),
            // ECS answers a passed dry run with an error code; to the caller it is an answer.
            Err(err) if request.dry_run() && err.is_dry_run_passed() => Ok(Accepted {
                request_id: err.request_id().unwrap_or_default().to_string(),
                dry_run: true,
            }),
            Err(err) => Err(err),
        }
    }

    async fn power_batch(
        &self,
        region: &str,
        instance_ids: &[String],
        request: PowerRequest,
    ) -> Result<BatchAccepted, EcsError> {
        let params = power_params(request, true);
        self.batch(request.action().batch(), region, instance_ids, params)
            .await
    }
}

/// The parameters of a power action besides region and ids. The batch calls differ:
/// StartInstances has no InitLocalDisk, and RebootInstances calls ForceStop ForceReboot.
fn power_params(request: PowerRequest, batch: bool) -> Params {
    match request {
        PowerRequest::Start(o) if batch => vec![param("DryRun", flag(o.dry_run))],
        PowerRequest::Start(o) => vec![
            param("InitLocalDisk", flag(o.init_local_disk)),
            param("DryRun", flag(o.dry_run)),
        ],
        PowerRequest::Stop(o) => {
            let mut params = vec![
                param("ForceStop", flag(o.force)),
                param("DryRun", flag(o.dry_run)),
            ];
            if let Some(mode) = o.stopped_mode {
                params.push(param("StoppedMode", mode.as_str()));
            }
            params
        }
        PowerRequest::Reboot(o) => vec![
            param(
                if batch { "ForceReboot" } else { "ForceStop" },
                flag(o.force),
            ),
            param("DryRun", flag(o.dry_run)),
        ],
    }
}

/// Kept here too: callers set up TLS through the client module.
pub use crate::transport::ensure_tls_provider;

/// Instance ids are `i-` plus letters and digits; anything else is refused before it is sent.
fn validate_instance_id(id: &str) -> Result<(), EcsError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(EcsError::InvalidInput(format!(
            "instance id {id:?} is not an ECS instance id (e.g. i-bp67acfmxazb4ph1234)"
        )))
    }
}

/// The canonical percent-encoding on the wire too, so what is signed is exactly what is sent.
fn set_query(url: &mut Url, params: &[(String, String)]) {
    url.set_query(Some(&sign::canonical_query(params)));
}

/// `%Y-%m-%dT%H:%M:%SZ`, UTC.
fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// 128 random bits as hex: unique per request, as `SignatureNonceUsed` demands.
fn nonce() -> String {
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}

/// A failed send: [`EcsError::Connect`] when the connection was never made (nothing was sent,
/// so even a mutation may be retried), [`EcsError::Transport`] otherwise.
fn transport_error(action: &str, url: &Url, error: reqwest::Error) -> EcsError {
    let (action, endpoint) = (action.to_string(), url.as_str().to_string());
    if error.is_connect() {
        EcsError::Connect {
            action,
            endpoint,
            detail: describe(error),
        }
    } else {
        EcsError::Transport {
            action,
            endpoint,
            detail: describe(error),
        }
    }
}

/// The start of a body that is not ECS JSON (an HTML error page, say), on one line.
fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".into();
    }
    let mut cut: String = one_line.chars().take(120).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests;
