//! Credentials for signing ECS requests, and the provider chain that finds them.
//!
//! Secrets are wrapped so that `Debug` and `Display` can never print them, and no error built
//! here quotes a response body that could carry one.
//!
//! The chain follows the official SDKs' default (checked against `alibabacloud-credentials`
//! 1.0.12, `provider/default.py`): environment, RRSA/OIDC, the CLI's `config.json`, the
//! credentials INI file, the ECS RAM role, `ALIBABA_CLOUD_CREDENTIALS_URI`. The controller
//! usually skips the chain and passes [`Credentials`] read from a Kubernetes Secret.

mod cache;
mod chain;
mod env;
mod http;
mod metadata;
mod oidc;
mod profile;
#[cfg(test)]
mod scenarios;
mod settings;
mod uri;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

pub use chain::DefaultCredentialsChain;
pub use env::EnvironmentProvider;
pub use metadata::{DEFAULT_METADATA_ENDPOINT, EcsRamRoleProvider};
pub use oidc::{OidcRoleConfig, OidcRoleProvider};
pub use profile::{CliProfileProvider, ProfileFileProvider};
pub use settings::ChainSettings;
pub use uri::UriProvider;

/// A string that must never reach a log, an event, a status or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An AccessKey pair, with the STS security token when the pair is temporary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The AccessKey id is not secret (it names the key), so it is shown.
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: Option<SecretString>,
}

/// The keys of a Kubernetes Secret holding ECS credentials.
pub const SECRET_KEY_ACCESS_KEY_ID: &str = "accessKeyId";
pub const SECRET_KEY_ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECRET_KEY_SECURITY_TOKEN: &str = "securityToken";

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::new(access_key_secret),
            security_token: security_token.map(SecretString::new),
        }
    }

    /// Reads the `data` of a Kubernetes Secret: `accessKeyId`, `accessKeySecret`, optional
    /// `securityToken`. Surrounding whitespace is dropped (`--from-file` keeps the newline).
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, CredentialsError> {
        let read = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            let Some(raw) = data.get(key) else {
                return Ok(None);
            };
            let text = std::str::from_utf8(raw)
                .map_err(|_| CredentialsError::SecretKey {
                    key,
                    problem: "is not UTF-8 text",
                })?
                .trim();
            if text.is_empty() {
                return Err(CredentialsError::SecretKey {
                    key,
                    problem: "is empty",
                });
            }
            Ok(Some(text.to_string()))
        };
        let required = |key: &'static str| {
            read(key)?.ok_or(CredentialsError::SecretKey {
                key,
                problem: "is missing",
            })
        };
        Ok(Self::new(
            required(SECRET_KEY_ACCESS_KEY_ID)?,
            required(SECRET_KEY_ACCESS_KEY_SECRET)?,
            read(SECRET_KEY_SECURITY_TOKEN)?,
        ))
    }
}

/// Why no credentials could be had. Messages name files, variables and keys, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "the credentials Secret's key {key:?} {problem} (the Secret needs {SECRET_KEY_ACCESS_KEY_ID} and {SECRET_KEY_ACCESS_KEY_SECRET}, optionally {SECRET_KEY_SECURITY_TOKEN})"
    )]
    SecretKey {
        key: &'static str,
        problem: &'static str,
    },
    /// This source is not set up here (no variable, no file): the chain moves on.
    #[error("{provider}: {reason}")]
    NotConfigured {
        provider: &'static str,
        reason: String,
    },
    /// This source is set up but refused (STS refused, no role attached, bad file or answer).
    #[error("{provider}: {reason}")]
    Failed {
        provider: &'static str,
        reason: String,
    },
    /// This source could not be reached or failed on its side (timeout, reset, 5xx, 429): an
    /// outage, not a credentials problem, so it is retried like any transient failure.
    #[error("{provider}: {reason}")]
    Unavailable {
        provider: &'static str,
        reason: String,
    },
    /// Every source of the chain was tried.
    #[error("no credentials found; tried {0}")]
    ChainExhausted(String),
}

impl From<CredentialsError> for crate::EcsError {
    fn from(error: CredentialsError) -> Self {
        match error {
            CredentialsError::Unavailable { provider, reason } => {
                crate::EcsError::CredentialSourceUnavailable {
                    provider: provider.to_string(),
                    detail: reason,
                }
            }
            refused => crate::EcsError::Credentials(refused.to_string()),
        }
    }
}

/// A source of credentials. Implementations cache and refresh temporary credentials themselves;
/// callers ask before every request.
#[async_trait]
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    async fn credentials(&self) -> Result<Credentials, CredentialsError>;

    /// A short stable name for logs and errors (`env`, `oidc_role_arn`, …).
    fn name(&self) -> &'static str;
}

/// Credentials handed over as they are (from a Kubernetes Secret, a flag, a test).
#[derive(Clone, Debug)]
pub struct StaticProvider(pub Credentials);

#[async_trait]
impl CredentialsProvider for StaticProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        Ok(self.0.clone())
    }

    fn name(&self) -> &'static str {
        "static"
    }
}

/// Replaces every occurrence of the given secrets in `text` (for messages that quote a server).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret_or_token() {
        let creds = Credentials::new("LTAIexample", "s3cr3t-value", Some("t0ken-value".into()));
        let shown = format!("{creds:?}");
        assert!(shown.contains("LTAIexample"));
        assert!(!shown.contains("s3cr3t-value"));
        assert!(!shown.contains("t0ken-value"));
        assert_eq!(creds.access_key_secret.to_string(), "<redacted>");
    }

    fn secret(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_secret_with_both_keys_and_a_trailing_newline() {
        let creds = Credentials::from_secret_data(&secret(&[
            ("accessKeyId", b"LTAIfromSecret"),
            ("accessKeySecret", b"the-secret\n"),
        ]))
        .unwrap();
        assert_eq!(creds.access_key_id, "LTAIfromSecret");
        assert_eq!(creds.access_key_secret.expose(), "the-secret");
        assert_eq!(creds.security_token, None);

        let sts = Credentials::from_secret_data(&secret(&[
            ("accessKeyId", b"STS.id"),
            ("accessKeySecret", b"s"),
            ("securityToken", b"tok"),
        ]))
        .unwrap();
        assert_eq!(sts.security_token.unwrap().expose(), "tok");
    }

    #[test]
    fn a_secret_missing_a_key_names_the_key_and_never_the_values() {
        let err = Credentials::from_secret_data(&secret(&[("accessKeyId", b"LTAIx")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"accessKeySecret\" is missing"), "{err}");

        let err = Credentials::from_secret_data(&secret(&[("accessKeySecret", b"hush-hush")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"accessKeyId\" is missing"), "{err}");
        assert!(!err.contains("hush-hush"), "{err}");

        let err = Credentials::from_secret_data(&secret(&[
            ("accessKeyId", b"LTAIx"),
            ("accessKeySecret", b"\xff\xfe-binary-secret"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        assert!(!err.contains("binary-secret"), "{err}");

        let err = Credentials::from_secret_data(&secret(&[
            ("accessKeyId", b"LTAIx"),
            ("accessKeySecret", b"s"),
            ("securityToken", b"  "),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"securityToken\" is empty"), "{err}");
    }

    #[test]
    fn scrub_removes_secrets_from_quoted_text() {
        assert_eq!(
            scrub("token eyJhbGci is invalid", &["eyJhbGci"]),
            "token <redacted> is invalid"
        );
    }
}
