//! The small HTTP toolkit the credential providers share (STS, metadata, credentials URI).

use std::time::Duration;

use serde::Deserialize;

use super::cache::Expiring;
use super::{Credentials, CredentialsError, scrub};

/// A client with short timeouts: a credential source that hangs must not hang the controller.
pub(crate) fn client(connect: Duration, total: Duration) -> reqwest::Client {
    crate::client::ensure_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .user_agent(concat!("ecs-power-controller/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building only fails if the TLS backend cannot start; a default client then fails
        // on first use with a clear error instead of a panic here.
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A transport error as text, without the URL (which may carry parameters).
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
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
