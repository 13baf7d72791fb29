//! When a failed ECS call may be sent again, and how long to wait first.
//!
//! A read can always be repeated. A mutation (Start/Stop/Reboot) may only be repeated when the
//! error proves ECS never executed it: a second RebootInstance is a second reboot. So after a
//! timeout, a reset connection or a 5xx, a mutation is *not* retried; the controller observes
//! the instance instead and decides again.

use std::time::Duration;

use rand::RngExt;

use crate::error::{EcsError, ErrorClass};

/// Whether repeating a call can change anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// DescribeInstances and friends.
    Read,
    /// Start/Stop/Reboot, single or batch.
    Mutation,
}

/// Bounded, jittered exponential backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries including the first (1 disables retries).
    pub max_attempts: u32,
    /// Wait before the second try; doubles each time.
    pub base_delay: Duration,
    /// No single wait is longer (unless the server's `x-acs-retry-after` or `Retry-After` asks
    /// for more, which the client caps at [`crate::transport::MAX_RETRY_AFTER`], and the total
    /// budget allows it).
    pub max_delay: Duration,
    /// No retry starts after this much time since the first try.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_total: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1), or `None` to give up.
    pub fn next_delay(
        &self,
        kind: CallKind,
        error: &EcsError,
        attempt: u32,
        elapsed: Duration,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !is_retryable(kind, error) {
            return None;
        }
        let exponent = attempt.saturating_sub(1).min(16);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        // "Equal jitter": at least half the ceiling, so clients spread out but never hammer.
        let half = ceiling / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos() as u64))
        };
        let mut delay = half + jitter;
        if let Some(retry_after) = error.as_api().and_then(|api| api.retry_after) {
            delay = delay.max(retry_after);
        }
        (elapsed + delay <= self.max_total).then_some(delay)
    }
}

/// The retry rule itself (see the module docs).
pub fn is_retryable(kind: CallKind, error: &EcsError) -> bool {
    match kind {
        CallKind::Read => match error {
            EcsError::Api(_) => {
                matches!(error.class(), ErrorClass::Throttled | ErrorClass::Transient)
            }
            EcsError::Transport { .. }
            | EcsError::Connect { .. }
            | EcsError::Decode { .. }
            | EcsError::CredentialSourceUnavailable { .. } => true,
            EcsError::Credentials(_) | EcsError::InvalidInput(_) | EcsError::NotSent(_) => false,
        },
        CallKind::Mutation => proves_not_executed(error),
    }
}

/// Errors that ECS returns before it acts on a request, or failures before the request left.
pub fn proves_not_executed(error: &EcsError) -> bool {
    match error {
        EcsError::Api(api) => {
            api.code.starts_with("Throttling")
                || matches!(
                    api.code.as_str(),
                    "SignatureNonceUsed" | "InvalidTimeStamp.Expired"
                )
                || (api.http_status == 429
                    && ErrorClass::of(&api.code, 429) == ErrorClass::Throttled)
        }
        // No credentials, no request, or held back: ECS never saw it.
        EcsError::Connect { .. }
        | EcsError::CredentialSourceUnavailable { .. }
        | EcsError::NotSent(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn api(code: &str, status: u16) -> EcsError {
        EcsError::Api(ApiError {
            code: code.into(),
            message: String::new(),
            request_id: "r".into(),
            http_status: status,
            recommend: None,
            retry_after: None,
        })
    }

    fn transport(not_sent: bool) -> EcsError {
        let (action, endpoint, detail) = (
            "StopInstance".into(),
            "http://127.0.0.1:1/".into(),
            "x".into(),
        );
        if not_sent {
            EcsError::Connect {
                action,
                endpoint,
                detail,
            }
        } else {
            EcsError::Transport {
                action,
                endpoint,
                detail,
            }
        }
    }

    #[test]
    fn mutations_are_retried_only_when_ecs_cannot_have_acted() {
        use CallKind::Mutation;
        for code in [
            "Throttling",
            "Throttling.User",
            "Throttling.Api",
            "SignatureNonceUsed",
            "InvalidTimeStamp.Expired",
        ] {
            assert!(is_retryable(Mutation, &api(code, 400)), "{code}");
        }
        assert!(is_retryable(Mutation, &transport(true)));
        for (code, status) in [
            ("InternalError", 500),
            ("ServiceUnavailable", 503),
            ("UnknownError", 500),
            ("SomethingNew", 502),
            ("InstanceNotReady", 500),
            ("IncorrectInstanceStatus", 403),
        ] {
            assert!(!is_retryable(Mutation, &api(code, status)), "{code}");
        }
        assert!(!is_retryable(Mutation, &transport(false)));
        let decode = EcsError::Decode {
            action: "RebootInstance".into(),
            http_status: 502,
            detail: "html".into(),
        };
        assert!(!is_retryable(Mutation, &decode));
    }

    #[test]
    fn reads_are_retried_on_transient_and_throttled_only() {
        use CallKind::Read;
        assert!(is_retryable(Read, &api("InternalError", 500)));
        assert!(is_retryable(Read, &api("Throttling.User", 400)));
        assert!(is_retryable(Read, &transport(false)));
        assert!(!is_retryable(Read, &api("Forbidden.RAM", 403)));
        assert!(!is_retryable(Read, &api("SignatureDoesNotMatch", 400)));
    }

    #[test]
    fn backoff_grows_is_bounded_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_total: Duration::from_secs(10),
        };
        let err = api("Throttling", 400);
        for attempt in 1..9 {
            let ceiling =
                (Duration::from_millis(100) * (1 << (attempt - 1))).min(Duration::from_secs(1));
            let delay = policy
                .next_delay(CallKind::Read, &err, attempt, Duration::ZERO)
                .unwrap();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempt}: {delay:?}"
            );
        }
        assert_eq!(
            policy.next_delay(CallKind::Read, &err, 10, Duration::ZERO),
            None
        );
        // Out of total budget.
        assert_eq!(
            policy.next_delay(CallKind::Read, &err, 1, Duration::from_millis(9_990)),
            None
        );
        let mut throttled = ApiError {
            code: "Throttling.User".into(),
            message: String::new(),
            request_id: String::new(),
            http_status: 400,
            recommend: None,
            retry_after: Some(Duration::from_secs(3)),
        };
        let delay = policy
            .next_delay(
                CallKind::Mutation,
                &EcsError::Api(throttled.clone()),
                1,
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(delay, Duration::from_secs(3));
        throttled.retry_after = Some(Duration::from_secs(60));
        assert_eq!(
            policy.next_delay(
                CallKind::Mutation,
                &EcsError::Api(throttled),
                1,
                Duration::ZERO
            ),
            None,
            "a retry-after beyond the total budget gives up now instead of sleeping"
        );
    }
}
