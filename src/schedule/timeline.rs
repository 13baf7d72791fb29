//! What the schedule says at an instant, and when that changes.
//!
//! The power state is piecewise constant; it can only change at a *boundary*: a window's start
//! or end, or an exception day's first or last instant. Transitions are the boundaries at which
//! the state really changes (two adjacent windows make no transition between them).

use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::AmbiguousOffset;
use jiff::{SignedDuration, Timestamp};

use super::{DaySource, ExceptionDay, Schedule, Window};
use crate::api::PowerState;

/// A change of the schedule's power state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: Timestamp,
    /// The state from `at` on.
    pub power_state: PowerState,
    pub cause: Cause,
    /// Set when the boundary's wall-clock time fell into a DST gap or fold.
    pub shift: Option<Shift>,
}

/// Why the state changes. Its `Display` is the WHY text of `schedule preview` (and `plan`):
/// `running[0] closes`, `calendar cn-holidays: National Day`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `spec.running[index]` opens.
    WindowOpens { index: usize },
    /// `spec.running[index]` closes.
    WindowCloses { index: usize },
    /// The exception day `spec.exceptions[index]` begins.
    Exception { index: usize, date: Date },
    /// The exception day ended; the windows decide again.
    ExceptionOver { index: usize, date: Date },
    /// A day of the holiday calendar `calendar` (`spec.calendars`) begins; `day` is its name
    /// in the calendar, when it has one.
    Calendar {
        calendar: String,
        day: Option<String>,
        date: Date,
    },
    /// The calendar day ended; the windows decide again.
    CalendarOver {
        calendar: String,
        day: Option<String>,
        date: Date,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calendar_day = |f: &mut fmt::Formatter<'_>,
                            calendar: &str,
                            day: &Option<String>,
                            date: &Date| match day {
            Some(day) => write!(f, "calendar {calendar}: {day}"),
            None => write!(f, "calendar {calendar}: {date}"),
        };
        match self {
            Cause::WindowOpens { index } => write!(f, "running[{index}] opens"),
            Cause::WindowCloses { index } => write!(f, "running[{index}] closes"),
            Cause::Exception { index, date } => write!(f, "exception {date} (exceptions[{index}])"),
            Cause::ExceptionOver { index, date } => write!(
                f,
                "exception {date} (exceptions[{index}]) over: the windows decide again"
            ),
            Cause::Calendar {
                calendar,
                day,
                date,
            } => calendar_day(f, calendar, day, date),
            Cause::CalendarOver {
                calendar,
                day,
                date,
            } => {
                calendar_day(f, calendar, day, date)?;
                f.write_str(" over: the windows decide again")
            }
        }
    }
}

impl ExceptionDay {
    /// The cause of the day `date` beginning (or, with `over`, ending).
    pub(super) fn cause(&self, date: Date, over: bool) -> Cause {
        match (&self.source, over) {
            (DaySource::Own { index }, false) => Cause::Exception {
                index: *index,
                date,
            },
            (DaySource::Own { index }, true) => Cause::ExceptionOver {
                index: *index,
                date,
            },
            (DaySource::Calendar { calendar, name }, false) => Cause::Calendar {
                calendar: calendar.clone(),
                day: name.clone(),
                date,
            },
            (DaySource::Calendar { calendar, name }, true) => Cause::CalendarOver {
                calendar: calendar.clone(),
                day: name.clone(),
                date,
            },
        }
    }
}

/// How a boundary's wall-clock time met a daylight-saving change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shift {
    /// The clocks skip `wall`: the boundary moved forward by `by` (the gap's length).
    Gap { wall: DateTime, by: SignedDuration },
    /// The clocks show `wall` twice: the boundary is the first.
    Fold { wall: DateTime },
}

/// A boundary before we know whether the state changes there.
#[derive(Clone, Debug)]
struct Boundary {
    at: Timestamp,
    kind: Cause,
    shift: Option<Shift>,
}

const ONE_DAY: SignedDuration = SignedDuration::from_hours(24);

impl Schedule {
    /// The power state the schedule asks for at `now`.
    pub fn state_at(&self, now: Timestamp) -> PowerState {
        let today = self.zone.to_datetime(now).date();
        if let Some(day) = self.exceptions.get(&today) {
            return day.power_state;
        }
        self.windows_state_at(now, today)
    }

    /// The state by the windows, outside exception days. A window can end at most one local day
    /// after the one it starts on (two when a gap pushes 23:xx past midnight), so three start
    /// days suffice. Windows that start on an exception day do not count at all: the exception
    /// replaces that day's windows, tail past midnight included.
    fn windows_state_at(&self, now: Timestamp, today: Date) -> PowerState {
        let mut start_day = today;
        for _ in 0..3 {
            if self.exceptions.contains_key(&start_day) {
                match start_day.yesterday() {
                    Ok(day) => start_day = day,
                    Err(_) => break,
                }
                continue;
            }
            for window in &self.windows {
                if let Some((open, close)) = self.interval(window, start_day)
                    && open.at <= now
                    && now < close.at
                {
                    return PowerState::Running;
                }
            }
            match start_day.yesterday() {
                Ok(day) => start_day = day,
                Err(_) => break,
            }
        }
        PowerState::Stopped
    }

    /// The next change after `now`, or `None` when the state never changes again.
    pub fn next_transition(&self, now: Timestamp) -> Option<Transition> {
        let mut from = now;
        loop {
            let until = from.checked_add(ONE_DAY * 15).ok()?;
            if let Some(next) = self.transitions(from, until).next() {
                return Some(next);
            }
            // Two quiet weeks. Without an exception near them, the windows alone gave one state
            // for every day of the week (twice, so a window emptied by one DST night cannot
            // fool us), so they always will: only a later exception can change it.
            let (first, last) = (
                self.date_of(from).yesterday().ok()?,
                self.date_of(until).tomorrow().ok()?,
            );
            if self.exceptions.range(first..=last).next().is_some() {
                from = until;
                continue;
            }
            let (next_exception, _) = self.exceptions.range(last..).next()?;
            from = self.day_start(next_exception.yesterday().ok()?)?.max(until);
        }
    }

    /// Every change in `(from, until]`, in order.
    pub fn transitions(
        &self,
        from: Timestamp,
        until: Timestamp,
    ) -> impl Iterator<Item = Transition> {
        let mut boundaries = self.boundaries(from, until);
        boundaries.retain(|b| from < b.at && b.at <= until);
        boundaries.sort_by_key(|b| b.at);
        let mut current = self.state_at(from);
        let mut out = Vec::new();
        for group in boundaries.chunk_by(|a, b| a.at == b.at) {
            let at = group[0].at;
            let state = self.state_at(at);
            if state == current {
                continue;
            }
            current = state;
            let chosen = pick_cause(group, state);
            out.push(Transition {
                at,
                power_state: state,
                cause: chosen.kind.clone(),
                shift: group.iter().find_map(|b| b.shift),
            });
        }
        out.into_iter()
    }

    /// Every boundary of the local days around `(from, until]`, unsorted.
    fn boundaries(&self, from: Timestamp, until: Timestamp) -> Vec<Boundary> {
        let mut out = Vec::new();
        let (Ok(mut day), Ok(last)) = (
            self.date_of(from).checked_sub(jiff::Span::new().days(2)),
            self.date_of(until).tomorrow(),
        ) else {
            return out;
        };
        while day <= last {
            if !self.exceptions.contains_key(&day) {
                for window in &self.windows {
                    if let Some((open, close)) = self.interval(window, day) {
                        out.extend([open, close]);
                    }
                }
            }
            if let Some(exception) = self.exceptions.get(&day)
                && let (Some(start), Some(end)) = (
                    self.day_start(day),
                    day.tomorrow().ok().and_then(|d| self.day_start(d)),
                )
            {
                out.push(Boundary {
                    at: start,
                    kind: exception.cause(day, false),
                    shift: None,
                });
                out.push(Boundary {
                    at: end,
                    kind: exception.cause(day, true),
                    shift: None,
                });
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        out
    }

    /// The instants `window` opens and closes when it starts on `day`; `None` when it does not
    /// start that day, or when DST makes it empty.
    fn interval(&self, window: &Window, day: Date) -> Option<(Boundary, Boundary)> {
        let weekday = day.weekday().to_monday_zero_offset() as usize;
        if !window.days[weekday] {
            return None;
        }
        let (open_at, open_shift) = self.instant(day.to_datetime(window.from))?;
        let end_day = day
            .checked_add(jiff::Span::new().days(window.to_days))
            .ok()?;
        let (close_at, close_shift) = self.instant(end_day.to_datetime(window.to))?;
        (open_at < close_at).then_some((
            Boundary {
                at: open_at,
                kind: Cause::WindowOpens {
                    index: window.index,
                },
                shift: open_shift,
            },
            Boundary {
                at: close_at,
                kind: Cause::WindowCloses {
                    index: window.index,
                },
                shift: close_shift,
            },
        ))
    }

    /// A wall-clock time in the zone as an instant: `compatible` disambiguation (a gap moves
    /// forward by its length, a fold takes the earlier instant).
    fn instant(&self, wall: DateTime) -> Option<(Timestamp, Option<Shift>)> {
        let ambiguous = self.zone.to_ambiguous_timestamp(wall);
        let shift = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => None,
            AmbiguousOffset::Gap { before, after } => Some(Shift::Gap {
                wall,
                by: after.duration_since(before),
            }),
            AmbiguousOffset::Fold { .. } => Some(Shift::Fold { wall }),
        };
        Some((ambiguous.compatible().ok()?, shift))
    }

    /// The first instant of a local day.
    pub(super) fn day_start(&self, day: Date) -> Option<Timestamp> {
        self.instant(day.to_datetime(Time::midnight()))
            .map(|(at, _)| at)
    }

    /// The local date of an instant.
    pub(super) fn date_of(&self, at: Timestamp) -> Date {
        self.zone.to_datetime(at).date()
    }
}

/// Of the boundaries at one instant, the one that explains `state`: an exception beginning
/// first, then an exception ending, then a window opening (to Running) or closing (to Stopped).
fn pick_cause(group: &[Boundary], state: PowerState) -> &Boundary {
    let rank = |b: &Boundary| match b.kind {
        Cause::Exception { .. } | Cause::Calendar { .. } => 0,
        Cause::ExceptionOver { .. } | Cause::CalendarOver { .. } => 1,
        Cause::WindowOpens { .. } if state == PowerState::Running => 2,
        Cause::WindowCloses { .. } if state == PowerState::Stopped => 2,
        _ => 3,
    };
    group.iter().min_by_key(|b| rank(b)).unwrap_or(&group[0])
}
