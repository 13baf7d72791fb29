//! Client-side flow control: a token bucket per region and ECS action, and a shared pause
//! after a `Throttling` answer.
//!
//! ECS throttles per account, region and API (quotas unpublished). A controller that reconciles
//! a fleet must stay under that quota on its own rather than discover it through `Throttling`
//! answers, so every call waits for a token of its (region, action) first. The buckets are
//! shared by all clones of the client, so every object and every credential set draws on one
//! budget. When ECS throttles anyway, the whole (region, action) lane pauses (honouring the
//! server's wait up to [`MAX_LANE_PAUSE`], doubling while throttling persists) and then resumes
//! at the configured rate, instead of every waiting object retrying on its own.
//!
//! A throttle can also be about one instance (ECS limits calls per resource too). Pausing the
//! lane for it again and again would hold every other instance of the region behind it, so
//! only a caller's *first* throttle pauses the lane: when the same instance is throttled again
//! before it has gone through, only that instance waits (its own doubling pause), and the lane
//! keeps serving the others in their turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::MAX_RETRY_AFTER;

/// First pause after a `Throttling` answer without `x-acs-retry-after`; ECS counts in
/// windows of a second or more, so less than that would be throttled again.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// Pauses double while throttling persists, up to this.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A whole lane never pauses longer than this at once for a server's wait (asked in answer to
/// a call about many instances); the call told to wait longer waits on its own.
pub const MAX_LANE_PAUSE: Duration = Duration::from_secs(60);
/// An instance's own throttle record is forgotten this long after its pause ended.
const FORGET_AFTER: Duration = Duration::from_secs(10 * 60);

/// Calls per second allowed for each action (in each region).
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

/// One lane's bucket. Holds a single token: calls are spaced 1/qps apart, so no window of
/// one second ever sees more than `qps` of them (a second's worth of burst would allow twice
/// that, which a quota counted per second answers with `Throttling`).
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
        let capacity = 1.0;
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
        self.refilled_at = self.refilled_at.max(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }

    /// After a pause: one call right away (a probe), then the configured rate.
    fn restart_at(&mut self, at: Instant) {
        self.tokens = 1.0;
        self.refilled_at = at;
    }
}

/// A pause that doubles while throttling persists.
#[derive(Debug, Default)]
struct Pause {
    until: Option<Instant>,
    /// Throttling answers in a row (each outside the pause the previous one started).
    strikes: u32,
}

impl Pause {
    fn active(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|until| *until > now)
    }

    /// Counts a throttle answer and returns the pause it asks for: the doubling pause, or the
    /// server's wait (capped) when that is longer. Answers to requests sent before the current
    /// pause do not count again.
    fn strike(&mut self, now: Instant, retry_after: Option<Duration>, cap: Duration) -> Duration {
        if self.active(now).is_none() {
            self.strikes = self.strikes.saturating_add(1);
        }
        let doubling = FIRST_PAUSE
            .saturating_mul(1 << self.strikes.saturating_sub(1).min(16))
            .min(MAX_PAUSE);
        retry_after.map_or(doubling, |r| doubling.max(r.min(cap)))
    }

    /// Extends the pause to `until`; true when that lengthened it.
    fn extend(&mut self, until: Instant) -> bool {
        let longer = self.until.is_none_or(|current| current < until);
        if longer {
            self.until = Some(until);
        }
        longer
    }
}

/// The flow-control state of one (region, action).
#[derive(Debug, Default)]
struct Lane {
    bucket: Option<Bucket>,
    pause: Pause,
    /// Bumped by every lane pause: a token reserved before it is stale.
    epoch: u64,
    /// Callers (instances) throttled and not gone through since, with their own pauses.
    callers: HashMap<String, Pause>,
}

/// Token buckets and throttle pauses per (region, action), cheap to clone (clones share them).
///
/// `caller` names what a call is about when that is one thing (the instance of a
/// StartInstance); `None` for calls about many (batches, DescribeInstances).
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limits: Arc<RateLimits>,
    lanes: Arc<Mutex<HashMap<(String, String), Lane>>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits: Arc::new(limits),
            lanes: Arc::default(),
        }
    }

    fn with_lane<T>(&self, region: &str, action: &str, f: impl FnOnce(&mut Lane) -> T) -> T {
        // A poisoned lock only means another task panicked mid-update; the lane is still a
        // valid set of numbers, so keep going.
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes
            .entry((region.to_string(), action.to_string()))
            .or_default();
        f(lane)
    }

    /// Waits until `action` may be called in `region` (for `caller`) again: past the caller's
    /// own throttle pause, past any pause of the lane, then for a token.
    pub async fn acquire(&self, region: &str, action: &str, caller: Option<&str>) {
        let qps = self.limits.qps_for(action);
        let limited = qps > 0.0 && qps.is_finite();
        loop {
            let (paused, wait, epoch) = self.with_lane(region, action, |lane| {
                let now = Instant::now();
                let own = caller
                    .and_then(|c| lane.callers.get(c))
                    .and_then(|p| p.active(now));
                if let Some(until) = own.or(lane.pause.active(now)) {
                    return (Some(until), Duration::ZERO, lane.epoch);
                }
                let wait = if limited {
                    lane.bucket
                        .get_or_insert_with(|| Bucket::new(qps, now))
                        .reserve(now)
                } else {
                    Duration::ZERO
                };
                (None, wait, lane.epoch)
            });
            if let Some(until) = paused {
                tracing::debug!(
                    region,
                    action,
                    caller,
                    "throttled: waiting for the pause to end"
                );
                tokio::time::sleep_until(until).await;
                continue;
            }
            if wait.is_zero() {
                return;
            }
            tracing::debug!(
                region,
                action,
                wait_ms = wait.as_millis() as u64,
                "rate limit"
            );
            tokio::time::sleep(wait).await;
            // A throttle answer while we waited: the token predates the pause, take a new one.
            if self.with_lane(region, action, |lane| lane.epoch) == epoch {
                return;
            }
        }
    }

    /// ECS answered `Throttling` to a call about `caller` (`None`: about many). The first
    /// throttle of a caller pauses the lane for a pause that doubles while throttling persists
    /// (or, for a call about many, the server's `retry_after` up to [`MAX_LANE_PAUSE`]); the
    /// caller itself also waits what the server asked (up to [`MAX_RETRY_AFTER`]). A caller
    /// throttled again before it went through pauses only itself, so a throttled instance
    /// cannot hold the region's other calls.
    pub fn throttled(
        &self,
        region: &str,
        action: &str,
        caller: Option<&str>,
        retry_after: Option<Duration>,
    ) {
        let (pause, lane_wide) = self.with_lane(region, action, |lane| {
            let now = Instant::now();
            lane.callers.retain(|_, p| {
                p.until
                    .is_some_and(|until| now.saturating_duration_since(until) < FORGET_AFTER)
            });
            let repeat = caller.and_then(|c| lane.callers.get_mut(c));
            if let Some(own) = repeat {
                let pause = own.strike(now, retry_after, MAX_RETRY_AFTER);
                own.extend(now + pause);
                return (pause, false);
            }
            // The server's wait for a call about one instance is that instance's to keep; the
            // lane takes it only from calls about many.
            let lane_hint = if caller.is_some() { None } else { retry_after };
            let pause = lane.pause.strike(now, lane_hint, MAX_LANE_PAUSE);
            let until = now + pause;
            if lane.pause.extend(until) {
                lane.epoch += 1;
                if let Some(bucket) = &mut lane.bucket {
                    bucket.restart_at(until);
                }
            }
            if let Some(caller) = caller {
                let own = retry_after.map_or(pause, |r| pause.max(r.min(MAX_RETRY_AFTER)));
                lane.callers.insert(
                    caller.to_string(),
                    Pause {
                        until: Some(now + own),
                        strikes: 1,
                    },
                );
            }
            (pause, true)
        });
        if lane_wide {
            tracing::info!(
                region,
                action,
                pause_ms = pause.as_millis() as u64,
                "ECS throttled: pausing this action in the region"
            );
        } else {
            tracing::info!(
                region,
                action,
                caller,
                pause_ms = pause.as_millis() as u64,
                "ECS throttled the same call again: pausing only it"
            );
        }
    }

    /// A call of the lane went through: throttling is over (for the lane and for `caller`),
    /// the next pause starts short again.
    pub fn succeeded(&self, region: &str, action: &str, caller: Option<&str>) {
        self.with_lane(region, action, |lane| {
            lane.pause.strikes = 0;
            if let Some(caller) = caller {
                lane.callers.remove(caller);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn calls_within(limiter: &RateLimiter, action: &str, window: Duration) -> usize {
        let start = Instant::now();
        let mut calls = 0;
        loop {
            limiter.acquire("cn-hangzhou", action, None).await;
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
        // One token at once, then one every 500 ms.
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
            limiter.acquire("cn-hangzhou", "RebootInstance", None).await;
            other.acquire("cn-hangzhou", "RebootInstance", None).await;
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
            limiter
                .acquire("cn-hangzhou", "DescribeInstances", None)
                .await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn regions_have_their_own_buckets() {
        let limiter = RateLimiter::new(RateLimits {
            default_qps: 1.0,
            per_action: BTreeMap::new(),
        });
        let start = Instant::now();
        for region in ["cn-hangzhou", "cn-beijing", "eu-central-1"] {
            limiter.acquire(region, "StartInstances", None).await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "one token each, no waiting"
        );
        limiter.acquire("cn-hangzhou", "StartInstances", None).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_pauses_every_waiter_of_the_lane_then_the_rate_resumes() {
        let limiter = RateLimiter::new(RateLimits {
            default_qps: 10.0,
            per_action: BTreeMap::new(),
        });
        let start = Instant::now();
        // Twenty objects queue for tokens; the first call is throttled right away.
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire("cn-hangzhou", "StartInstances", None).await;
                    start.elapsed()
                })
            })
            .collect();
        tokio::task::yield_now().await;
        limiter.throttled("cn-hangzhou", "StartInstances", None, None);
        let mut went = Vec::new();
        for w in waiters {
            went.push(w.await.unwrap());
        }
        went.sort();
        // The one with the first token had already gone; the rest waited out the one-second
        // pause and then went at 10 QPS, not all at once.
        let after_pause: Vec<_> = went.iter().filter(|d| !d.is_zero()).collect();
        assert_eq!(after_pause.len(), 19, "{went:?}");
        assert!(after_pause.iter().all(|d| **d >= Duration::from_secs(1)));
        assert!(
            *after_pause[18] >= Duration::from_millis(2_700),
            "paced after the pause: {went:?}"
        );
        // No window of one second holds more than 10 calls (a quota counted per second).
        for (i, t) in went.iter().enumerate() {
            let within = went[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(within <= 10, "{within} calls in the second after {t:?}");
        }
        // Other lanes never paused.
        let before = Instant::now();
        limiter
            .acquire("cn-hangzhou", "DescribeInstances", None)
            .await;
        limiter.acquire("cn-beijing", "StartInstances", None).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_honour_retry_after_double_while_throttled_and_reset_on_success() {
        let limiter = RateLimiter::new(RateLimits::unlimited());
        let lane = ("cn-hangzhou", "DescribeInstances");
        let paused_for = |limiter: RateLimiter| async move {
            let start = Instant::now();
            limiter.acquire(lane.0, lane.1, None).await;
            start.elapsed()
        };
        limiter.throttled(lane.0, lane.1, None, Some(Duration::from_millis(4_500)));
        assert_eq!(
            paused_for(limiter.clone()).await,
            Duration::from_millis(4_500)
        );
        // Still throttling after the pause: 2 s, then 4 s.
        limiter.throttled(lane.0, lane.1, None, None);
        assert_eq!(paused_for(limiter.clone()).await, Duration::from_secs(2));
        limiter.throttled(lane.0, lane.1, None, None);
        // Late answers to requests sent before this pause do not lengthen it.
        limiter.throttled(lane.0, lane.1, None, None);
        assert_eq!(paused_for(limiter.clone()).await, Duration::from_secs(4));
        // Recovered: the next throttle starts short again.
        limiter.succeeded(lane.0, lane.1, None);
        limiter.throttled(lane.0, lane.1, None, None);
        assert_eq!(paused_for(limiter.clone()).await, Duration::from_secs(1));
        // An unlimited lane that is not paused never waits.
        assert_eq!(paused_for(limiter).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn instances_throttled_on_their_own_cannot_hold_the_rest_of_the_region() {
        let limiter = RateLimiter::new(RateLimits {
            default_qps: 5.0,
            per_action: BTreeMap::new(),
        });
        let lane = ("cn-hangzhou", "StartInstance");
        let stuck_attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        // Three instances ECS throttles every time, retried as soon as the limiter lets them.
        for stuck in ["i-stuck1", "i-stuck2", "i-stuck3"] {
            let (limiter, attempts) = (limiter.clone(), stuck_attempts.clone());
            tokio::spawn(async move {
                loop {
                    limiter.acquire(lane.0, lane.1, Some(stuck)).await;
                    attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    limiter.throttled(lane.0, lane.1, Some(stuck), None);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Twenty other instances start one after the other: each waits its turn at 5 QPS and
        // at most the first pauses, never for the stuck ones' ever longer pauses.
        let start = Instant::now();
        for n in 0..20 {
            let id = format!("i-fine{n}");
            limiter.acquire(lane.0, lane.1, Some(&id)).await;
            limiter.succeeded(lane.0, lane.1, Some(&id));
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "twenty starts took {:?}",
            start.elapsed()
        );
        // The stuck instances wait on their own doubling pauses meanwhile: a handful of tries
        // in a minute, not five a second.
        let before = stuck_attempts.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let in_a_minute = stuck_attempts.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert!(
            in_a_minute <= 3 * 5,
            "{in_a_minute} throttled tries in a minute"
        );
        // A throttle of a call about many (a batch) still pauses the whole lane.
        limiter.throttled(lane.0, lane.1, None, None);
        let paused = Instant::now();
        limiter.acquire(lane.0, lane.1, Some("i-fine0")).await;
        assert!(paused.elapsed() >= FIRST_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_wait_for_one_instance_is_that_instance_s_alone() {
        let limiter = RateLimiter::new(RateLimits::unlimited());
        let lane = ("cn-hangzhou", "StartInstance");
        limiter.throttled(lane.0, lane.1, Some("i-a"), Some(Duration::from_secs(240)));
        let start = Instant::now();
        limiter.acquire(lane.0, lane.1, Some("i-b")).await;
        assert_eq!(start.elapsed(), FIRST_PAUSE, "the lane's own short pause");
        limiter.acquire(lane.0, lane.1, Some("i-a")).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(240),
            "what the server asked of i-a"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_pause_is_capped_whatever_the_server_asks() {
        let limiter = RateLimiter::new(RateLimits::unlimited());
        let lane = ("cn-hangzhou", "StopInstances");
        limiter.throttled(lane.0, lane.1, None, Some(Duration::from_secs(3 * 3600)));
        let start = Instant::now();
        limiter.acquire(lane.0, lane.1, None).await;
        assert_eq!(start.elapsed(), MAX_LANE_PAUSE);
    }
}
