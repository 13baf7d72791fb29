//! The window arithmetic on an injected clock: every instant is written out with its offset.

use crate::testing::annotations;

use jiff::{SignedDuration, Timestamp};

use super::overrides::{OVERRIDE_POWER_STATE, OVERRIDE_UNTIL};
use super::*;
use crate::api::EcsPowerScheduleSpec;
use crate::api::PowerState::{Running, Stopped};

fn spec(yaml: &str) -> EcsPowerScheduleSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

fn schedule(yaml: &str) -> Schedule {
    Schedule::compile(&spec(yaml), &Calendars::none()).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(yaml: &str) -> Vec<String> {
    match Schedule::compile(&spec(yaml), &Calendars::none()) {
        Err(CompileError::Invalid(invalid)) => {
            invalid.errors.iter().map(ToString::to_string).collect()
        }
        other => panic!("the spec is invalid: {other:?}"),
    }
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn all(s: &Schedule, from: &str, until: &str) -> Vec<(Timestamp, PowerState)> {
    s.transitions(at(from), at(until))
        .map(|t| (t.at, t.power_state))
        .collect()
}

const OFFICE_HOURS: &str = r#"
timeZone: Asia/Shanghai
running:
  - days: [Mon, Tue, Wed, Thu, Fri]
    from: "08:00"
    to: "20:00"
exceptions:
  - date: "2026-12-25"
    powerState: Stopped
  - date: "2026-12-26"
    powerState: Running
"#;

// ---- windows ----

#[test]
fn office_hours_run_on_weekdays_in_the_schedules_zone() {
    let s = schedule(OFFICE_HOURS);
    // Friday 2026-11-27 in Shanghai (+08:00).
    assert_eq!(s.state_at(at("2026-11-27T07:59:59+08:00")), Stopped);
    assert_eq!(s.state_at(at("2026-11-27T08:00:00+08:00")), Running);
    assert_eq!(s.state_at(at("2026-11-27T19:59:59+08:00")), Running);
    assert_eq!(
        s.state_at(at("2026-11-27T20:00:00+08:00")),
        Stopped,
        "to is exclusive"
    );
    // Saturday.
    assert_eq!(s.state_at(at("2026-11-28T12:00:00+08:00")), Stopped);
    // The issue's example: Friday noon UTC is 20:00 in Shanghai.
    let next = s.next_transition(at("2026-11-27T10:00:00Z")).unwrap();
    assert_eq!(
        (next.at, next.power_state),
        (at("2026-11-27T12:00:00Z"), Stopped)
    );
    assert_eq!(next.cause, Cause::WindowCloses { index: 0 });
    // Over the weekend: Monday 08:00.
    let next = s.next_transition(at("2026-11-27T12:00:00Z")).unwrap();
    assert_eq!(
        (next.at, next.power_state),
        (at("2026-11-30T08:00:00+08:00"), Running)
    );
    assert_eq!(next.cause, Cause::WindowOpens { index: 0 });
    assert_eq!(next.shift, None);
}

#[test]
fn an_overnight_window_belongs_to_the_day_it_starts_on() {
    let s = schedule(
        r#"
timeZone: UTC
running:
  - days: [Fri]
    from: "22:00"
    to: "02:00"
"#,
    );
    assert_eq!(s.state_at(at("2026-11-27T21:59:00Z")), Stopped);
    assert_eq!(s.state_at(at("2026-11-27T23:00:00Z")), Running);
    assert_eq!(
        s.state_at(at("2026-11-28T01:59:00Z")),
        Running,
        "Saturday morning"
    );
    assert_eq!(s.state_at(at("2026-11-28T02:00:00Z")), Stopped);
    assert_eq!(
        s.state_at(at("2026-11-28T23:00:00Z")),
        Stopped,
        "no Saturday window"
    );
    assert_eq!(
        all(&s, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"),
        [
            (at("2026-11-27T22:00:00Z"), Running),
            (at("2026-11-28T02:00:00Z"), Stopped)
        ]
    );
}

#[test]
fn adjacent_and_overlapping_windows_make_one_run_and_24_00_ends_the_day() {
    let s = schedule(
        r#"
timeZone: Europe/Berlin
running:
  - days: [Mon]
    from: "08:00"
    to: "12:00"
  - days: [Mon]
    from: "12:00"
    to: "24:00"
  - days: [Mon]
    from: "10:00"
    to: "11:00"
"#,
    );
    assert_eq!(
        all(&s, "2026-11-30T00:00:00+01:00", "2026-12-01T12:00:00+01:00"),
        [
            (at("2026-11-30T08:00:00+01:00"), Running),
            (at("2026-12-01T00:00:00+01:00"), Stopped)
        ]
    );
}

#[test]
fn a_schedule_that_never_changes_has_no_next_transition() {
    let s = schedule(
        r#"
timeZone: Asia/Shanghai
running:
  - days: [Mon, Tue, Wed, Thu, Fri, Sat, Sun]
    from: "00:00"
    to: "24:00"
"#,
    );
    let now = at("2026-11-27T10:00:00Z");
    assert_eq!(s.state_at(now), Running);
    assert_eq!(s.next_transition(now), None);
}

// ---- daylight saving time ----

/// Europe/Berlin springs forward on Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST.
#[test]
fn a_boundary_in_the_spring_gap_moves_forward_by_the_gap() {
    let s = schedule(
        r#"
timeZone: Europe/Berlin
running:
  - days: [Sun]
    from: "02:30"
    to: "06:00"
"#,
    );
    let opens = s.next_transition(at("2026-03-28T12:00:00Z")).unwrap();
    // 02:30 does not exist that night: 03:30 CEST, one hour (the gap) later.
    assert_eq!(opens.at, at("2026-03-29T03:30:00+02:00"));
    assert_eq!(opens.power_state, Running);
    assert_eq!(
        opens.shift,
        Some(Shift::Gap {
            wall: "2026-03-29T02:30".parse().unwrap(),
            by: SignedDuration::from_hours(1)
        })
    );
    let closes = s.next_transition(opens.at).unwrap();
    assert_eq!(closes.at, at("2026-03-29T06:00:00+02:00"));
    assert_eq!(closes.shift, None);
    // A week later the window is its usual 3h30.
    let opens = s.next_transition(closes.at).unwrap();
    assert_eq!(opens.at, at("2026-04-05T02:30:00+02:00"));
    assert_eq!(opens.shift, None);
}

#[test]
fn a_window_inside_the_spring_gap_is_empty_that_night_only() {
    let s = schedule(
        r#"
timeZone: Europe/Berlin
running:
  - days: [Sun]
    from: "02:00"
    to: "03:00"
"#,
    );
    // 02:00 → 03:00 CEST and 03:00 → 03:00 CEST: nothing to run that night.
    assert_eq!(all(&s, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"), []);
    assert_eq!(
        all(&s, "2026-04-04T00:00:00Z", "2026-04-06T00:00:00Z"),
        [
            (at("2026-04-05T02:00:00+02:00"), Running),
            (at("2026-04-05T03:00:00+02:00"), Stopped)
        ]
    );
    // The quiet fortnight search still finds the next one.
    assert_eq!(
        s.next_transition(at("2026-03-22T12:00:00Z")).unwrap().at,
        at("2026-04-05T02:00:00+02:00")
    );
}

/// Europe/Berlin falls back on Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET.
#[test]
fn a_boundary_in_the_autumn_fold_is_the_first_of_the_two() {
    let s = schedule(
        r#"
timeZone: Europe/Berlin
running:
  - days: [Sun]
    from: "02:30"
    to: "04:00"
"#,
    );
    let t: Vec<Transition> = s
        .transitions(at("2026-10-24T12:00:00Z"), at("2026-10-26T00:00:00Z"))
        .collect();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(
        t[0].at,
        at("2026-10-25T02:30:00+02:00"),
        "the first 02:30, in CEST"
    );
    assert_eq!(
        t[0].shift,
        Some(Shift::Fold {
            wall: "2026-10-25T02:30".parse().unwrap()
        })
    );
    assert_eq!(t[1].at, at("2026-10-25T04:00:00+01:00"));
    // The window is an hour longer that night.
    assert_eq!(
        t[1].at.duration_since(t[0].at),
        SignedDuration::from_mins(150)
    );
}

/// America/New_York springs forward on 2026-03-08 (02:00 EST → 03:00 EDT) and falls back on
/// 2026-11-01 (02:00 EDT → 01:00 EST).
#[test]
fn an_overnight_window_across_new_york_dst_changes_keeps_its_wall_clock_ends() {
    let s = schedule(
        r#"
timeZone: America/New_York
running:
  - days: [Sat]
    from: "22:00"
    to: "06:00"
"#,
    );
    assert_eq!(
        all(&s, "2026-03-07T12:00:00Z", "2026-03-09T00:00:00Z"),
        [
            (at("2026-03-07T22:00:00-05:00"), Running),
            (at("2026-03-08T06:00:00-04:00"), Stopped)
        ],
        "7 hours that night"
    );
    assert_eq!(
        all(&s, "2026-10-31T12:00:00Z", "2026-11-02T00:00:00Z"),
        [
            (at("2026-10-31T22:00:00-04:00"), Running),
            (at("2026-11-01T06:00:00-05:00"), Stopped)
        ],
        "9 hours that night"
    );
    // In the repeated hour the state is still Running (both 01:30s are inside).
    assert_eq!(s.state_at(at("2026-11-01T01:30:00-04:00")), Running);
    assert_eq!(s.state_at(at("2026-11-01T01:30:00-05:00")), Running);
}

// ---- exceptions ----

#[test]
fn exception_days_override_the_windows_from_midnight_to_midnight() {
    let s = schedule(OFFICE_HOURS);
    // Christmas is a Friday: stopped all day.
    assert_eq!(s.state_at(at("2026-12-25T10:00:00+08:00")), Stopped);
    // Boxing Day is a Saturday: running all day.
    assert_eq!(s.state_at(at("2026-12-26T03:00:00+08:00")), Running);
    let t: Vec<Transition> = s
        .transitions(
            at("2026-12-24T12:00:00+08:00"),
            at("2026-12-28T12:00:00+08:00"),
        )
        .collect();
    let summary: Vec<(Timestamp, PowerState, Cause)> = t
        .iter()
        .map(|t| (t.at, t.power_state, t.cause.clone()))
        .collect();
    let date = |d: &str| d.parse().unwrap();
    assert_eq!(
        summary,
        [
            (
                at("2026-12-24T20:00:00+08:00"),
                Stopped,
                Cause::WindowCloses { index: 0 }
            ),
            (
                at("2026-12-26T00:00:00+08:00"),
                Running,
                Cause::Exception {
                    index: 1,
                    date: date("2026-12-26")
                }
            ),
            (
                at("2026-12-27T00:00:00+08:00"),
                Stopped,
                Cause::ExceptionOver {
                    index: 1,
                    date: date("2026-12-26")
                }
            ),
            (
                at("2026-12-28T08:00:00+08:00"),
                Running,
                Cause::WindowOpens { index: 0 }
            ),
        ]
    );
}

#[test]
fn an_exception_day_replaces_its_windows_tail_included_and_cuts_the_one_before_at_midnight() {
    let s = schedule(
        r#"
timeZone: UTC
running:
  - days: [Fri]
    from: "22:00"
    to: "02:00"
exceptions:
  - date: "2026-12-25"
    powerState: Stopped
"#,
    );
    // Christmas is a Friday: its night window does not open, not even after midnight.
    assert_eq!(s.state_at(at("2026-12-25T23:00:00Z")), Stopped);
    assert_eq!(s.state_at(at("2026-12-26T01:00:00Z")), Stopped);
    assert_eq!(all(&s, "2026-12-25T12:00:00Z", "2026-12-26T12:00:00Z"), []);
    let s = schedule(
        r#"
timeZone: UTC
running:
  - days: [Fri]
    from: "22:00"
    to: "02:00"
exceptions:
  - date: "2026-12-26"
    powerState: Stopped
"#,
    );
    // Boxing Day (Saturday) is an exception: Christmas night's window is cut at its midnight.
    assert_eq!(
        all(&s, "2026-12-25T12:00:00Z", "2026-12-26T12:00:00Z"),
        [
            (at("2026-12-25T22:00:00Z"), Running),
            (at("2026-12-26T00:00:00Z"), Stopped)
        ]
    );
    let t = s.next_transition(at("2026-12-25T23:00:00Z")).unwrap();
    assert_eq!(
        t.cause,
        Cause::Exception {
            index: 0,
            date: "2026-12-26".parse().unwrap()
        }
    );
}

#[test]
fn next_transition_reaches_an_exception_years_away() {
    let s = schedule(
        r#"
timeZone: Asia/Shanghai
running:
  - days: [Mon, Tue, Wed, Thu, Fri, Sat, Sun]
    from: "00:00"
    to: "24:00"
exceptions:
  - date: "2030-02-04"
    powerState: Stopped
"#,
    );
    let next = s.next_transition(at("2026-11-27T10:00:00Z")).unwrap();
    assert_eq!(next.at, at("2030-02-04T00:00:00+08:00"));
    assert_eq!(next.power_state, Stopped);
    let after = s.next_transition(next.at).unwrap();
    assert_eq!(after.at, at("2030-02-05T00:00:00+08:00"));
    assert_eq!(s.next_transition(after.at), None);
}

// ---- overrides ----

/// Annotations from `(key, value)` pairs.

#[test]
fn an_override_holds_until_its_time_and_then_the_schedule_takes_over() {
    let s = schedule(OFFICE_HOURS);
    let a = annotations(&[
        (OVERRIDE_POWER_STATE, "Running"),
        (OVERRIDE_UNTIL, "2026-11-29T02:00:00+08:00"),
    ]);
    // Friday night, after hours: kept running for a weekend job.
    let now = at("2026-11-27T21:00:00+08:00");
    let ov = Override::read(Some(&a), now);
    assert_eq!(
        ov,
        Override::Active {
            power_state: Running,
            until: at("2026-11-29T02:00:00+08:00")
        }
    );
    let e = s.effective(&ov, now);
    assert_eq!(e.power_state, Running);
    assert_eq!(e.overridden_until, Some(at("2026-11-29T02:00:00+08:00")));
    assert_eq!(e.next_change, Some(at("2026-11-29T02:00:00+08:00")));
    // At its end it has expired: the schedule decides (Stopped until Monday 08:00).
    let later = at("2026-11-29T02:00:00+08:00");
    let ov = Override::read(Some(&a), later);
    assert!(
        matches!(
            ov,
            Override::Expired {
                power_state: Running,
                ..
            }
        ),
        "{ov:?}"
    );
    let e = s.effective(&ov, later);
    assert_eq!(e.power_state, Stopped);
    assert_eq!(e.overridden_until, None);
    assert_eq!(e.next_change, Some(at("2026-11-30T08:00:00+08:00")));
}

#[test]
fn malformed_overrides_are_ignored_with_the_annotation_named() {
    let now = at("2026-11-27T12:00:00Z");
    let read = |pairs: &[(&str, &str)]| Override::read(Some(&annotations(pairs)), now);
    assert_eq!(read(&[]), Override::None);
    assert_eq!(Override::read(None, now), Override::None);
    type Case<'a> = (Vec<(&'a str, &'a str)>, OverrideError, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![(OVERRIDE_POWER_STATE, "Stopped")],
            OverrideError::MissingUntil,
            "metadata.annotations[\"ecs.powerctl.io/override-until\"]: required",
        ),
        (
            vec![(OVERRIDE_UNTIL, "2026-11-28T00:00:00Z")],
            OverrideError::MissingPowerState,
            "metadata.annotations[\"ecs.powerctl.io/override-power-state\"]: required",
        ),
        (
            vec![
                (OVERRIDE_POWER_STATE, "On"),
                (OVERRIDE_UNTIL, "2026-11-28T00:00:00Z"),
            ],
            OverrideError::BadPowerState("On".into()),
            "\"On\" is not Running or Stopped",
        ),
        (
            vec![
                (OVERRIDE_POWER_STATE, "Running"),
                (OVERRIDE_UNTIL, "tomorrow"),
            ],
            OverrideError::BadUntil("tomorrow".into()),
            "\"tomorrow\" is not an RFC 3339 time",
        ),
        (
            vec![
                (OVERRIDE_POWER_STATE, "Running"),
                (OVERRIDE_UNTIL, "2026-12-04T12:00:01Z"),
            ],
            OverrideError::TooFarAhead {
                until: "2026-12-04T12:00:01Z".into(),
            },
            "more than 7 days ahead",
        ),
    ];
    for (pairs, expected, message) in cases {
        let ov = read(&pairs);
        assert_eq!(ov, Override::Invalid(expected.clone()), "{pairs:?}");
        assert!(expected.to_string().contains(message), "{expected}");
        // Ignored: the schedule decides.
        let s = schedule(OFFICE_HOURS);
        assert_eq!(s.effective(&ov, now).power_state, s.state_at(now));
    }
    // Exactly 7 days ahead is allowed.
    assert!(matches!(
        read(&[
            (OVERRIDE_POWER_STATE, "Stopped"),
            (OVERRIDE_UNTIL, "2026-12-04T12:00:00Z")
        ]),
        Override::Active { .. }
    ));
}

/// RFC 3339 reaches 9999-12-31T23:59:59Z (past the last instant jiff holds): a valid time,
/// only too far ahead, and the message says so.
#[test]
fn an_override_until_the_end_of_time_is_too_far_ahead_not_malformed() {
    let now = at("2026-11-27T12:00:00Z");
    for until in [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59+14:00",
        "9999-12-30T21:00:00Z",
    ] {
        let ov = Override::read(
            Some(&annotations(&[
                (OVERRIDE_POWER_STATE, "Running"),
                (OVERRIDE_UNTIL, until),
            ])),
            now,
        );
        let Override::Invalid(error) = ov else {
            panic!("{until}: {ov:?}");
        };
        assert!(
            matches!(error, OverrideError::TooFarAhead { .. }),
            "{until}: {error}"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("{until} is more than 7 days ahead")),
            "{error}"
        );
    }
}

/// A 200 KB annotation value is quoted by its beginning only: the message goes to status and
/// events.
#[test]
fn a_huge_override_value_is_quoted_by_its_beginning() {
    let now = at("2026-11-27T12:00:00Z");
    let huge = format!("2026-11-28T08:00:00Z{}", "x".repeat(200_000));
    for pairs in [
        [
            (OVERRIDE_POWER_STATE, "Running"),
            (OVERRIDE_UNTIL, huge.as_str()),
        ],
        [
            (OVERRIDE_POWER_STATE, huge.as_str()),
            (OVERRIDE_UNTIL, "2026-11-28T08:00:00Z"),
        ],
    ] {
        let Override::Invalid(error) = Override::read(Some(&annotations(&pairs)), now) else {
            panic!("a huge value is not an override");
        };
        let message = error.to_string();
        assert!(message.len() < 300, "{} bytes: {message}", message.len());
        assert!(message.contains("\"2026-11-28T08:00:00Z"), "{message}");
        assert!(message.contains("(truncated)"), "{message}");
    }
}

// ---- invalid specs ----

#[test]
fn every_invalid_field_is_named_with_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "timeZone: Mars/Olympus\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]",
            "spec.timeZone: \"Mars/Olympus\" is not an IANA time zone name",
        ),
        (
            "timeZone: \"\"\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]",
            "spec.timeZone: empty",
        ),
        (
            "timeZone: Factory\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]",
            "spec.timeZone: \"Factory\" is tzdata's placeholder",
        ),
        ("timeZone: UTC\nrunning: []", "spec.running: no window"),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}, {days: [Tue], from: \"08:00\", to: \"25:00\"}]",
            "spec.running[1].to: \"25:00\" is not a time of day HH:MM",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"8:00\", to: \"20:00\"}]",
            "spec.running[0].from: \"8:00\" is not a time of day HH:MM",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"24:00\", to: \"20:00\"}]",
            "spec.running[0].from: \"24:00\" is not a time of day HH:MM",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"08:00\", to: \"08:00\"}]",
            "spec.running[0]: from and to are both \"08:00\": a window needs a length",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [], from: \"08:00\", to: \"20:00\"}]",
            "spec.running[0].days: empty",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon, Tue, Mon], from: \"08:00\", to: \"20:00\"}]",
            "spec.running[0].days[2]: Mon is listed twice",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]\nexceptions: [{date: \"2026-12-25\", powerState: Stopped}, {date: \"2026-12-25\", powerState: Running}]",
            "spec.exceptions[1].date: 2026-12-25 is already listed at spec.exceptions[0]",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]\nexceptions: [{date: \"2026-02-30\", powerState: Stopped}]",
            "spec.exceptions[0].date: \"2026-02-30\" is not a date YYYY-MM-DD",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]\nexceptions: [{date: \"26-12-25\", powerState: Stopped}]",
            "spec.exceptions[0].date: \"26-12-25\" is not a date YYYY-MM-DD",
        ),
        (
            "timeZone: UTC\nrunning: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]\nexceptions: [{date: \"1999-12-31\", powerState: Stopped}]",
            "spec.exceptions[0].date: 1999-12-31 is outside the years 2000 to 2999",
        ),
    ];
    for (yaml, expected) in cases {
        let errors = errors(yaml);
        assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
        assert!(
            errors[0].starts_with(expected),
            "{yaml}:\n  {}\nwanted {expected}",
            errors[0]
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let errors = errors(
        r#"
timeZone: Nowhere/City
running:
  - days: []
    from: "08:00"
    to: "8pm"
exceptions:
  - date: "2026-13-01"
    powerState: Running
"#,
    );
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.timeZone",
            "spec.running[0].days",
            "spec.running[0].to",
            "spec.exceptions[0].date"
        ]
    );
}

// ---- preview ----

#[test]
fn the_preview_shows_local_and_utc_times_the_dst_change_and_the_shifted_boundary() {
    let s = schedule(
        r#"
timeZone: Europe/Berlin
running:
  - days: [Sat, Sun]
    from: "02:30"
    to: "06:00"
exceptions:
  - date: "2026-04-03"
    powerState: Running
  - date: "2026-04-01"
    powerState: Stopped
"#,
    );
    let text = preview::render(
        &s,
        "night-batch",
        at("2026-03-28T00:00:00Z"),
        at("2026-04-05T00:00:00Z"),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "EcsPowerSchedule night-batch (Europe/Berlin): Stopped now, at Sat 2026-03-28 01:00 CET (+01:00)"
    );
    let row = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("2026-03-28 01:30Z"),
        "Sat 2026-03-28 02:30 CET (+01:00) 2026-03-28 01:30Z Running running[0] opens"
    );
    assert_eq!(
        row("clocks go forward"),
        "Sun 2026-03-29 03:00 CEST (+02:00) 2026-03-29 01:00Z - DST: clocks go forward 1h (CET +01 to CEST +02)"
    );
    assert_eq!(
        row("skipped"),
        "Sun 2026-03-29 03:30 CEST (+02:00) 2026-03-29 01:30Z Running running[0] opens; 02:30 is skipped by the DST change: moved 1h later"
    );
    assert!(row("exception 2026-04-03").contains("Running exception 2026-04-03 (exceptions[0])"));
    assert_eq!(
        row("exception 2026-04-01"),
        "Wed 2026-04-01 00:00 CEST (+02:00) 2026-03-31 22:00Z - exception 2026-04-01 (exceptions[1]): Stopped all day, as it already was"
    );
}

// ---- properties ----

/// Schedules with overnight windows, DST in both directions, touching windows and exceptions.
const PROPERTY_SCHEDULES: &[&str] = &[
    r#"
timeZone: Europe/Berlin
running:
  - {days: [Sun], from: "02:30", to: "04:00"}
  - {days: [Sat], from: "22:00", to: "02:15"}
  - {days: [Mon, Wed], from: "08:00", to: "12:00"}
  - {days: [Mon], from: "12:00", to: "24:00"}
exceptions:
  - {date: "2026-03-29", powerState: Running}
  - {date: "2026-10-24", powerState: Stopped}
"#,
    r#"
timeZone: America/New_York
running:
  - {days: [Sat, Sun], from: "01:30", to: "01:00"}
  - {days: [Fri], from: "20:00", to: "02:30"}
exceptions:
  - {date: "2026-11-01", powerState: Stopped}
"#,
];

proptest::proptest! {
    /// `next_transition` is the first of `transitions`, the state really changes there, and
    /// it holds from `now` up to that instant.
    #[test]
    fn the_next_transition_is_where_the_state_first_changes(
        which in 0..PROPERTY_SCHEDULES.len(),
        // 2026-01-01 to 2027-01-01, in seconds.
        seconds in 1_767_225_600i64..1_798_761_600,
    ) {
        let s = schedule(PROPERTY_SCHEDULES[which]);
        let now = Timestamp::from_second(seconds).unwrap();
        let next = s.next_transition(now).expect("these schedules always change again");
        let listed = s.transitions(now, next.at).collect::<Vec<_>>();
        proptest::prop_assert_eq!(listed, vec![next.clone()]);
        proptest::prop_assert!(next.at > now);
        proptest::prop_assert_eq!(s.state_at(next.at), next.power_state);
        let before = next.at - SignedDuration::from_secs(1);
        proptest::prop_assert_eq!(s.state_at(before), s.state_at(now));
        proptest::prop_assert_ne!(next.power_state, s.state_at(now));
        let midway = now + SignedDuration::from_secs(next.at.duration_since(now).as_secs() / 2);
        proptest::prop_assert_eq!(s.state_at(midway), s.state_at(now));
    }
}
