//! Instances that follow a schedule, one reconcile at a time on the injected clock. The
//! schedule is office hours in Asia/Shanghai (UTC+8): Friday 2026-11-27 08:00 local is 00:00Z,
//! 20:00 local is 12:00Z; the next opening is Monday 2026-11-30 00:00Z.

use super::*;
use crate::api::{OverrideState, PAUSED_ANNOTATION, RetryStatus};
use crate::schedule::overrides::{OVERRIDE_POWER_STATE, OVERRIDE_UNTIL};
use crate::testing::{office_hours, scheduled};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A world at `time` whose instance (`status` at ECS) follows office-hours in `default`.
fn world_at(time: &str, status: InstanceStatus) -> World {
    let world = World::new(Some(instance(status)), accepted("req-s"));
    world
        .schedules
        .put("default", "office-hours", office_hours());
    world.clock.set(at(time));
    world
}

fn following() -> EcsInstance {
    let mut obj = object(PowerState::Running);
    obj.spec = scheduled(ID, "office-hours");
    obj
}

fn annotated(mut obj: EcsInstance, pairs: &[(&str, &str)]) -> EcsInstance {
    obj.metadata.annotations = Some(crate::testing::annotations(pairs));
    obj
}

#[tokio::test]
async fn at_the_evening_boundary_a_running_instance_is_stopped() {
    let world = world_at("2026-11-27T12:00:00Z", InstanceStatus::Running);

    let next = world.reconcile(&following()).await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            "write claim".into(),
            format!("StopInstance {ID}"),
            "write status".into()
        ]
    );
    assert_eq!(next, Config::default().timings.transition_poll);
    let status = world.status();
    assert_eq!(status.desired_power_state, Some(PowerState::Stopped));
    let t = status.next_transition.unwrap();
    assert_eq!(
        (t.power_state, t.time.0),
        (PowerState::Running, at("2026-11-30T00:00:00Z"))
    );
}

/// The next look is the boundary itself when it comes before the resync: no polling.
#[tokio::test]
async fn a_converged_instance_looks_again_exactly_at_the_boundary() {
    let world = world_at("2026-11-27T11:59:30Z", InstanceStatus::Running);

    let next = world.reconcile(&following()).await.unwrap();

    assert_eq!(next, seconds(30));
    let status = world.status();
    assert_eq!(status.desired_power_state, Some(PowerState::Running));
    assert_eq!(condition(&status, "Ready").status, "True");
    assert!(
        condition(&status, "Ready")
            .message
            .contains("schedule office-hours"),
        "{:?}",
        condition(&status, "Ready")
    );

    // Half a minute later (the requeue, on the copy the first write left): the boundary, and
    // the stop.
    world.clock.set(at("2026-11-27T12:00:00Z"));
    let mut seen = following();
    seen.status = Some(status);
    seen.metadata.resource_version = Some((OBJECT_VERSION + 1).to_string());
    world.reconcile(&seen).await.unwrap();
    assert!(world.log().contains(&format!("StopInstance {ID}")));
}

#[tokio::test]
async fn a_missing_schedule_stalls_without_any_ecs_call() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-s"));

    let next = world.reconcile(&following()).await.unwrap();

    assert_eq!(world.log(), ["write status"]);
    assert_eq!(next, Config::default().resync);
    let status = world.status();
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ScheduleNotFound")
    );
    assert!(stalled.message.contains("default/office-hours"));
    assert_eq!(status.desired_power_state, None);
}

/// The run ends (a lost lease, a shutdown) before the schedules were ever listed: the schedule
/// is not missing, only unknown, so nothing is judged (no `ScheduleNotFound`, no call).
#[tokio::test]
async fn a_run_ending_before_the_schedules_are_listed_judges_nothing() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-s"));
    world.schedules.never_listed();

    world.reconcile(&following()).await.unwrap();

    assert_eq!(world.log(), Vec::<String>::new(), "no ECS call, no write");
}

#[tokio::test]
async fn an_invalid_schedule_stalls_naming_the_field_without_any_ecs_call() {
    let world = world_at("2026-11-27T12:00:00Z", InstanceStatus::Running);
    let mut broken = office_hours();
    broken
        .exceptions
        .push(crate::api::power_schedule::ScheduleException {
            date: "2026-02-30".into(),
            power_state: PowerState::Stopped,
        });
    world.schedules.put("default", "office-hours", broken);

    world.reconcile(&following()).await.unwrap();

    assert_eq!(world.log(), ["write status"]);
    let stalled = condition(&world.status(), "Stalled").clone();
    assert_eq!(stalled.reason, "ScheduleInvalid");
    assert!(
        stalled.message.contains("spec.exceptions[0].date"),
        "{}",
        stalled.message
    );
}

#[tokio::test]
async fn an_override_holds_an_instance_up_past_the_boundary() {
    let world = world_at("2026-11-27T12:00:00Z", InstanceStatus::Running);
    let held = annotated(
        following(),
        &[
            (OVERRIDE_POWER_STATE, "Running"),
            (OVERRIDE_UNTIL, "2026-11-27T15:00:00Z"),
        ],
    );

    let next = world.reconcile(&held).await.unwrap();

    assert!(!world.log().iter().any(|l| l.starts_with("StopInstance")));
    let status = world.status();
    assert_eq!(status.desired_power_state, Some(PowerState::Running));
    assert_eq!(
        status.power_override.as_ref().unwrap().state,
        OverrideState::Active
    );
    assert_eq!(
        status.next_transition.unwrap().time.0,
        at("2026-11-27T15:00:00Z")
    );
    // Converged: the next look is the override's end (3 h), capped by the resync.
    assert_eq!(next, Config::default().resync);
    assert_eq!(world.event_reasons(), ["OverrideActive"]);
}

/// An expired override: ignored (the schedule stops the instance) and reported once.
#[tokio::test]
async fn an_expired_override_is_ignored_and_reported_once() {
    let world = world_at("2026-11-27T15:00:00Z", InstanceStatus::Running);
    let mut obj = annotated(
        following(),
        &[
            (OVERRIDE_POWER_STATE, "Running"),
            (OVERRIDE_UNTIL, "2026-11-27T15:00:00Z"),
        ],
    );

    world.reconcile(&obj).await.unwrap();
    assert!(world.log().contains(&format!("StopInstance {ID}")));
    assert_eq!(world.event_reasons(), ["OverrideExpired", "Stopping"]);

    // The next look, from the status just written: no second report.
    obj.status = Some(world.status());
    obj.metadata.resource_version = world.cluster.version.lock().unwrap().map(|v| v.to_string());
    world.reconcile(&obj).await.unwrap();
    let expired = world
        .event_reasons()
        .iter()
        .filter(|r| *r == "OverrideExpired")
        .count();
    assert_eq!(expired, 1, "{:?}", world.event_reasons());
}

#[tokio::test]
async fn an_invalid_override_is_reported_and_the_schedule_decides() {
    let world = world_at("2026-11-27T13:00:00Z", InstanceStatus::Running);
    let obj = annotated(following(), &[(OVERRIDE_POWER_STATE, "Up")]);

    world.reconcile(&obj).await.unwrap();

    assert!(world.log().contains(&format!("StopInstance {ID}")));
    assert_eq!(world.event_reasons(), ["OverrideInvalid", "Stopping"]);
    let notes = world.cluster.notes.lock().unwrap().clone();
    assert!(notes[0].contains(OVERRIDE_POWER_STATE), "{notes:?}");
}

/// A boundary changes the desired state like a spec edit: an open backoff window of the old
/// state's failures does not hold back the new state's call.
#[tokio::test]
async fn a_boundary_lifts_the_backoff_of_the_previous_state() {
    let world = world_at("2026-11-27T12:00:00Z", InstanceStatus::Running);
    let mut obj = following();
    obj.status = Some(EcsInstanceStatus {
        desired_power_state: Some(PowerState::Running),
        observed_generation: Some(1),
        retry: RetryStatus {
            count: 3,
            next_attempt_after: Some(Time(at("2026-11-27T12:20:00Z"))),
            last_error_code: Some("OperationConflict".into()),
            secret_version: None,
        },
        ..EcsInstanceStatus::default()
    });

    world.reconcile(&obj).await.unwrap();

    assert!(world.log().contains(&format!("StopInstance {ID}")));
}

#[tokio::test]
async fn a_schedule_respects_paused_and_dry_run() {
    let world = world_at("2026-11-27T12:00:00Z", InstanceStatus::Running);
    let paused = annotated(following(), &[(PAUSED_ANNOTATION, "true")]);
    world.reconcile(&paused).await.unwrap();
    assert!(!world.log().iter().any(|l| l.starts_with("StopInstance")));
    assert_eq!(condition(&world.status(), "Ready").reason, "Paused");

    let world = world_at("2026-11-27T12:00:00Z", InstanceStatus::Running);
    let mut dry = following();
    dry.spec.dry_run = true;
    world.reconcile(&dry).await.unwrap();
    assert!(
        world
            .log()
            .contains(&format!("StopInstance {ID} (dry run)"))
    );
}

/// In the morning a schedule starts the instance; it never reboots one that is running.
#[tokio::test]
async fn a_schedule_starts_and_stops_but_never_reboots() {
    let world = world_at("2026-11-30T00:00:00Z", InstanceStatus::Stopped);
    world.reconcile(&following()).await.unwrap();
    assert!(world.log().contains(&format!("StartInstance {ID}")));

    let world = world_at("2026-11-30T00:00:00Z", InstanceStatus::Running);
    world.reconcile(&following()).await.unwrap();
    assert!(
        !world
            .log()
            .iter()
            .any(|l| l.starts_with("RebootInstance") || l.starts_with("StartInstance")),
        "{:?}",
        world.log()
    );
}

/// A schedule whose holiday calendar does not exist stalls its followers (`ScheduleInvalid`,
/// the calendar named) with no ECS call; once the calendar exists, its day (today) stops the
/// instance.
#[tokio::test]
async fn a_missing_calendar_stalls_without_any_ecs_call_until_it_exists() {
    let world = world_at("2026-11-27T03:00:00Z", InstanceStatus::Running);
    let mut spec = office_hours();
    spec.calendars.push(crate::api::CalendarReference {
        name: "cn-holidays".into(),
        power_state: PowerState::Stopped,
    });
    world.schedules.put("default", "office-hours", spec);

    world.reconcile(&following()).await.unwrap();

    assert_eq!(world.log(), ["write status"]);
    let status = world.status();
    let stalled = condition(&status, "Stalled").clone();
    assert_eq!(stalled.reason, "ScheduleInvalid");
    assert!(
        stalled.message.contains(
            "EcsHolidayCalendar default/cn-holidays (its spec.calendars[0]), which does not exist"
        ),
        "{}",
        stalled.message
    );

    world.schedules.put_calendar(
        "default",
        "cn-holidays",
        crate::api::EcsHolidayCalendarSpec {
            days: vec![crate::api::CalendarDay {
                date: "2026-11-27".into(),
                name: Some("Company day".into()),
            }],
        },
    );
    let mut seen = following();
    seen.status = Some(status);
    seen.metadata.resource_version = Some((OBJECT_VERSION + 1).to_string());
    world.reconcile(&seen).await.unwrap();
    assert!(
        world.log().contains(&format!("StopInstance {ID}")),
        "{:?}",
        world.log()
    );
    let status = world.status();
    assert_eq!(status.desired_power_state, Some(PowerState::Stopped));
    assert_eq!(
        status.next_transition.unwrap().time.0,
        at("2026-11-30T00:00:00Z"),
        "Monday 08:00 local"
    );
}
