//! What the chain and its sources read from the environment: a snapshot of `ALIBABA_CLOUD_*`
//! and the home directory, and the endpoints and provider settings derived from it. Its own
//! module so the sources (environment, profiles) and the chain that orders them all depend on it
//! and not on each other.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use reqwest::Url;

use super::CredentialsError;
use super::metadata::{DEFAULT_METADATA_ENDPOINT, EcsRamRoleProvider};
use super::oidc::OidcRoleConfig;

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

    pub(super) fn is_true(&self, name: &str) -> bool {
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
