//! Client-side flow control: a token bucket per ECS action.
//!
//! ECS throttles per account and per API (counted per minute, quotas unpublished). A controller
//! that reconciles a fleet must stay under that quota on its own rather than discover it through
//! `Throttling` answers, so every call waits for a token of its action first. The buckets are
//! shared by all clones of the client.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Calls per second allowed for each action.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// For every action without its own entry. `0` (or less) means unlimited.
    pub default_qps: f64,
    /// Per-action overrides, by action name (`DescribeInstances`, `StopInstance`, …).
    pub per_action: BTreeMap<String, f64>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            default_qps: 5.0,
            per_action: BTreeMap::new(),
        }
    }
}

impl RateLimits {
    pub fn unlimited() -> Self {
        Self {
            default_qps: 0.0,
            per_action: BTreeMap::new(),
        }
    }

    pub fn qps_for(&self, action: &str) -> f64 {
        self.per_action
            .get(action)
            .copied()
            .unwrap_or(self.default_qps)
    }
}

/// One action's bucket. Holds up to one second's worth of tokens (at least one), so a quiet
/// controller may burst a little but never exceeds the rate over any second.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    capacity: f64,
    /// May go negative: each waiter reserves its token up front and sleeps until it is due,
    /// which keeps waiters in arrival order without a queue.
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn new(qps: f64, now: Instant) -> Self {
        let capacity = qps.max(1.0);
        Self {
            qps,
            capacity,
            tokens: capacity,
            refilled_at: now,
        }
    }

    /// Takes a token; returns how long the caller must wait before using it.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.capacity);
        self.refilled_at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// Token buckets per action, cheap to clone (clones share the buckets).
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limits: Arc<RateLimits>,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits: Arc::new(limits),
            buckets: Arc::default(),
        }
    }

    /// Waits until `action` may be called again.
    pub async fn acquire(&self, action: &str) {
        let qps = self.limits.qps_for(action);
        if !(qps > 0.0 && qps.is_finite()) {
            return;
        }
        let wait = {
            let now = Instant::now();
            // A poisoned lock only means another task panicked mid-update; the bucket is
            // still a valid number, so keep going.
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets
                .entry(action.to_string())
                .or_insert_with(|| Bucket::new(qps, now))
                .reserve(now)
        };
        if !wait.is_zero() {
            tracing::debug!(action, wait_ms = wait.as_millis() as u64, "rate limit");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn calls_within(limiter: &RateLimiter, action: &str, window: Duration) -> usize {
        let start = Instant::now();
        let mut calls = 0;
        loop {
            limiter.acquire(action).await;
            if start.elapsed() >= window {
                return calls;
            }
            calls += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_seconds_at_two_qps_allow_about_twenty_calls() {
        let limiter = RateLimiter::new(RateLimits {
            default_qps: 2.0,
            per_action: BTreeMap::new(),
        });
        let calls = calls_within(&limiter, "StopInstance", Duration::from_secs(10)).await;
        // Two tokens of burst, then one every 500 ms.
        assert!((20..=22).contains(&calls), "{calls} calls in 10s");
    }

    #[tokio::test(start_paused = true)]
    async fn actions_have_their_own_buckets_and_overrides() {
        let limiter = RateLimiter::new(RateLimits {
            default_qps: 1.0,
            per_action: BTreeMap::from([("DescribeInstances".to_string(), 10.0)]),
        });
        let describes = calls_within(&limiter, "DescribeInstances", Duration::from_secs(5)).await;
        let stops = calls_within(&limiter, "StopInstance", Duration::from_secs(5)).await;
        assert!((50..=60).contains(&describes), "{describes}");
        assert!((5..=6).contains(&stops), "{stops}");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_quota() {
        let limiter = RateLimiter::new(RateLimits {
            default_qps: 1.0,
            per_action: BTreeMap::new(),
        });
        let other = limiter.clone();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("RebootInstance").await;
            other.acquire("RebootInstance").await;
        }
        // Six calls at 1 QPS with a burst of one: the sixth waits five seconds.
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimits::unlimited());
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire("DescribeInstances").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
