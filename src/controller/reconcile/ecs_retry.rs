//! How long to wait after an ECS call failed, by kind of failure (the Kubernetes side has its
//! own, `api_retry`).
//!
//! The window is kept in `status.retry` (not in memory), so a restarted controller keeps it.

use std::time::Duration;

use ecs_client::ErrorClass;

/// The first delay and the ceiling for one kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub(crate) first: Duration,
    pub(crate) ceiling: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The retry policy for a class of error.
pub(crate) fn policy(class: ErrorClass) -> RetryPolicy {
    use ErrorClass::*;
    let (first, ceiling) = match class {
        // The instance is moving or being created: look again soon.
        NotReady | WrongState => (secs(5), secs(120)),
        // The API (or the account's quota) needs room.
        Throttled | Transient => (secs(10), secs(300)),
        // Capacity comes back by itself, but not in seconds.
        Capacity => (secs(60), secs(1800)),
        // A person has to act: recheck slowly (10–30 min). A spec or Secret change acts at once.
        Locked | Billing | NotFound | Credentials | Forbidden | Disk | InvalidRequest => {
            (secs(600), secs(1800))
        }
        // Not a failure; if it ever lands here, treat it like a slow recheck.
        DryRunPassed => (secs(600), secs(1800)),
    };
    RetryPolicy { first, ceiling }
}

/// The delay before attempt `failures + 1`, after `failures` consecutive failures (≥ 1).
///
/// Exponential (×2) from the class's first delay up to its ceiling, plus up to 20% jitter
/// (`jitter` in `[0, 1)`, supplied by the caller so this stays pure) that never exceeds the
/// ceiling. A server's `Retry-After` is a floor.
pub(crate) fn retry_delay(
    class: ErrorClass,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    policy(class)
        .delay(failures, jitter)
        .max(retry_after.unwrap_or_default())
}

impl RetryPolicy {
    /// The delay after `failures` consecutive failures (≥ 1): exponential (×2) from `first`
    /// up to `ceiling`, plus up to 20% jitter (`jitter` in `[0, 1)`) that never passes the
    /// ceiling.
    pub(crate) fn delay(self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(16);
        let base = self.first.saturating_mul(1 << exponent).min(self.ceiling);
        base.saturating_add(base.mul_f64(0.2 * jitter.clamp(0.0, 1.0)))
            .min(self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_starts_at_a_few_seconds_and_doubles() {
        let d: Vec<_> = (1..=7)
            .map(|n| retry_delay(ErrorClass::NotReady, n, None, 0.0).as_secs())
            .collect();
        assert_eq!(d, vec![5, 10, 20, 40, 80, 120, 120]);
    }

    #[test]
    fn errors_a_person_must_fix_are_rechecked_every_10_to_30_minutes() {
        for class in [
            ErrorClass::Locked,
            ErrorClass::Billing,
            ErrorClass::NotFound,
            ErrorClass::Credentials,
            ErrorClass::Forbidden,
            ErrorClass::Disk,
        ] {
            for n in 1..20 {
                for jitter in [0.0, 0.5, 0.999] {
                    let d = retry_delay(class, n, None, jitter);
                    assert!(d >= secs(600) && d <= secs(1800), "{class:?} #{n}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn jitter_spreads_but_never_passes_the_ceiling() {
        let low = retry_delay(ErrorClass::Transient, 1, None, 0.0);
        let high = retry_delay(ErrorClass::Transient, 1, None, 0.99);
        assert_eq!(low, secs(10));
        assert!(high > low && high <= secs(12));
        assert_eq!(
            retry_delay(ErrorClass::Transient, 30, None, 0.99),
            secs(300)
        );
    }

    #[test]
    fn a_server_retry_after_is_a_floor() {
        assert_eq!(
            retry_delay(ErrorClass::Throttled, 1, Some(secs(42)), 0.0),
            secs(42)
        );
        assert_eq!(
            retry_delay(ErrorClass::Throttled, 1, Some(secs(1)), 0.0),
            secs(10)
        );
    }

    /// The first retry window of every seed-page error the scenarios provoke
    /// (`tests/support/flows.rs`), by code and HTTP status as the simulator answers them, for any
    /// jitter: the timing half of those scenarios.
    #[test]
    fn every_seed_error_has_its_first_retry_window() {
        const SLOW: (u64, u64) = (600, 720);
        let cases: [(&str, u16, (u64, u64)); 12] = [
            ("IncorrectInstanceStatus", 403, (5, 6)),
            ("InstanceNotReady", 403, (5, 6)),
            ("InstanceNotReady", 500, (5, 6)),
            ("InternalError", 500, (10, 12)),
            ("MissingParameter", 400, SLOW),
            ("DiskError", 403, SLOW),
            ("InstanceLockedForSecurity", 403, SLOW),
            ("InsufficientBalance", 403, SLOW),
            ("InstanceExpired", 403, SLOW),
            ("InstanceExpiredOrInArrears", 403, SLOW),
            ("InvalidInstanceId.NotFound", 404, SLOW),
            ("InvalidParameter.KMSKeyId.KMSUnauthorized", 403, SLOW),
        ];
        for (code, status, (low, high)) in cases {
            let class = ErrorClass::of(code, status);
            for jitter in [0.0, 0.5, 0.999] {
                let d = retry_delay(class, 1, None, jitter);
                assert!(
                    d >= secs(low) && d <= secs(high),
                    "{code} ({status}), jitter {jitter}: first retry after {d:?}, expected {low}-{high} s"
                );
            }
        }
    }

    /// InstanceNotReady: the first retry 5–6 s after the failure, the second 10–12 s after the
    /// first (the gaps `instance_not_ready_is_retried_after_5_then_10_seconds` sees, from below).
    #[test]
    fn instance_not_ready_is_retried_after_5_then_10_seconds_with_at_most_20_percent_jitter() {
        let class = ErrorClass::of("InstanceNotReady", 403);
        for jitter in [0.0, 0.5, 0.999] {
            let first = retry_delay(class, 1, None, jitter);
            let second = retry_delay(class, 2, None, jitter);
            assert!(first >= secs(5) && first <= secs(6), "{first:?}");
            assert!(second >= secs(10) && second <= secs(12), "{second:?}");
        }
    }

    /// Out of stock (or quota): a minute, doubling, capped at 30 minutes; capacity usually
    /// returns within minutes to hours, and a start that keeps failing never hammers ECS.
    #[test]
    fn no_stock_is_retried_after_a_minute_doubling_to_half_an_hour() {
        for code in ["OperationDenied.NoStock", "QuotaExceed.ElasticQuota"] {
            let class = ErrorClass::of(code, 403);
            assert_eq!(class, ErrorClass::Capacity, "{code}");
            let d: Vec<_> = (1..=8)
                .map(|n| retry_delay(class, n, None, 0.0).as_secs())
                .collect();
            assert_eq!(d, vec![60, 120, 240, 480, 960, 1800, 1800, 1800], "{code}");
            for n in 1..30 {
                let d = retry_delay(class, n, None, 0.999);
                assert!(d >= secs(60) && d <= secs(1800), "{code} #{n}: {d:?}");
            }
        }
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        assert_eq!(
            retry_delay(ErrorClass::Capacity, u32::MAX, None, 0.5),
            secs(1800)
        );
    }
}
