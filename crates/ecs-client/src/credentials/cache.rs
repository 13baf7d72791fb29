//! Caching of temporary credentials: refreshed ahead of expiry, one refresh at a time.

use std::future::Future;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Mutex;

use super::{Credentials, CredentialsError};

/// Credentials and when they stop working.
#[derive(Clone, Debug)]
pub(crate) struct Expiring {
    pub credentials: Credentials,
    pub obtained_at: Timestamp,
    /// `None`: long-lived (an AccessKey pair).
    pub expires_at: Option<Timestamp>,
}

/// Refresh at most this long before expiry (the official SDKs' stale time)...
const REFRESH_MARGIN: SignedDuration = SignedDuration::from_secs(15 * 60);
/// ...or after three quarters of the lifetime, whichever comes first (a 900 s STS session would
/// otherwise be "stale" from birth and refreshed on every call).
const REFRESH_FRACTION: i32 = 4;
/// A failed refresh falls back to the cached credentials only while they have this much left.
const STILL_USABLE: SignedDuration = SignedDuration::from_secs(60);

impl Expiring {
    pub fn new(credentials: Credentials, expires_at: Option<Timestamp>) -> Self {
        Self {
            credentials,
            obtained_at: Timestamp::now(),
            expires_at,
        }
    }

    /// When to fetch new ones.
    pub fn refresh_at(&self) -> Option<Timestamp> {
        let expires_at = self.expires_at?;
        let lifetime = expires_at.duration_since(self.obtained_at);
        let margin = REFRESH_MARGIN.min(lifetime / REFRESH_FRACTION);
        expires_at.checked_sub(margin).ok()
    }

    fn usable_at(&self, now: Timestamp) -> bool {
        self.expires_at
            .is_none_or(|at| at.duration_since(now) > STILL_USABLE)
    }
}

/// The cache one refreshing provider keeps.
#[derive(Debug, Default)]
pub(crate) struct RefreshCache {
    slot: Mutex<Option<Expiring>>,
}

impl RefreshCache {
    /// Cached credentials while fresh; otherwise `refresh` (callers queue behind one refresh).
    /// If the refresh fails but the cached ones still work for a minute, they are used.
    pub async fn get<F, Fut>(
        &self,
        provider: &'static str,
        refresh: F,
    ) -> Result<Credentials, CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring, CredentialsError>>,
    {
        let mut slot = self.slot.lock().await;
        let now = Timestamp::now();
        if let Some(cached) = slot.as_ref()
            && cached.refresh_at().is_none_or(|at| now < at)
        {
            return Ok(cached.credentials.clone());
        }
        match refresh().await {
            Ok(fresh) => {
                let credentials = fresh.credentials.clone();
                tracing::debug!(
                    provider,
                    expires_at = ?fresh.expires_at,
                    "obtained temporary credentials"
                );
                *slot = Some(fresh);
                Ok(credentials)
            }
            Err(error) => match slot.as_ref() {
                Some(cached) if cached.usable_at(now) => {
                    tracing::warn!(provider, %error, "credential refresh failed; using the cached ones until they expire");
                    Ok(cached.credentials.clone())
                }
                _ => Err(error),
            },
        }
    }
}

/// For tests: a `Duration` as a jiff span from now.
#[cfg(test)]
pub(crate) fn in_the_future(after: std::time::Duration) -> Timestamp {
    Timestamp::now() + SignedDuration::try_from(after).unwrap_or(SignedDuration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn creds(n: u32) -> Credentials {
        Credentials::new(format!("STS.{n}"), "s", Some("t".into()))
    }

    #[test]
    fn refresh_margin_is_fifteen_minutes_or_a_quarter_of_short_lifetimes() {
        let margin = |lifetime: i64| {
            let now = Timestamp::now();
            let expiring = Expiring {
                credentials: creds(1),
                obtained_at: now,
                expires_at: Some(now + SignedDuration::from_secs(lifetime)),
            };
            expiring
                .expires_at
                .unwrap()
                .duration_since(expiring.refresh_at().unwrap())
        };
        assert_eq!(margin(3600), SignedDuration::from_secs(15 * 60));
        assert_eq!(margin(6 * 3600), SignedDuration::from_secs(15 * 60));
        assert_eq!(margin(900), SignedDuration::from_secs(225));
    }

    #[tokio::test]
    async fn fresh_credentials_are_reused_and_stale_ones_refreshed() {
        let cache = RefreshCache::default();
        let calls = AtomicU32::new(0);
        let fetch = |lifetime: u64| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok(Expiring::new(
                    creds(n),
                    Some(in_the_future(Duration::from_secs(lifetime))),
                ))
            }
        };
        assert_eq!(
            cache.get("t", || fetch(3600)).await.unwrap().access_key_id,
            "STS.1"
        );
        assert_eq!(
            cache.get("t", || fetch(3600)).await.unwrap().access_key_id,
            "STS.1"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Credentials already past their refresh time are replaced on the next call.
        let stale = RefreshCache::default();
        *stale.slot.lock().await = Some(Expiring {
            credentials: creds(0),
            obtained_at: Timestamp::now() - SignedDuration::from_secs(3000),
            expires_at: Some(in_the_future(Duration::from_secs(600))),
        });
        assert_eq!(
            stale.get("t", || fetch(3600)).await.unwrap().access_key_id,
            "STS.2"
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_still_valid_credentials_and_fails_expired_ones() {
        let cache = RefreshCache::default();
        *cache.slot.lock().await = Some(Expiring {
            credentials: creds(7),
            obtained_at: Timestamp::now() - SignedDuration::from_secs(3000),
            expires_at: Some(in_the_future(Duration::from_secs(600))),
        });
        let failing = || async {
            Err(CredentialsError::Failed {
                provider: "t",
                reason: "STS down".into(),
            })
        };
        assert_eq!(
            cache.get("t", failing).await.unwrap().access_key_id,
            "STS.7"
        );

        *cache.slot.lock().await = Some(Expiring {
            credentials: creds(8),
            obtained_at: Timestamp::now() - SignedDuration::from_secs(3600),
            expires_at: Some(in_the_future(Duration::from_secs(10))),
        });
        assert!(cache.get("t", failing).await.is_err());
    }
}
