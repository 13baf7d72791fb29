use serde_json::json;

use super::*;
use crate::api::EcsPowerScheduleSpec;
use crate::schedule::overrides::OVERRIDE_POWER_STATE;
use crate::testing::office_hours;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// An EcsInstance in `shop` with `spec` (merged over a minimal one) and `extra` (merged over
/// the object: metadata, status).
fn instance(name: &str, spec: serde_json::Value, extra: serde_json::Value) -> EcsInstance {
    let mut v = json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1", "kind": "EcsInstance",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"instanceId": format!("i-{}", name.replace('-', "")), "regionId": "cn-hangzhou"},
    });
    json_patch::merge(&mut v["spec"], &spec);
    json_patch::merge(&mut v, &extra);
    serde_json::from_value(v).unwrap()
}

fn following(name: &str, schedule: &str) -> EcsInstance {
    instance(name, json!({"scheduleRef": {"name": schedule}}), json!({}))
}

fn schedule(name: &str, spec: EcsPowerScheduleSpec) -> EcsPowerSchedule {
    let mut s = EcsPowerSchedule::new(name, spec);
    s.metadata.namespace = Some("shop".into());
    s
}

/// Weekends 10:00 to 14:00 in Europe/Berlin.
fn weekend_berlin() -> EcsPowerScheduleSpec {
    serde_json::from_value(json!({
        "timeZone": "Europe/Berlin",
        "running": [{"days": ["Sat", "Sun"], "from": "10:00", "to": "14:00"}],
    }))
    .unwrap()
}

fn plan_of(instances: &[EcsInstance], from: &str, until: &str) -> PlanReport {
    let schedules = [
        schedule("office-hours", office_hours()),
        schedule("weekend", weekend_berlin()),
    ];
    plan(
        Fleet {
            instances,
            schedules: &schedules,
            calendars: &[],
        },
        at(from),
        at(until),
    )
}

/// (UTC, namespace/name, state, why) of each change.
fn lines(report: &PlanReport) -> Vec<(String, String, &'static str, String)> {
    report
        .changes
        .iter()
        .map(|c| {
            (
                c.time.to_string(),
                format!("{}/{}", c.namespace, c.name),
                c.power_state.as_str(),
                c.why.clone(),
            )
        })
        .collect()
}

/// Friday 2026-11-27 in Shanghai: office hours close at 20:00 (12:00Z) and open on Monday
/// 08:00 (Sunday 00:00Z); the Berlin weekend schedule opens and closes on Saturday and Sunday.
#[test]
fn the_changes_of_every_schedule_come_sorted_by_time_in_local_time_and_utc() {
    let fleet = [
        following("web-2", "weekend"),
        following("app-1", "office-hours"),
        following("app-0", "office-hours"),
    ];
    let report = plan_of(&fleet, "2026-11-27T10:00:00Z", "2026-11-30T10:00:00Z");
    assert_eq!(
        lines(&report),
        [
            (
                "2026-11-27T12:00:00Z",
                "shop/app-0",
                "Stopped",
                "schedule office-hours: running[0] closes"
            ),
            (
                "2026-11-27T12:00:00Z",
                "shop/app-1",
                "Stopped",
                "schedule office-hours: running[0] closes"
            ),
            (
                "2026-11-28T09:00:00Z",
                "shop/web-2",
                "Running",
                "schedule weekend: running[0] opens"
            ),
            (
                "2026-11-28T13:00:00Z",
                "shop/web-2",
                "Stopped",
                "schedule weekend: running[0] closes"
            ),
            (
                "2026-11-29T09:00:00Z",
                "shop/web-2",
                "Running",
                "schedule weekend: running[0] opens"
            ),
            (
                "2026-11-29T13:00:00Z",
                "shop/web-2",
                "Stopped",
                "schedule weekend: running[0] closes"
            ),
            (
                "2026-11-30T00:00:00Z",
                "shop/app-0",
                "Running",
                "schedule office-hours: running[0] opens"
            ),
            (
                "2026-11-30T00:00:00Z",
                "shop/app-1",
                "Running",
                "schedule office-hours: running[0] opens"
            ),
        ]
        .map(|(t, n, s, w)| (t.to_string(), n.to_string(), s, w.to_string()))
    );
    let first = &report.changes[0];
    assert_eq!(first.local_time, "2026-11-27T20:00:00+08:00");
    assert_eq!(first.time_zone, "Asia/Shanghai");
    assert_eq!(first.instance_id, "i-app0");
    assert_eq!(first.cause, CauseReport::WindowCloses { index: 0 });
    assert_eq!(report.changes[2].local_time, "2026-11-28T10:00:00+01:00");
    assert!(report.unchanged.is_empty(), "{:?}", report.unchanged);
    let text = render(&report, "namespace shop");
    assert!(
        text.starts_with(
            "Power changes of the EcsInstances in namespace shop, after 2026-11-27 10:00Z until 2026-11-30 10:00Z: 8\n\nLOCAL "
        ),
        "{text}"
    );
    assert!(
        text.contains("Fri 2026-11-27 20:00 CST (+08:00)  2026-11-27 12:00Z  shop/app-0   i-app0    Stopped  schedule office-hours: running[0] closes\n"),
        "{text}"
    );
}

/// An override holds its state until its end, whatever the schedule says before it; its end is
/// a change when the schedule says otherwise then, and the schedule's own changes follow.
#[test]
fn an_override_hides_the_schedule_until_it_ends_and_its_end_is_a_change() {
    let held = |name: &str, state: &str, until: &str| {
        instance(
            name,
            json!({"scheduleRef": {"name": "office-hours"}}),
            json!({"metadata": {"annotations": {OVERRIDE_POWER_STATE: state, OVERRIDE_UNTIL: until}}}),
        )
    };
    let fleet = [
        // Kept up tonight until 23:00 local (15:00Z): the 20:00 close does not happen.
        held("late", "Running", "2026-11-27T15:00:00Z"),
        // Held stopped during the day until 14:00 local, inside the window: it starts then.
        held("quiet", "Stopped", "2026-11-27T06:00:00Z"),
        // Held stopped until 21:00 local: the schedule says Stopped then too, no change at
        // the end, and the 20:00 close is hidden.
        held("agrees", "Stopped", "2026-11-27T13:00:00Z"),
        // Beyond the range: nothing changes in it.
        held("long", "Running", "2026-11-29T00:00:00Z"),
        // Expired: ignored, the schedule decides.
        held("expired", "Running", "2026-11-27T01:00:00Z"),
    ];
    let report = plan_of(&fleet, "2026-11-27T02:00:00Z", "2026-11-28T02:00:00Z");
    assert_eq!(
        lines(&report),
        [
            ("2026-11-27T06:00:00Z", "shop/quiet", "Running", "override ends (annotation ecs.powerctl.io/override-until): schedule office-hours says Running"),
            ("2026-11-27T12:00:00Z", "shop/expired", "Stopped", "schedule office-hours: running[0] closes"),
            ("2026-11-27T12:00:00Z", "shop/quiet", "Stopped", "schedule office-hours: running[0] closes"),
            ("2026-11-27T15:00:00Z", "shop/late", "Stopped", "override ends (annotation ecs.powerctl.io/override-until): schedule office-hours says Stopped"),
        ]
        .map(|(t, n, s, w)| (t.to_string(), n.to_string(), s, w.to_string()))
    );
    assert_eq!(report.changes[0].cause, CauseReport::OverrideEnds);
    let unchanged: Vec<(&str, UnchangedState, &str, Option<PowerState>)> = report
        .unchanged
        .iter()
        .map(|u| (u.name.as_str(), u.state, u.reason.as_str(), u.power_state))
        .collect();
    assert_eq!(
        unchanged,
        [
            (
                "agrees",
                UnchangedState::Steady,
                "NoBoundary",
                Some(PowerState::Stopped)
            ),
            (
                "long",
                UnchangedState::Steady,
                "OverrideHolds",
                Some(PowerState::Running)
            ),
        ]
    );
    // Held stopped until 21:00, stopped after: the next change is Monday's opening.
    assert_eq!(
        report.unchanged[0].next.as_ref().map(|n| n.time),
        Some(at("2026-11-30T00:00:00Z"))
    );
}

/// Paused, stalled (the schedule missing or invalid, both schedule kinds set, or the object's
/// own Stalled condition), fixed: no change, and each says why.
#[test]
fn instances_where_nothing_will_happen_say_why() {
    let fleet = [
        instance(
            "maint-1",
            json!({"scheduleRef": {"name": "office-hours"}}),
            json!({"metadata": {"annotations": {crate::api::PAUSED_ANNOTATION: "true"}}}),
        ),
        following("lost-1", "no-such-schedule"),
        following("broken-1", "broken"),
        instance(
            "both-1",
            json!({"scheduleRef": {"name": "office-hours"}, "powerState": "Running"}),
            json!({}),
        ),
        instance(
            "locked-1",
            json!({"scheduleRef": {"name": "office-hours"}}),
            json!({"status": {"conditions": [{"type": "Stalled", "status": "True",
                "reason": "InstanceLockedForSecurity", "message": "ECS locked the instance (security)",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        ),
        // A stale condition about a schedule that exists now: the plan decides, not the status.
        instance(
            "healed-1",
            json!({"scheduleRef": {"name": "office-hours"}}),
            json!({"status": {"conditions": [{"type": "Stalled", "status": "True",
                "reason": "ScheduleNotFound", "message": "gone",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        ),
        instance("web-1", json!({"powerState": "Running"}), json!({})),
        instance(
            "dry-1",
            json!({"scheduleRef": {"name": "office-hours"}, "dryRun": true}),
            json!({}),
        ),
    ];
    let mut broken = office_hours();
    broken.time_zone = "Europe/Berlln".into();
    let schedules = [
        schedule("office-hours", office_hours()),
        schedule("broken", broken),
    ];
    let report = plan(
        Fleet {
            instances: &fleet,
            schedules: &schedules,
            calendars: &[],
        },
        at("2026-11-27T10:00:00Z"),
        at("2026-11-27T13:00:00Z"),
    );
    let changed: Vec<&str> = report.changes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(changed, ["dry-1", "healed-1"]);
    assert!(report.changes[0].dry_run);
    assert!(
        report.changes[0]
            .why
            .ends_with("; dry run: ECS only checks the call, the VM stays as it is"),
        "{}",
        report.changes[0].why
    );
    let unchanged: Vec<(&str, UnchangedState, &str)> = report
        .unchanged
        .iter()
        .map(|u| (u.name.as_str(), u.state, u.reason.as_str()))
        .collect();
    assert_eq!(
        unchanged,
        [
            ("both-1", UnchangedState::Stalled, "InvalidSpec"),
            ("broken-1", UnchangedState::Stalled, "ScheduleInvalid"),
            (
                "locked-1",
                UnchangedState::Stalled,
                "InstanceLockedForSecurity"
            ),
            ("lost-1", UnchangedState::Stalled, "ScheduleNotFound"),
            ("maint-1", UnchangedState::Paused, "Paused"),
            ("web-1", UnchangedState::Fixed, "FixedPowerState"),
        ]
    );
    let message = |name: &str| {
        report
            .unchanged
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.message.clone())
            .unwrap()
    };
    assert!(
        message("lost-1").starts_with(
            "EcsPowerSchedule shop/no-such-schedule (spec.scheduleRef) does not exist"
        ),
        "{}",
        message("lost-1")
    );
    assert!(
        message("broken-1").contains("spec.timeZone"),
        "{}",
        message("broken-1")
    );

    let text = render(&report, "namespace shop");
    assert!(
        text.contains("\nNothing will happen until a person acts (5):\n  shop/both-1  i-both1  Stalled (InvalidSpec): "),
        "{text}"
    );
    assert!(
        text.contains(
            "  shop/maint-1  i-maint1  Paused: paused (annotation ecs.powerctl.io/paused=true)"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\nA fixed spec.powerState, no change (1): shop/web-1\n"),
        "{text}"
    );
}

/// The `-o json` document: every key, as docs/schedules.md documents it.
#[test]
fn the_json_document_has_the_documented_shape() {
    let fleet = [
        following("app-1", "office-hours"),
        instance("web-1", json!({"powerState": "Stopped"}), json!({})),
    ];
    let report = plan_of(&fleet, "2026-11-27T10:00:00Z", "2026-11-28T10:00:00Z");
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "apiVersion": "cli.ecs.powerctl.io/v1",
            "kind": "PowerPlan",
            "from": "2026-11-27T10:00:00Z",
            "until": "2026-11-28T10:00:00Z",
            "changes": [{
                "time": "2026-11-27T12:00:00Z",
                "localTime": "2026-11-27T20:00:00+08:00",
                "timeZone": "Asia/Shanghai",
                "namespace": "shop",
                "name": "app-1",
                "instanceId": "i-app1",
                "powerState": "Stopped",
                "schedule": "office-hours",
                "cause": {"type": "WindowCloses", "index": 0},
                "why": "schedule office-hours: running[0] closes",
                "dryRun": false,
                "after": [],
                "waitsFor": [],
            }],
            "unchanged": [{
                "namespace": "shop",
                "name": "web-1",
                "instanceId": "i-web1",
                "state": "Fixed",
                "reason": "FixedPowerState",
                "message": "spec.powerState Stopped: no schedule, nothing changes by itself",
                "powerState": "Stopped",
                "next": null,
            }],
        })
    );
}

/// A holiday calendar's day is a change named after the calendar and the day; a schedule whose
/// calendar is missing stalls its followers, as in the controller.
#[test]
fn a_calendar_day_is_a_change_named_after_it_and_a_missing_calendar_stalls() {
    use crate::api::EcsHolidayCalendar;
    let with_calendar = |calendar: &str| {
        let mut spec = office_hours();
        spec.calendars =
            serde_json::from_value(json!([{"name": calendar, "powerState": "Running"}])).unwrap();
        spec
    };
    let schedules = [
        schedule("with-holidays", with_calendar("cn-holidays")),
        schedule("with-missing", with_calendar("no-such-calendar")),
    ];
    let mut holidays: EcsHolidayCalendar = serde_json::from_value(json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1", "kind": "EcsHolidayCalendar",
        "metadata": {"name": "cn-holidays", "namespace": "shop"},
        // A release Saturday in Shanghai, a day off otherwise.
        "spec": {"days": [{"date": "2026-11-28", "name": "Release Day"}]},
    }))
    .unwrap();
    holidays.metadata.namespace = Some("shop".into());
    let fleet = [
        following("app-1", "with-holidays"),
        following("app-2", "with-missing"),
    ];
    let report = plan(
        Fleet {
            instances: &fleet,
            schedules: &schedules,
            calendars: &[holidays],
        },
        // Friday 2026-11-27 18:00 in Shanghai, for two days.
        at("2026-11-27T10:00:00Z"),
        at("2026-11-29T10:00:00Z"),
    );
    assert_eq!(
        lines(&report),
        [
            (
                "2026-11-27T12:00:00Z",
                "shop/app-1",
                "Stopped",
                "schedule with-holidays: running[0] closes"
            ),
            (
                "2026-11-27T16:00:00Z",
                "shop/app-1",
                "Running",
                "calendar cn-holidays: Release Day"
            ),
            (
                "2026-11-28T16:00:00Z",
                "shop/app-1",
                "Stopped",
                "calendar cn-holidays: Release Day over: the windows decide again"
            ),
        ]
        .map(|(t, n, s, w)| (t.to_string(), n.to_string(), s, w.to_string()))
    );
    assert_eq!(
        report.changes[1].cause,
        CauseReport::Calendar {
            calendar: "cn-holidays".into(),
            date: "2026-11-28".into(),
            day: Some("Release Day".into()),
        }
    );
    assert_eq!(
        serde_json::to_value(&report.changes[2].cause).unwrap(),
        json!({"type": "CalendarOver", "calendar": "cn-holidays", "date": "2026-11-28", "day": "Release Day"})
    );
    let stalled = &report.unchanged[0];
    assert_eq!(
        (
            stalled.name.as_str(),
            stalled.state,
            stalled.reason.as_str()
        ),
        ("app-2", UnchangedState::Stalled, "ScheduleInvalid")
    );
    assert!(
        stalled
            .message
            .contains("EcsHolidayCalendar shop/no-such-calendar"),
        "{}",
        stalled.message
    );
}

/// Three tiers on one schedule start db → app → web at the opening and stop in reverse at the
/// closing, each change after the one it waits for; a start that needs a stopped or missing
/// instance waits past its time; a cycle stalls its instances.
#[test]
fn the_start_order_orders_changes_at_one_instant_and_names_what_they_wait_for() {
    let after = |name: &str, deps: &[&str]| {
        instance(
            name,
            json!({"scheduleRef": {"name": "office-hours"}, "startAfter": deps}),
            json!({}),
        )
    };
    let fleet = [
        after("web-1", &["app-1"]),
        after("app-1", &["db-1"]),
        after("db-1", &[]),
        after("x-1", &["db-off", "ghost"]),
        instance("db-off", json!({"powerState": "Stopped"}), json!({})),
        after("c-1", &["c-2"]),
        after("c-2", &["c-1"]),
    ];
    let report = plan_of(&fleet, "2026-11-27T10:00:00Z", "2026-11-30T10:00:00Z");
    let closes = "schedule office-hours: running[0] closes";
    let opens = "schedule office-hours: running[0] opens";
    assert_eq!(
        lines(&report),
        [
            ("2026-11-27T12:00:00Z", "shop/web-1", "Stopped", closes.to_string()),
            ("2026-11-27T12:00:00Z", "shop/x-1", "Stopped", closes.to_string()),
            ("2026-11-27T12:00:00Z", "shop/app-1", "Stopped", format!("{closes}; after web-1")),
            ("2026-11-27T12:00:00Z", "shop/db-1", "Stopped", format!("{closes}; after app-1")),
            ("2026-11-30T00:00:00Z", "shop/db-1", "Running", opens.to_string()),
            (
                "2026-11-30T00:00:00Z",
                "shop/x-1",
                "Running",
                format!("{opens}; the start waits (spec.startAfter) for db-off (Stopped then), ghost (no such EcsInstance)"),
            ),
            ("2026-11-30T00:00:00Z", "shop/app-1", "Running", format!("{opens}; after db-1")),
            ("2026-11-30T00:00:00Z", "shop/web-1", "Running", format!("{opens}; after app-1")),
        ]
        .map(|(t, n, s, w)| (t.to_string(), n.to_string(), s, w))
    );
    let x_start = &report.changes[5];
    assert_eq!(x_start.waits_for, ["db-off", "ghost"]);
    assert!(x_start.after.is_empty());
    assert_eq!(report.changes[6].after, ["db-1"]);

    let cycles: Vec<(&str, &str, &str)> = report
        .unchanged
        .iter()
        .filter(|u| u.state == UnchangedState::Stalled)
        .map(|u| (u.name.as_str(), u.reason.as_str(), u.message.as_str()))
        .collect();
    assert_eq!(
        cycles,
        [
            (
                "c-1",
                "DependencyCycle",
                "spec.startAfter forms a cycle: c-1 → c-2 → c-1. Neither a start nor a stop is made while it stands: remove one of these names from spec.startAfter."
            ),
            (
                "c-2",
                "DependencyCycle",
                "spec.startAfter forms a cycle: c-2 → c-1 → c-2. Neither a start nor a stop is made while it stands: remove one of these names from spec.startAfter."
            ),
        ]
    );
}

/// `spec.startAfter` names instances of the same namespace: a namesake elsewhere neither orders
/// nor holds a change.
#[test]
fn the_start_order_stays_within_a_namespace() {
    let in_namespace = |namespace: &str, name: &str, spec: serde_json::Value| {
        instance(name, spec, json!({"metadata": {"namespace": namespace}}))
    };
    let follows = json!({"scheduleRef": {"name": "office-hours"}});
    let fleet = [
        in_namespace(
            "shop",
            "app-1",
            json!({"scheduleRef": {"name": "office-hours"}, "startAfter": ["db-1"]}),
        ),
        in_namespace("shop", "db-1", follows.clone()),
        // In another namespace, stopped all along: nothing to do with shop's app-1.
        in_namespace("lab", "db-1", json!({"powerState": "Stopped"})),
        in_namespace(
            "lab",
            "app-1",
            json!({"powerState": "Running", "startAfter": ["db-1"]}),
        ),
    ];
    let mut lab = schedule("office-hours", office_hours());
    lab.metadata.namespace = Some("lab".into());
    let schedules = [schedule("office-hours", office_hours()), lab];
    let report = plan(
        Fleet {
            instances: &fleet,
            schedules: &schedules,
            calendars: &[],
        },
        at("2026-11-29T23:00:00Z"),
        at("2026-11-30T01:00:00Z"),
    );
    let opens = "schedule office-hours: running[0] opens";
    assert_eq!(
        lines(&report),
        [
            (
                "2026-11-30T00:00:00Z",
                "shop/db-1",
                "Running",
                opens.to_string()
            ),
            (
                "2026-11-30T00:00:00Z",
                "shop/app-1",
                "Running",
                format!("{opens}; after db-1")
            ),
        ]
        .map(|(t, n, s, w)| (t.to_string(), n.to_string(), s, w))
    );
    assert!(report.changes[1].waits_for.is_empty());
}
