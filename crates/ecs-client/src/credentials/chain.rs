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

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::Url;

use super::env::EnvironmentProvider;
use super::metadata::{DEFAULT_METADATA_ENDPOINT, EcsRamRoleProvider};
use super::oidc::{OidcRoleConfig, OidcRoleProvider};
use super::profile::{CliProfileProvider, ProfileFileProvider};
use super::uri::UriProvider;
use super::{Credentials, CredentialsError, CredentialsProvider};

/// The environment the chain is built from: a snapshot, so tests can hand one over instead of
/// mutating the process environment.
#[derive(Clone, Default)]
pub struct ChainSettings {
    vars: BTreeMap<String, String>,
    home: PathBuf,
}

impl fmt::Debug for ChainSettings {
    /// Variable names only: their values include the AccessKey secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainSettings")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .finish()
    }
}

impl ChainSettings {
    /// `ALIBABA_CLOUD_*` and `HOME` from the process environment.
    pub fn from_env() -> Self {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("ALIBABA_CLOUD_"))
            .collect();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        Self::from_vars(vars, home)
    }

    /// Explicit variables and home directory (empty values count as unset).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
        home: impl Into<PathBuf>,
    ) -> Self {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            home: home.into(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn is_true(&self, name: &str) -> bool {
        self.var(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn home(&self) -> PathBuf {
        self.home.clone()
    }

    /// `ALIBABA_CLOUD_STS_ENDPOINT` (this project's override, for tests and private links),
    /// else `sts[-vpc].<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com`, else `sts.aliyuncs.com`.
    pub fn sts_endpoint(&self) -> Result<Url, CredentialsError> {
        let raw = match (
            self.var("ALIBABA_CLOUD_STS_ENDPOINT"),
            self.var("ALIBABA_CLOUD_STS_REGION"),
        ) {
            (Some(endpoint), _) if endpoint.contains("://") => endpoint.to_string(),
            (Some(host), _) => format!("https://{host}/"),
            (None, Some(region)) => {
                let prefix = if self.is_true("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED") {
                    "sts-vpc"
                } else {
                    "sts"
                };
                format!("https://{prefix}.{region}.aliyuncs.com/")
            }
            (None, None) => "https://sts.aliyuncs.com/".to_string(),
        };
        Url::parse(&raw).map_err(|e| CredentialsError::Failed {
            provider: "oidc_role_arn",
            reason: format!("STS endpoint {raw:?} is not a URL: {e}"),
        })
    }

    /// `ALIBABA_CLOUD_ECS_METADATA_ENDPOINT` (this project's override) or `http://100.100.100.200`.
    pub fn metadata_endpoint(&self) -> &str {
        self.var("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT")
            .unwrap_or(DEFAULT_METADATA_ENDPOINT)
    }

    /// An ECS RAM role provider; `role` empty means "ask the metadata service".
    pub fn ecs_ram_role(
        &self,
        role: Option<String>,
    ) -> Result<EcsRamRoleProvider, CredentialsError> {
        EcsRamRoleProvider::new(
            self.metadata_endpoint(),
            role.filter(|r| !r.is_empty()),
            self.is_true("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        )
    }

    /// An OIDC configuration with this environment's STS endpoint and defaults.
    pub fn oidc_config(
        &self,
        role_arn: String,
        oidc_provider_arn: String,
        token_file: String,
        role_session_name: Option<String>,
        duration_seconds: Option<u32>,
    ) -> Result<OidcRoleConfig, CredentialsError> {
        let role_session_name = role_session_name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "ecs-power-controller-{}",
                    jiff::Timestamp::now().as_second()
                )
            });
        Ok(OidcRoleConfig {
            role_arn,
            oidc_provider_arn,
            token_file: PathBuf::from(token_file),
            role_session_name,
            duration_seconds: duration_seconds.unwrap_or(3600),
            sts_endpoint: self.sts_endpoint()?,
        })
    }
}

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
        for (index, provider) in self.providers.iter().enumerate() {
            match provider.credentials().await {
                Ok(credentials) => {
                    tracing::debug!(provider = provider.name(), "credentials found");
                    *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Some(index);
                    return Ok(credentials);
                }
                Err(error) => tried.push(error.to_string()),
            }
        }
        // In chain order: positions were recorded ascending, so insert from the last.
        for (position, note) in self.not_set_up.iter().rev() {
            tried.insert((*position).min(tried.len()), note.clone());
        }
        Err(CredentialsError::ChainExhausted(tried.join("; ")))
    }

    fn name(&self) -> &'static str {
        "default"
    }
}
