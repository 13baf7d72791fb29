//! `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `_SECURITY_TOKEN`.

use async_trait::async_trait;

use super::settings::ChainSettings;
use super::{Credentials, CredentialsError, CredentialsProvider};

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Credentials from the environment, read once when the chain is built.
#[derive(Debug)]
pub struct EnvironmentProvider {
    found: Result<Credentials, CredentialsError>,
}

impl EnvironmentProvider {
    pub fn new(settings: &ChainSettings) -> Self {
        let missing = |name: &str| CredentialsError::NotConfigured {
            provider: "env",
            reason: format!("{name} is not set"),
        };
        let found = match (
            settings.var(ENV_ACCESS_KEY_ID),
            settings.var(ENV_ACCESS_KEY_SECRET),
        ) {
            (None, _) => Err(missing(ENV_ACCESS_KEY_ID)),
            (Some(_), None) => Err(missing(ENV_ACCESS_KEY_SECRET)),
            (Some(id), Some(secret)) => Ok(Credentials::new(
                id,
                secret,
                settings.var(ENV_SECURITY_TOKEN).map(str::to_string),
            )),
        };
        Self { found }
    }
}

#[async_trait]
impl CredentialsProvider for EnvironmentProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.found.clone()
    }

    fn name(&self) -> &'static str {
        "env"
    }
}
