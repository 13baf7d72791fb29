//! The small HTTP toolkit the credential providers share (STS, metadata, credentials URI).

use std::time::Duration;

use serde::Deserialize;

use super::cache::Expiring;
use super::{Credentials, CredentialsError, scrub};
use crate::transport::{self, BodyError, describe};

/// A client with short timeouts: a credential source that hangs must not hang the controller.
/// Like every client of this crate it never follows a redirect (see [`crate::transport`]).
pub(crate) fn client(connect: Duration, total: Duration) -> reqwest::Client {
    transport::http_client(connect, total)
        // Building only fails if the TLS backend cannot start; a default client then fails
        // on first use with a clear error instead of a panic here.
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A non-redirect answer of a credentials source, its body read (at most
/// [`transport::MAX_BODY_BYTES`]).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends `request` (described as `what`, e.g. `GET /latest/...`) to a credentials source.
///
/// The source being down is not a credentials problem: no answer, a body cut short, a server
/// error or a throttle (5xx, 429) is [`CredentialsError::Unavailable`], which callers retry on
/// the transient schedule. A redirect (never followed) or an oversized body is a refusal
/// ([`CredentialsError::Failed`]), as is any other answer the caller rejects.
pub(crate) async fn send(
    provider: &'static str,
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, CredentialsError> {
    let unavailable = |reason: String| CredentialsError::Unavailable { provider, reason };
    let failed = |reason: String| CredentialsError::Failed { provider, reason };
    let response = request
        .send()
        .await
        .map_err(|e| unavailable(format!("{what} got no answer: {}", describe(e))))?;
    let status = response.status().as_u16();
    if transport::is_redirect(status) {
        return Err(failed(format!(
            "{what} answered with a redirect (HTTP {status}), which is never followed"
        )));
    }
    if status >= 500 || status == 429 {
        return Err(unavailable(format!("{what} answered HTTP {status}")));
    }
    let body = transport::read_body(response).await.map_err(|e| match e {
        BodyError::TooLarge => failed(format!("{what}: {e}")),
        BodyError::Read(_) => unavailable(format!("{what}: {e}")),
    })?;
    Ok(Answer { status, body })
}

/// The temporary-credentials document of the metadata service and of a credentials URI:
/// `{"Code":"Success","AccessKeyId","AccessKeySecret","SecurityToken","Expiration"}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TemporaryCredentials {
    pub code: Option<String>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub security_token: Option<String>,
    pub expiration: Option<String>,
}

impl TemporaryCredentials {
    /// Validates the document; errors name the missing field, never a value.
    pub fn into_expiring(self, provider: &'static str) -> Result<Expiring, CredentialsError> {
        let fail = |reason: String| CredentialsError::Failed { provider, reason };
        if let Some(code) = self.code.as_deref().filter(|c| *c != "Success") {
            return Err(fail(format!(
                "the answer's Code is {:?}, not \"Success\"",
                scrub(code, &[])
            )));
        }
        let field = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| fail(format!("the answer has no {name}")))
        };
        let id = field(self.access_key_id, "AccessKeyId")?;
        let secret = field(self.access_key_secret, "AccessKeySecret")?;
        let token = field(self.security_token, "SecurityToken")?;
        let expiration = field(self.expiration, "Expiration")?;
        let expires_at = parse_expiration(&expiration)
            .ok_or_else(|| fail(format!("Expiration {expiration:?} is not a UTC time")))?;
        Ok(Expiring::new(
            Credentials::new(id, secret, Some(token)),
            Some(expires_at),
        ))
    }
}

/// `2026-11-22T09:00:00Z` (the SDKs' `%Y-%m-%dT%H:%M:%SZ`).
pub(crate) fn parse_expiration(text: &str) -> Option<jiff::Timestamp> {
    text.trim().parse().ok()
}

/// Parses a JSON body without ever quoting it in the error (it may hold a secret).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    body: &[u8],
) -> Result<T, CredentialsError> {
    serde_json::from_slice(body).map_err(|e| CredentialsError::Failed {
        provider,
        reason: format!(
            "the answer is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
    })
}
