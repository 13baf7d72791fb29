//! The default chain, in the official SDKs' order (`alibabacloud_credentials/provider/default.py`):
//!
//! 1. environment (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `_SECRET`, optional `_SECURITY_TOKEN`);
//! 2. RRSA/OIDC, when `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` are all set;
//! 3. the CLI's `~/.aliyun/config.json`;
//! 4. the credentials INI file;
//! 5. the ECS RAM role, unless `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`;
//! 6. `ALIBABA_CLOUD_CREDENTIALS_URI`, when set.
//!
//! The first source that answers is remembered and asked directly from then on (as the SDK
//! does), so a pod on RRSA does not re-probe the environment on every call.
//!
//! When no source answers and one that was set up explicitly (RRSA, the credentials URI, a
//! named RAM role) was merely unavailable, the chain reports an outage, not missing
//! credentials: it passes. The metadata service probed without a role name does not count (off
//! ECS it never answers).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::env::EnvironmentProvider;
use super::metadata;
use super::oidc::OidcRoleProvider;
use super::profile::{CliProfileProvider, ProfileFileProvider};
use super::settings::ChainSettings;
use super::uri::UriProvider;
use super::{Credentials, CredentialsError, CredentialsProvider};

/// A source that could not even be set up: it reports why each time it is asked.
#[derive(Debug)]
struct Misconfigured {
    name: &'static str,
    error: CredentialsError,
}

#[async_trait]
impl CredentialsProvider for Misconfigured {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        Err(self.error.clone())
    }

    fn name(&self) -> &'static str {
        self.name
    }
}

/// The official SDKs' default provider chain (see the module docs for the order).
#[derive(Debug)]
pub struct DefaultCredentialsChain {
    providers: Vec<Arc<dyn CredentialsProvider>>,
    /// The sources left out because nothing sets them up here, with where they would have
    /// been tried (an index into `providers`): the no-credentials error says what each of the
    /// six sources said, these included.
    not_set_up: Vec<(usize, String)>,
    last_used: Mutex<Option<usize>>,
    /// `ALIBABA_CLOUD_ECS_METADATA` names a role: the metadata service is expected to answer.
    metadata_named: bool,
}

impl DefaultCredentialsChain {
    /// The chain for the process environment.
    pub fn from_env() -> Self {
        Self::new(&ChainSettings::from_env())
    }

    pub fn new(settings: &ChainSettings) -> Self {
        fn or_misconfigured<P: CredentialsProvider + 'static>(
            name: &'static str,
            built: Result<P, CredentialsError>,
        ) -> Arc<dyn CredentialsProvider> {
            match built {
                Ok(provider) => Arc::new(provider),
                Err(error) => Arc::new(Misconfigured { name, error }),
            }
        }

        let mut providers: Vec<Arc<dyn CredentialsProvider>> =
            vec![Arc::new(EnvironmentProvider::new(settings))];
        let mut not_set_up = Vec::new();
        const OIDC_VARS: [&str; 3] = [
            "ALIBABA_CLOUD_ROLE_ARN",
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        ];
        let unset: Vec<&str> = OIDC_VARS
            .into_iter()
            .filter(|v| settings.var(v).is_none())
            .collect();
        if !unset.is_empty() {
            not_set_up.push((
                providers.len(),
                format!(
                    "oidc_role_arn: {} not set (RRSA sets all three)",
                    unset.join(", ")
                ),
            ));
        }
        if let (Some(role_arn), Some(provider_arn), Some(token_file)) = (
            settings.var("ALIBABA_CLOUD_ROLE_ARN"),
            settings.var("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
            settings.var("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        ) {
            let built = settings
                .oidc_config(
                    role_arn.to_string(),
                    provider_arn.to_string(),
                    token_file.to_string(),
                    settings
                        .var("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                        .map(str::to_string),
                    None,
                )
                .and_then(OidcRoleProvider::new);
            providers.push(or_misconfigured("oidc_role_arn", built));
        }
        providers.push(Arc::new(CliProfileProvider::new(settings)));
        providers.push(Arc::new(ProfileFileProvider::new(settings)));
        if settings.is_true("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
            not_set_up.push((
                providers.len(),
                "ecs_ram_role: skipped, ALIBABA_CLOUD_ECS_METADATA_DISABLED is true".to_string(),
            ));
        } else {
            let role = settings
                .var("ALIBABA_CLOUD_ECS_METADATA")
                .map(str::to_string);
            providers.push(or_misconfigured(
                "ecs_ram_role",
                settings.ecs_ram_role(role),
            ));
        }
        match settings.var("ALIBABA_CLOUD_CREDENTIALS_URI") {
            Some(uri) => providers.push(or_misconfigured("credentials_uri", UriProvider::new(uri))),
            None => not_set_up.push((
                providers.len(),
                "credentials_uri: ALIBABA_CLOUD_CREDENTIALS_URI is not set".to_string(),
            )),
        }
        Self {
            providers,
            not_set_up,
            last_used: Mutex::new(None),
            metadata_named: settings.var("ALIBABA_CLOUD_ECS_METADATA").is_some(),
        }
    }

    /// The sources in the order they are tried (for tests and `--help`-style diagnostics).
    pub fn provider_names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }
}

#[async_trait]
impl CredentialsProvider for DefaultCredentialsChain {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let remembered = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = remembered
            && let Some(provider) = self.providers.get(index)
        {
            return provider.credentials().await;
        }
        let mut tried = Vec::new();
        let mut outage = None;
        for (index, provider) in self.providers.iter().enumerate() {
            match provider.credentials().await {
                Ok(credentials) => {
                    tracing::debug!(provider = provider.name(), "credentials found");
                    *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Some(index);
                    return Ok(credentials);
                }
                Err(error) => {
                    let expected = provider.name() != metadata::NAME || self.metadata_named;
                    if expected && matches!(error, CredentialsError::Unavailable { .. }) {
                        outage.get_or_insert(provider.name());
                    }
                    tried.push(error.to_string());
                }
            }
        }
        // In chain order: positions were recorded ascending, so insert from the last.
        for (position, note) in self.not_set_up.iter().rev() {
            tried.insert((*position).min(tried.len()), note.clone());
        }
        let tried = tried.join("; ");
        Err(match outage {
            Some(provider) => CredentialsError::Unavailable {
                provider,
                reason: format!("unavailable; tried {tried}"),
            },
            None => CredentialsError::ChainExhausted(tried),
        })
    }

    fn name(&self) -> &'static str {
        "default"
    }
}
