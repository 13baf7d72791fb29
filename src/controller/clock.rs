//! The time a controller reads: the system's in production, fixed in tests, so reconciles and
//! schedule statuses are tested without a wall clock.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Where a reconcile gets the time and its jitter.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// In `[0, 1)`: spreads the retries of many objects apart.
    fn jitter(&self) -> f64;
}

/// The system clock and a random jitter.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn jitter(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// The time schedules are evaluated at: a [`Clock`] shifted by
/// [`Config::schedule_clock_offset`](super::config::Config::schedule_clock_offset) (zero in
/// production; the demo and the tests move a schedule's boundary to now). Every reader of a
/// schedule (the instance reconciles and the schedule status controller) shares one, so they
/// never disagree on which window is open.
#[derive(Clone)]
pub(crate) struct ScheduleClock {
    clock: Arc<dyn Clock>,
    offset: SignedDuration,
}

impl ScheduleClock {
    pub(crate) fn new(clock: Arc<dyn Clock>, offset: SignedDuration) -> Self {
        Self { clock, offset }
    }

    /// The schedules' now.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock
            .now()
            .checked_add(self.offset)
            .unwrap_or(Timestamp::MAX)
    }
}

/// `later - earlier`, zero when negative.
pub(crate) fn elapsed(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}
