//! Holiday calendars in a schedule: precedence, the errors that name a calendar, the preview's
//! WHY, and the differential property (a calendar day is exactly the same `exceptions` entry).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::api::PowerState::{Running, Stopped};
use crate::api::power_schedule::{
    CalendarReference, RunningWindow, ScheduleException, Weekday as Day,
};
use crate::api::{CalendarDay, EcsHolidayCalendarSpec, EcsPowerScheduleSpec};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn date(text: &str) -> Date {
    text.parse().unwrap()
}

fn calendar(days: &[(&str, Option<&str>)]) -> EcsHolidayCalendarSpec {
    EcsHolidayCalendarSpec {
        days: days
            .iter()
            .map(|(date, name)| CalendarDay {
                date: date.to_string(),
                name: name.map(str::to_string),
            })
            .collect(),
    }
}

fn reference(name: &str, power_state: PowerState) -> CalendarReference {
    CalendarReference {
        name: name.into(),
        power_state,
    }
}

/// Weekdays 08:00–20:00 in Asia/Shanghai, using `calendars`, with `exceptions`.
fn office_hours(
    calendars: Vec<CalendarReference>,
    exceptions: &[(&str, PowerState)],
) -> EcsPowerScheduleSpec {
    EcsPowerScheduleSpec {
        time_zone: "Asia/Shanghai".into(),
        running: vec![RunningWindow {
            days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            from: "08:00".into(),
            to: "20:00".into(),
        }],
        exceptions: exceptions
            .iter()
            .map(|(date, power_state)| ScheduleException {
                date: date.to_string(),
                power_state: *power_state,
            })
            .collect(),
        calendars,
    }
}

/// Friday 2027-10-01 is National Day in cn-holidays; 2027-10-02 (Saturday) a workday in
/// cn-workdays.
fn cn_calendars() -> [(&'static str, EcsHolidayCalendarSpec); 2] {
    [
        (
            "cn-holidays",
            calendar(&[("2027-10-01", Some("National Day")), ("2027-10-04", None)]),
        ),
        (
            "cn-workdays",
            calendar(&[("2027-10-09", Some("Makeup workday"))]),
        ),
    ]
}

fn compile(
    spec: &EcsPowerScheduleSpec,
    calendars: &[(&str, EcsHolidayCalendarSpec)],
) -> Result<Schedule, CompileError> {
    let calendars: Calendars = calendars.iter().map(|(n, s)| (*n, s)).collect();
    Schedule::compile(spec, &calendars)
}

#[test]
fn a_calendar_day_stops_the_day_and_the_transition_names_the_calendar_and_the_day() {
    let calendars = cn_calendars();
    let spec = office_hours(
        vec![
            reference("cn-holidays", Stopped),
            reference("cn-workdays", Running),
        ],
        &[],
    );
    let s = compile(&spec, &calendars).unwrap();
    assert_eq!(s.state_at(at("2027-10-01T10:00:00+08:00")), Stopped);
    // Thursday 20:00 closes as usual; Friday does not open; Monday 2027-10-04 neither.
    let t: Vec<Transition> = s
        .transitions(
            at("2027-09-30T12:00:00+08:00"),
            at("2027-10-06T00:00:00+08:00"),
        )
        .collect();
    assert_eq!(
        t.iter().map(|t| (t.at, t.power_state)).collect::<Vec<_>>(),
        [
            (at("2027-09-30T20:00:00+08:00"), Stopped),
            (at("2027-10-05T08:00:00+08:00"), Running),
            (at("2027-10-05T20:00:00+08:00"), Stopped),
        ]
    );
    // A Saturday the calendar makes a workday: running all day, then the windows again.
    let t: Vec<Transition> = s
        .transitions(
            at("2027-10-08T21:00:00+08:00"),
            at("2027-10-10T12:00:00+08:00"),
        )
        .collect();
    let cause = Cause::Calendar {
        calendar: "cn-workdays".into(),
        day: Some("Makeup workday".into()),
        date: date("2027-10-09"),
    };
    assert_eq!(t[0].cause, cause);
    assert_eq!(cause.to_string(), "calendar cn-workdays: Makeup workday");
    assert_eq!(
        t[1].cause.to_string(),
        "calendar cn-workdays: Makeup workday over: the windows decide again"
    );
}

#[test]
fn the_schedules_own_exception_wins_over_a_calendar_day() {
    let calendars = cn_calendars();
    let spec = office_hours(
        vec![reference("cn-holidays", Stopped)],
        &[("2027-10-01", Running)],
    );
    let s = compile(&spec, &calendars).unwrap();
    assert_eq!(s.state_at(at("2027-10-01T03:00:00+08:00")), Running);
    let next = s.next_transition(at("2027-09-30T21:00:00+08:00")).unwrap();
    assert_eq!(
        next.cause,
        Cause::Exception {
            index: 0,
            date: date("2027-10-01")
        }
    );
    // Its other day still counts.
    assert_eq!(s.state_at(at("2027-10-04T10:00:00+08:00")), Stopped);
}

#[test]
fn two_calendars_that_disagree_on_a_date_stopped_wins_whichever_comes_first() {
    let calendars = [
        ("shutdown", calendar(&[("2027-10-01", Some("Shutdown"))])),
        ("open-day", calendar(&[("2027-10-01", Some("Open day"))])),
    ];
    for order in [["shutdown", "open-day"], ["open-day", "shutdown"]] {
        let refs = order
            .iter()
            .map(|n| reference(n, if *n == "shutdown" { Stopped } else { Running }))
            .collect();
        let s = compile(&office_hours(refs, &[]), &calendars).unwrap();
        assert_eq!(
            s.state_at(at("2027-10-01T10:00:00+08:00")),
            Stopped,
            "{order:?}"
        );
        let t = s.next_transition(at("2027-09-30T10:00:00+08:00")).unwrap();
        // 20:00 closes first; the day itself brings no change, but the preview names it.
        assert_eq!(t.cause, Cause::WindowCloses { index: 0 });
        let text = preview::render(
            &s,
            "office-hours",
            at("2027-09-30T10:00:00+08:00"),
            at("2027-10-02T00:00:00+08:00"),
        );
        assert!(
            text.contains("calendar shutdown: Shutdown: Stopped all day, as it already was"),
            "{order:?}:\n{text}"
        );
    }
    // Agreeing calendars: the first listed names the day.
    let calendars = [
        ("a", calendar(&[("2027-10-01", Some("A's name"))])),
        ("b", calendar(&[("2027-10-01", Some("B's name"))])),
    ];
    let spec = office_hours(vec![reference("b", Running), reference("a", Running)], &[]);
    let s = compile(&spec, &calendars).unwrap();
    let t = s.next_transition(at("2027-09-30T21:00:00+08:00")).unwrap();
    assert_eq!(t.cause.to_string(), "calendar b: B's name");
}

#[test]
fn a_missing_calendar_is_its_own_error_naming_it_and_field_errors_come_first() {
    let spec = office_hours(
        vec![
            reference("cn-holidays", Stopped),
            reference("gone", Stopped),
        ],
        &[],
    );
    let err = compile(&spec, &cn_calendars()).unwrap_err();
    assert_eq!(
        err,
        CompileError::CalendarNotFound {
            name: "gone".into(),
            index: 1
        }
    );
    assert!(
        err.to_string()
            .starts_with("EcsHolidayCalendar gone (spec.calendars[1]) does not exist"),
        "{err}"
    );
    // Something else wrong too: that is reported (a missing calendar cannot be checked).
    let mut broken = spec.clone();
    broken.time_zone = "Mars/Olympus".into();
    assert!(matches!(
        compile(&broken, &cn_calendars()),
        Err(CompileError::Invalid(_))
    ));
}

#[test]
fn a_bad_calendar_date_names_the_calendar_and_its_field() {
    let calendars = [(
        "cn-holidays",
        calendar(&[
            ("2027-01-01", None),
            ("2027-02-30", None),
            ("1999-10-01", None),
            ("2027-01-01", None),
        ]),
    )];
    let spec = office_hours(
        vec![
            reference("cn-holidays", Stopped),
            reference("cn-holidays", Running),
        ],
        &[],
    );
    let Err(CompileError::Invalid(invalid)) = compile(&spec, &calendars) else {
        panic!("bad dates compile");
    };
    let errors: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "EcsHolidayCalendar cn-holidays spec.days[1].date: \"2027-02-30\" is not a date YYYY-MM-DD",
            "EcsHolidayCalendar cn-holidays spec.days[2].date: 1999-10-01 is outside the years 2000 to 2999",
            "EcsHolidayCalendar cn-holidays spec.days[3].date: 2027-01-01 is already listed at spec.days[0]: one entry per day",
            "spec.calendars[1].name: \"cn-holidays\" is already listed at spec.calendars[0]: one entry per calendar",
        ]
    );
}

#[test]
fn the_preview_why_names_the_calendar_and_the_day() {
    let calendars = cn_calendars();
    let spec = office_hours(vec![reference("cn-holidays", Stopped)], &[]);
    let s = compile(&spec, &calendars).unwrap();
    let text = preview::render(
        &s,
        "office-hours",
        at("2027-09-30T00:00:00Z"),
        at("2027-10-05T00:00:00Z"),
    );
    let line = text
        .lines()
        .find(|l| l.contains("National Day"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>().join(" "),
        "Fri 2027-10-01 00:00 CST (+08:00) 2027-09-30 16:00Z - calendar cn-holidays: National Day: Stopped all day, as it already was"
    );
    assert!(
        text.contains("calendar cn-holidays: 2027-10-04: Stopped all day"),
        "an unnamed day is named by its date:\n{text}"
    );
}

// ---- the differential property ----

/// Zones with DST in both directions, a half-hour DST (Lord Howe), and DST at midnight
/// (Santiago: the day starts at 01:00 when the clocks go forward).
const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Shanghai",
];

/// The days the entries fall on: 2026-03-01 plus 0..80 days (the March and April DST changes),
/// or 2026-08-25 plus 0..80 (September to November).
fn entry_date(spring: bool, offset: i64) -> Date {
    let base = if spring {
        date("2026-03-01")
    } else {
        date("2026-08-25")
    };
    base.checked_add(jiff::Span::new().days(offset)).unwrap()
}

/// Where an exception day comes from in the schedule under test.
#[derive(Clone, Copy, Debug)]
enum Source {
    Own(PowerState),
    /// The calendar `a` or `b`, with that reference's state.
    A,
    B,
}

fn hhmm(quarters: u32) -> String {
    format!("{:02}:{:02}", quarters / 4, (quarters % 4) * 15)
}

fn any_state() -> impl Strategy<Value = PowerState> {
    prop_oneof![Just(Running), Just(Stopped)]
}

prop_compose! {
    fn any_window()(days in 1u8..128, from in 0u32..96, length in 1u32..96) -> RunningWindow {
        let to = from + length;
        RunningWindow {
            days: Day::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| days & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect(),
            from: hhmm(from),
            // Past midnight runs into the next day; exactly 96 quarters is 24:00.
            to: if to == 96 { "24:00".into() } else { hhmm(to % 96) },
        }
    }
}

/// A spec with `entries` as exceptions and calendar days, and the same spec with every entry
/// an exception (precedence applied by hand: own first, then `Stopped` over `Running`).
fn the_pair(
    zone: &str,
    running: Vec<RunningWindow>,
    states: (PowerState, PowerState),
    entries: &[(Date, Source)],
) -> (Schedule, Schedule) {
    let (mut own, mut a, mut b) = (BTreeMap::new(), Vec::new(), Vec::new());
    for (date, from) in entries {
        match from {
            Source::Own(state) => {
                own.entry(*date).or_insert(*state);
            }
            Source::A => a.push(*date),
            Source::B => b.push(*date),
        }
    }
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    let mut expected = own.clone();
    for (days, state) in [(&a, states.0), (&b, states.1)] {
        for day in days {
            if own.contains_key(day) {
                continue;
            }
            let held = expected.entry(*day).or_insert(state);
            if state == Stopped {
                *held = Stopped;
            }
        }
    }
    let exceptions = |map: &BTreeMap<Date, PowerState>| {
        map.iter()
            .map(|(date, power_state)| ScheduleException {
                date: date.to_string(),
                power_state: *power_state,
            })
            .collect()
    };
    let days = |dates: &[Date]| EcsHolidayCalendarSpec {
        days: dates
            .iter()
            .map(|d| CalendarDay {
                date: d.to_string(),
                name: Some(format!("day {d}")),
            })
            .collect(),
    };
    let (a, b) = (days(&a), days(&b));
    let with_calendars = EcsPowerScheduleSpec {
        time_zone: zone.into(),
        running: running.clone(),
        exceptions: exceptions(&own),
        calendars: vec![reference("a", states.0), reference("b", states.1)],
    };
    let only_exceptions = EcsPowerScheduleSpec {
        time_zone: zone.into(),
        running,
        exceptions: exceptions(&expected),
        calendars: Vec::new(),
    };
    let calendars: Calendars = [("a", &a), ("b", &b)].into_iter().collect();
    (
        Schedule::compile(&with_calendars, &calendars).unwrap(),
        Schedule::compile(&only_exceptions, &Calendars::none()).unwrap(),
    )
}

/// A cause with where an exception day came from left out.
fn kind(cause: &Cause) -> (u8, Option<usize>, Option<Date>) {
    match cause {
        Cause::WindowOpens { index } => (0, Some(*index), None),
        Cause::WindowCloses { index } => (1, Some(*index), None),
        Cause::Exception { date, .. } | Cause::Calendar { date, .. } => (2, None, Some(*date)),
        Cause::ExceptionOver { date, .. } | Cause::CalendarOver { date, .. } => {
            (3, None, Some(*date))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// For random schedules (overnight windows, 24:00, DST zones) with random calendar days,
    /// own exceptions on the same dates and two calendars that may disagree: the schedule
    /// behaves exactly as the one whose exceptions list every such day (precedence applied)
    /// — the same transitions (instant, state, DST shift, which day), the same state between
    /// and at each, the same next transition from random instants.
    #[test]
    fn a_calendar_day_behaves_exactly_as_the_same_exception(
        zone in proptest::sample::select(ZONES),
        running in proptest::collection::vec(any_window(), 1..4),
        states in (any_state(), any_state()),
        spring in any::<bool>(),
        entries in proptest::collection::vec(
            (0i64..80, prop_oneof![
                any_state().prop_map(Source::Own),
                Just(Source::A),
                Just(Source::B),
            ]),
            0..10,
        ),
        probes in proptest::collection::vec(0i64..90 * 86_400, 8),
    ) {
        let entries: Vec<(Date, Source)> =
            entries.iter().map(|(day, from)| (entry_date(spring, *day), *from)).collect();
        let (tested, reference) = the_pair(zone, running, states, &entries);
        let start = reference.day_start(entry_date(spring, -2)).unwrap();
        let end = reference.day_start(entry_date(spring, 84)).unwrap();
        let listed = |s: &Schedule| {
            s.transitions(start, end)
                .map(|t| (t.at, t.power_state, t.shift, kind(&t.cause)))
                .collect::<Vec<_>>()
        };
        let (got, want) = (listed(&tested), listed(&reference));
        prop_assert_eq!(&got, &want);
        for (at, state, _, _) in &want {
            prop_assert_eq!(tested.state_at(*at), *state);
            let before = *at - SignedDuration::from_secs(1);
            prop_assert_eq!(tested.state_at(before), reference.state_at(before));
        }
        for offset in probes {
            let now = start + SignedDuration::from_secs(offset);
            prop_assert_eq!(tested.state_at(now), reference.state_at(now));
            let next = |s: &Schedule| {
                s.next_transition(now).map(|t| (t.at, t.power_state, kind(&t.cause)))
            };
            prop_assert_eq!(next(&tested), next(&reference));
        }
    }
}
