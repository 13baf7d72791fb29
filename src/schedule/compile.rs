//! Spec → [`Schedule`]: every check the schema cannot make, each failure naming its field.
//!
//! All problems are collected, not only the first, so one `Stalled` message (or one preview
//! run) shows everything to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZoneDatabase;

use super::{Schedule, Window};
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

struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl Schedule {
    /// Validates `spec` and prepares it for evaluation.
    pub fn compile(spec: &EcsPowerScheduleSpec) -> Result<Schedule, InvalidSchedule> {
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
            let Some(date) = parse_date(&exception.date) else {
                problems.add(
                    field,
                    format!("{:?} is not a date YYYY-MM-DD", exception.date),
                );
                continue;
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
                continue;
            }
            if let Some((_, first)) = exceptions.insert(date, (exception.power_state, index)) {
                problems.add(
                    field,
                    format!(
                        "{date} is already listed at spec.exceptions[{first}]: one entry per day"
                    ),
                );
                // Keep the first entry, as the message says.
                exceptions.insert(date, (spec.exceptions[first].power_state, first));
            }
        }

        match zone {
            Some(zone) if problems.0.is_empty() => Ok(Schedule {
                zone,
                zone_name: spec.time_zone.clone(),
                windows,
                exceptions,
            }),
            _ => Err(InvalidSchedule { errors: problems.0 }),
        }
    }
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
