//! Holiday calendars as a schedule's exception days: the lookup a compile is handed, the error
//! for a calendar that is not there, and the check of a calendar's own dates.
//!
//! A missing calendar is not a field error: the schedule is right, the calendar is just not
//! (yet) there, so callers say `CalendarNotFound` naming it and wait for it to appear.

use std::collections::BTreeMap;

use jiff::civil::Date;

use super::compile::{FieldError, InvalidSchedule, Problems, check_date};
use crate::api::holiday_calendar::EcsHolidayCalendarSpec;

/// The EcsHolidayCalendars a schedule may use, by name (those of its namespace). Borrowed, so a
/// reconcile builds one over its cache's objects without copying a thousand days.
#[derive(Clone, Debug, Default)]
pub struct Calendars<'a>(BTreeMap<&'a str, &'a EcsHolidayCalendarSpec>);

impl<'a> Calendars<'a> {
    /// No calendar at all: a schedule that uses one cannot compile.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the calendar `name`.
    pub fn insert(&mut self, name: &'a str, spec: &'a EcsHolidayCalendarSpec) {
        self.0.insert(name, spec);
    }

    /// The calendar `name`, if known.
    pub fn get(&self, name: &str) -> Option<&'a EcsHolidayCalendarSpec> {
        self.0.get(name).copied()
    }
}

impl<'a> FromIterator<(&'a str, &'a EcsHolidayCalendarSpec)> for Calendars<'a> {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a EcsHolidayCalendarSpec)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Why a spec does not compile to a schedule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// `spec.calendars[index]` names a calendar that does not exist (the first such; the spec
    /// is otherwise valid).
    #[error(
        "EcsHolidayCalendar {name} (spec.calendars[{index}]) does not exist: create it in the schedule's namespace, or remove it from spec.calendars"
    )]
    CalendarNotFound { name: String, index: usize },
    /// A field of the schedule, or a date of one of its calendars, is wrong.
    #[error(transparent)]
    Invalid(#[from] InvalidSchedule),
}

/// The days of the calendar `name` by date, each with its index in `spec.days`; every date
/// that is not a real date in the years allowed, or is listed twice, is an error naming the
/// calendar and the field (`EcsHolidayCalendar cn-holidays spec.days[3].date`).
pub fn calendar_days(
    name: &str,
    spec: &EcsHolidayCalendarSpec,
) -> Result<BTreeMap<Date, usize>, Vec<FieldError>> {
    let mut problems = Problems(Vec::new());
    let mut days = BTreeMap::new();
    for (index, day) in spec.days.iter().enumerate() {
        let field = format!("EcsHolidayCalendar {name} spec.days[{index}].date");
        let Some(date) = check_date(&day.date, &field, &mut problems) else {
            continue;
        };
        if let Some(first) = days.get(&date) {
            problems.add(
                field,
                format!("{date} is already listed at spec.days[{first}]: one entry per day"),
            );
            continue;
        }
        days.insert(date, index);
    }
    if problems.0.is_empty() {
        Ok(days)
    } else {
        Err(problems.0)
    }
}
