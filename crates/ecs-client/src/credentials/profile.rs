//! Profiles on disk: the Alibaba Cloud CLI's `~/.aliyun/config.json` and the SDKs' credentials
//! INI file (`ALIBABA_CLOUD_CREDENTIALS_FILE`, default `~/.alibabacloud/credentials.ini`).
//!
//! Supported modes are the ones that make sense for a controller: plain AccessKeys, STS tokens,
//! the ECS RAM role and OIDC. Others (RamRoleArn, CloudSSO, OAuth, …) are refused by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::oidc::OidcRoleProvider;
use super::settings::ChainSettings;
use super::{Credentials, CredentialsError, CredentialsProvider, StaticProvider};

const CLI_NAME: &str = "cli_profile";
const INI_NAME: &str = "profile";

/// `~/.aliyun/config.json`, the profile `ALIBABA_CLOUD_PROFILE` names or else `current`.
#[derive(Debug)]
pub struct CliProfileProvider {
    path: PathBuf,
    profile: Option<String>,
    settings: ChainSettings,
    inner: OnceCell<Arc<dyn CredentialsProvider>>,
}

#[derive(Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CliProfile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_name: String,
    ram_role_arn: String,
    oidc_provider_arn: String,
    oidc_token_file: String,
    role_session_name: String,
    expired_seconds: Option<u32>,
}

impl CliProfileProvider {
    pub fn new(settings: &ChainSettings) -> Self {
        Self {
            path: settings.home().join(".aliyun").join("config.json"),
            profile: settings.var("ALIBABA_CLOUD_PROFILE").map(str::to_string),
            settings: settings.clone(),
            inner: OnceCell::new(),
        }
    }

    async fn load(&self) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
        let shown = self.path.display();
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CredentialsError::NotConfigured {
                    provider: CLI_NAME,
                    reason: format!("{shown} does not exist"),
                });
            }
            Err(e) => return Err(fail(CLI_NAME, format!("cannot read {shown}: {e}"))),
        };
        let config: CliConfig = serde_json::from_str(&text).map_err(|e| {
            fail(
                CLI_NAME,
                format!(
                    "{shown} is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let name = self.profile.clone().unwrap_or(config.current);
        let profile = config
            .profiles
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| fail(CLI_NAME, format!("{shown} has no profile {name:?}")))?;
        let what = format!("profile {name:?} of {shown}");
        let required = |value: String, field: &str| {
            if value.is_empty() {
                Err(fail(CLI_NAME, format!("{what} has no {field}")))
            } else {
                Ok(value)
            }
        };
        let provider: Arc<dyn CredentialsProvider> = match profile.mode.as_str() {
            "AK" => Arc::new(StaticProvider(Credentials::new(
                required(profile.access_key_id, "access_key_id")?,
                required(profile.access_key_secret, "access_key_secret")?,
                None,
            ))),
            "StsToken" => Arc::new(StaticProvider(Credentials::new(
                required(profile.access_key_id, "access_key_id")?,
                required(profile.access_key_secret, "access_key_secret")?,
                Some(required(profile.sts_token, "sts_token")?),
            ))),
            "EcsRamRole" => Arc::new(self.settings.ecs_ram_role(Some(profile.ram_role_name))?),
            "OIDC" => Arc::new(OidcRoleProvider::new(self.settings.oidc_config(
                required(profile.ram_role_arn, "ram_role_arn")?,
                required(profile.oidc_provider_arn, "oidc_provider_arn")?,
                required(profile.oidc_token_file, "oidc_token_file")?,
                Some(profile.role_session_name),
                profile.expired_seconds,
            )?)?),
            other => {
                return Err(fail(
                    CLI_NAME,
                    format!(
                        "{what} has mode {other:?}; ecs-power-controller supports AK, StsToken, EcsRamRole and OIDC"
                    ),
                ));
            }
        };
        Ok(provider)
    }
}

#[async_trait]
impl CredentialsProvider for CliProfileProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        if self
            .settings
            .var("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(CredentialsError::NotConfigured {
                provider: CLI_NAME,
                reason: "disabled by ALIBABA_CLOUD_CLI_PROFILE_DISABLED".into(),
            });
        }
        let inner = self.inner.get_or_try_init(|| self.load()).await?;
        inner.credentials().await
    }

    fn name(&self) -> &'static str {
        CLI_NAME
    }
}

/// The credentials INI file, section `ALIBABA_CLOUD_PROFILE` (default `default`).
#[derive(Debug)]
pub struct ProfileFileProvider {
    /// Tried in order; the first that exists is read.
    paths: Vec<PathBuf>,
    section: String,
    settings: ChainSettings,
    inner: OnceCell<Arc<dyn CredentialsProvider>>,
}

impl ProfileFileProvider {
    pub fn new(settings: &ChainSettings) -> Self {
        let paths = match settings.var("ALIBABA_CLOUD_CREDENTIALS_FILE") {
            Some(path) => vec![PathBuf::from(path)],
            // The Python SDK reads `credentials.ini`; the Go and Java SDKs `credentials`.
            None => {
                let dir = settings.home().join(".alibabacloud");
                vec![dir.join("credentials.ini"), dir.join("credentials")]
            }
        };
        Self {
            paths,
            section: settings
                .var("ALIBABA_CLOUD_PROFILE")
                .unwrap_or("default")
                .to_string(),
            settings: settings.clone(),
            inner: OnceCell::new(),
        }
    }

    async fn load(&self) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
        let mut found = None;
        for path in &self.paths {
            match tokio::fs::read_to_string(path).await {
                Ok(text) => {
                    found = Some((path, text));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(fail(
                        INI_NAME,
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        let Some((path, text)) = found else {
            let tried: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
            return Err(CredentialsError::NotConfigured {
                provider: INI_NAME,
                reason: format!("{} does not exist", tried.join(" nor ")),
            });
        };
        let shown = path.display();
        let sections = parse_ini(&text);
        let section = sections.get(&self.section).ok_or_else(|| {
            fail(
                INI_NAME,
                format!("{shown} has no section [{}]", self.section),
            )
        })?;
        let what = format!("section [{}] of {shown}", self.section);
        let get = |key: &str| section.get(key).cloned().unwrap_or_default();
        let required = |key: &str| {
            let value = get(key);
            if value.is_empty() {
                Err(fail(INI_NAME, format!("{what} has no {key}")))
            } else {
                Ok(value)
            }
        };
        let provider: Arc<dyn CredentialsProvider> = match get("type").as_str() {
            "access_key" => Arc::new(StaticProvider(Credentials::new(
                required("access_key_id")?,
                required("access_key_secret")?,
                None,
            ))),
            "ecs_ram_role" => Arc::new(self.settings.ecs_ram_role(Some(get("role_name")))?),
            "oidc_role_arn" => Arc::new(OidcRoleProvider::new(self.settings.oidc_config(
                required("role_arn")?,
                required("oidc_provider_arn")?,
                required("oidc_token_file_path")?,
                Some(get("role_session_name")),
                None,
            )?)?),
            other => {
                return Err(fail(
                    INI_NAME,
                    format!(
                        "{what} has type {other:?}; ecs-power-controller supports access_key, ecs_ram_role and oidc_role_arn"
                    ),
                ));
            }
        };
        Ok(provider)
    }
}

#[async_trait]
impl CredentialsProvider for ProfileFileProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let inner = self.inner.get_or_try_init(|| self.load()).await?;
        inner.credentials().await
    }

    fn name(&self) -> &'static str {
        INI_NAME
    }
}

fn fail(provider: &'static str, reason: String) -> CredentialsError {
    CredentialsError::Failed { provider, reason }
}

/// The INI subset the SDKs write: `[section]`, `key = value`, `#`/`;` comments, and (like the
/// Python SDK) anything after `#` in a value dropped.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            let value = value.split('#').next().unwrap_or_default().trim();
            sections
                .entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.to_string());
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_comments_and_inline_comments() {
        let parsed = parse_ini(
            "# top\n[default]\ntype = access_key # inline\naccess_key_id=foo\n\n; c\n[other]\nrole_name = r\n",
        );
        assert_eq!(parsed["default"]["type"], "access_key");
        assert_eq!(parsed["default"]["access_key_id"], "foo");
        assert_eq!(parsed["other"]["role_name"], "r");
    }
}
