//! `ALIBABA_CLOUD_CREDENTIALS_URI`: a local endpoint answering temporary credentials as JSON.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;

use super::cache::{Expiring, RefreshCache};
use super::http::{self, TemporaryCredentials};
use super::{Credentials, CredentialsError, CredentialsProvider};

const NAME: &str = "credentials_uri";

#[derive(Debug)]
pub struct UriProvider {
    uri: Url,
    http: reqwest::Client,
    cache: RefreshCache,
}

impl UriProvider {
    pub fn new(uri: &str) -> Result<Self, CredentialsError> {
        let uri = Url::parse(uri).map_err(|e| CredentialsError::Failed {
            provider: NAME,
            reason: format!("ALIBABA_CLOUD_CREDENTIALS_URI is not a URL: {e}"),
        })?;
        Ok(Self {
            uri,
            http: http::client(Duration::from_secs(5), Duration::from_secs(15)),
            cache: RefreshCache::default(),
        })
    }

    async fn fetch(&self) -> Result<Expiring, CredentialsError> {
        let answer = http::send(NAME, "GET", self.http.get(self.uri.clone())).await?;
        if answer.status != 200 {
            return Err(CredentialsError::Failed {
                provider: NAME,
                reason: format!("GET answered HTTP {}", answer.status),
            });
        }
        http::parse_json::<TemporaryCredentials>(NAME, &answer.body)?.into_expiring(NAME)
    }
}

#[async_trait]
impl CredentialsProvider for UriProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.cache.get(NAME, || self.fetch()).await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}
