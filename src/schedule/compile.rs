//! Spec → [`Schedule`]: every check the schema cannot make, each failure naming its field.
//!
//! All problems are collected, not only the first, so one `Stalled` message (or one preview
//! run) shows everything to fix.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::sync::LazyLock;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZoneDatabase;

use super::calendars::{Calendars, CompileError, calendar_days};
use super::{DaySource, ExceptionDay, Schedule, Window};
use crate::api::PowerState;
use crate::api::power_schedule::{EcsPowerScheduleSpec, RunningWindow, Weekday};

/// The zone database bundled into the binary (see the module docs for why not the host's).
static ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// The zone tzdata ships for a machine whose zone was never set (`-00`): not a place.
const PLACEHOLDER_ZONE: &str = "Factory";

/// Exception dates outside these years are refused: they are typos, and the bound keeps all
/// date arithmetic far inside jiff's range.
const YEARS: std::ops::RangeInclusive<i16> = 2000..=2999;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.running[1].to`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec that does not describe a schedule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSchedule {
    /// Never empty.
    pub errors: Vec<FieldError>,
}

pub(super) struct Problems(pub(super) Vec<FieldError>);

impl Problems {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl Schedule {
    /// Validates `spec` and prepares it for evaluation, with the days of the calendars it
    /// uses (`spec.calendars`, looked up in `calendars`).
    ///
    /// Every field problem (the schedule's, and its calendars' dates) is reported at once; a
    /// calendar that is not in `calendars` is [`CompileError::CalendarNotFound`], reported
    /// only when nothing else is wrong.
    pub fn compile(
        spec: &EcsPowerScheduleSpec,
        calendars: &Calendars<'_>,
    ) -> Result<Schedule, CompileError> {
        let mut problems = Problems(Vec::new());

        let zone = if spec.time_zone.trim().is_empty() {
            problems.add(
                "spec.timeZone",
                "empty: name an IANA time zone, e.g. Asia/Shanghai or Europe/Berlin",
            );
            None
        } else {
            match ZONES.get(&spec.time_zone) {
                // tzdata's placeholder for an unset clock: local time there means nothing.
                Ok(zone)
                    if zone
                        .iana_name()
                        .is_some_and(|name| name.eq_ignore_ascii_case(PLACEHOLDER_ZONE)) =>
                {
                    problems.add(
                        "spec.timeZone",
                        format!(
                            "{:?} is tzdata's placeholder for a machine whose zone was never set, not a place: name the instances' zone (e.g. Asia/Shanghai, Europe/Berlin, UTC)",
                            spec.time_zone
                        ),
                    );
                    None
                }
                Ok(zone) => Some(zone),
                Err(_) => {
                    problems.add(
                        "spec.timeZone",
                        format!(
                            "{:?} is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)",
                            spec.time_zone
                        ),
                    );
                    None
                }
            }
        };

        if spec.running.is_empty() {
            problems.add(
                "spec.running",
                "no window: add at least one {days, from, to} (for days off, use exceptions)",
            );
        }
        let windows: Vec<Window> = spec
            .running
            .iter()
            .enumerate()
            .filter_map(|(index, w)| window(index, w, &mut problems))
            .collect();

        let mut exceptions = BTreeMap::new();
        for (index, exception) in spec.exceptions.iter().enumerate() {
            let field = format!("spec.exceptions[{index}].date");
            let Some(date) = check_date(&exception.date, &field, &mut problems) else {
                continue;
            };
            match exceptions.entry(date) {
                Entry::Vacant(slot) => {
                    slot.insert(ExceptionDay {
                        power_state: exception.power_state,
                        source: DaySource::Own { index },
                    });
                }
                // Keep the first entry, as the message says (only own days are in the map yet).
                Entry::Occupied(held) => {
                    if let DaySource::Own { index: first } = held.get().source {
                        problems.add(
                            field,
                            format!(
                                "{date} is already listed at spec.exceptions[{first}]: one entry per day"
                            ),
                        );
                    }
                }
            }
        }
        let missing = calendar_exceptions(spec, calendars, &mut exceptions, &mut problems);

        match zone {
            Some(zone) if problems.0.is_empty() => match missing {
                Some((index, name)) => Err(CompileError::CalendarNotFound { name, index }),
                None => Ok(Schedule {
                    zone,
                    zone_name: spec.time_zone.clone(),
                    windows,
                    exceptions,
                }),
            },
            _ => Err(InvalidSchedule { errors: problems.0 }.into()),
        }
    }
}

/// Adds the days of the calendars `spec` uses to `exceptions` (which holds the schedule's own,
/// and they win); of two calendars that disagree on a date, `Stopped` wins, and of two that
/// agree, the first listed names the day. Returns the first calendar `calendars` lacks.
fn calendar_exceptions(
    spec: &EcsPowerScheduleSpec,
    calendars: &Calendars<'_>,
    exceptions: &mut BTreeMap<Date, ExceptionDay>,
    problems: &mut Problems,
) -> Option<(usize, String)> {
    let mut missing = None;
    let mut days: BTreeMap<Date, ExceptionDay> = BTreeMap::new();
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, reference) in spec.calendars.iter().enumerate() {
        if let Some(first) = listed.insert(&reference.name, index) {
            problems.add(
                format!("spec.calendars[{index}].name"),
                format!(
                    "{:?} is already listed at spec.calendars[{first}]: one entry per calendar",
                    reference.name
                ),
            );
            continue;
        }
        let Some(calendar) = calendars.get(&reference.name) else {
            missing.get_or_insert_with(|| (index, reference.name.clone()));
            continue;
        };
        let dates = match calendar_days(&reference.name, calendar) {
            Ok(dates) => dates,
            Err(errors) => {
                problems.0.extend(errors);
                continue;
            }
        };
        for (date, day) in dates {
            let candidate = ExceptionDay {
                power_state: reference.power_state,
                source: DaySource::Calendar {
                    calendar: reference.name.clone(),
                    name: calendar.days[day].name.clone(),
                },
            };
            match days.entry(date) {
                Entry::Vacant(slot) => {
                    slot.insert(candidate);
                }
                Entry::Occupied(mut held) => {
                    if held.get().power_state == PowerState::Running
                        && candidate.power_state == PowerState::Stopped
                    {
                        held.insert(candidate);
                    }
                }
            }
        }
    }
    for (date, day) in days {
        exceptions.entry(date).or_insert(day);
    }
    missing
}

/// `text` as a date `YYYY-MM-DD` in [`YEARS`], or a problem with `field`.
pub(super) fn check_date(text: &str, field: &str, problems: &mut Problems) -> Option<Date> {
    let Some(date) = parse_date(text) else {
        problems.add(field, format!("{text:?} is not a date YYYY-MM-DD"));
        return None;
    };
    if !YEARS.contains(&date.year()) {
        problems.add(
            field,
            format!(
                "{date} is outside the years {} to {}",
                YEARS.start(),
                YEARS.end()
            ),
        );
        return None;
    }
    Some(date)
}

fn window(index: usize, w: &RunningWindow, problems: &mut Problems) -> Option<Window> {
    let at = format!("spec.running[{index}]");
    let mut days = [false; 7];
    if w.days.is_empty() {
        problems.add(
            format!("{at}.days"),
            "empty: list the days the window starts on (Mon, Tue, Wed, Thu, Fri, Sat, Sun)",
        );
    }
    for (i, day) in w.days.iter().enumerate() {
        let slot = &mut days[day_index(*day)];
        if *slot {
            problems.add(
                format!("{at}.days[{i}]"),
                format!("{day:?} is listed twice"),
            );
        }
        *slot = true;
    }
    let from = parse_time_of_day(&w.from, false);
    if from.is_none() {
        problems.add(
            format!("{at}.from"),
            format!("{:?} is not a time of day HH:MM (00:00 to 23:59)", w.from),
        );
    }
    let to = parse_time_of_day(&w.to, true);
    if to.is_none() {
        problems.add(
            format!("{at}.to"),
            format!(
                "{:?} is not a time of day HH:MM (00:00 to 23:59, or 24:00 for the end of the day)",
                w.to
            ),
        );
    }
    let (from, (to_end_of_day, to)) = (from?.1, to?);
    if from == to && !to_end_of_day {
        problems.add(
            at,
            format!(
                "from and to are both {:?}: a window needs a length (a whole day is from \"00:00\" to \"24:00\")",
                w.from
            ),
        );
        return None;
    }
    // 24:00 is the next day's midnight; an end at or before the start is on the next day.
    let to_days = i8::from(to_end_of_day || to <= from);
    Some(Window {
        index,
        days,
        from,
        to_days,
        to,
    })
}

/// Monday = 0 … Sunday = 6, as [`jiff::civil::Weekday::to_monday_zero_offset`].
pub(super) fn day_index(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// Exactly `HH:MM` (two digits each); `24:00` only where `end_of_day` is allowed, returned as
/// `(true, 00:00)`.
fn parse_time_of_day(text: &str, end_of_day: bool) -> Option<(bool, Time)> {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<i8> {
        let (a, b) = (bytes[i], bytes[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| ((a - b'0') * 10 + (b - b'0')) as i8)
    };
    let (hour, minute) = (two(0)?, two(3)?);
    if end_of_day && hour == 24 && minute == 0 {
        return Some((true, Time::midnight()));
    }
    Time::new(hour, minute, 0, 0).ok().map(|t| (false, t))
}

/// Exactly `YYYY-MM-DD`, a real calendar day.
fn parse_date(text: &str) -> Option<Date> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<i16>().ok();
    Date::new(number(0..4)?, number(5..7)? as i8, number(8..10)? as i8).ok()
}
