//! Holiday calendars end to end, on both backends (see `flows/mod.rs`): a day added to a
//! calendar in the evening stops the fleet the next day, and a deleted calendar stalls its
//! schedule and the schedule's instances, with no ECS call, until it is created again.
//!
//! As in `schedules.rs`, no flow waits for midnight: the controller's schedule clock is shifted
//! (`Config::schedule_clock_offset`). The calendar changes are seen through the watch: the
//! controller's resync is an hour, so nothing here is found by polling.

use ecs_client::InstanceStatus;
use ecs_power_controller::api::power_schedule::{
    CalendarReference, EcsPowerScheduleSpec, RunningWindow, Weekday,
};
use ecs_power_controller::api::{
    CalendarDay, EcsHolidayCalendar, EcsHolidayCalendarSpec, EcsPowerSchedule, PowerState,
};
use ecs_sim::Action;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::QUIET;
use super::schedules::{at, controller_shifted, create_schedule, following, settled_in};
use crate::support::scenario::*;

const CALENDAR: &str = "company-days";
const SCHEDULE: &str = "always-on";

/// Every day, all day (UTC), with the days of [`CALENDAR`] off.
fn always_on() -> EcsPowerSchedule {
    EcsPowerSchedule::new(
        SCHEDULE,
        EcsPowerScheduleSpec {
            time_zone: "UTC".into(),
            running: vec![RunningWindow {
                days: Weekday::ALL.to_vec(),
                from: "00:00".into(),
                to: "24:00".into(),
            }],
            exceptions: Vec::new(),
            calendars: vec![CalendarReference {
                name: CALENDAR.into(),
                power_state: PowerState::Stopped,
            }],
        },
    )
}

fn company_days(days: &[(&str, &str)]) -> EcsHolidayCalendar {
    EcsHolidayCalendar::new(
        CALENDAR,
        EcsHolidayCalendarSpec {
            days: days
                .iter()
                .map(|(date, name)| CalendarDay {
                    date: date.to_string(),
                    name: Some(name.to_string()),
                })
                .collect(),
        },
    )
}

fn calendars(s: &Scenario) -> Api<EcsHolidayCalendar> {
    Api::namespaced(s.client.clone(), &s.namespace)
}

async fn create_calendar(s: &Scenario, calendar: &EcsHolidayCalendar) {
    calendars(s)
        .create(&PostParams::default(), calendar)
        .await
        .expect("create EcsHolidayCalendar");
}

/// A controller whose schedule clock reads `schedule_now` now.
fn controller_at(s: &Scenario, schedule_now: &str) -> Replica {
    controller_shifted(s, at(schedule_now).duration_since(Timestamp::now()))
}

/// The next transition in the instance's status, as (state, time).
fn next_of(obj: &ecs_power_controller::api::EcsInstance) -> Option<(PowerState, Timestamp)> {
    let next = obj.status.as_ref()?.next_transition.as_ref()?;
    Some((next.power_state, next.time.0))
}

/// Waits until the schedule's `type_` condition has this status and reason.
async fn wait_for_schedule_condition(s: &Scenario, type_: &str, status: &str, reason: &str) {
    let schedules: Api<EcsPowerSchedule> = Api::namespaced(s.client.clone(), &s.namespace);
    s.wait_until(
        &format!("the schedule's {type_} is {status} ({reason})"),
        async || {
            schedules.get(SCHEDULE).await.is_ok_and(|o| {
                o.status.is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
                })
            })
        },
    )
    .await;
}

// The fleet runs around the clock. At 21:00 the platform team adds tomorrow to the company
// calendar: the instances learn at once that they stop at midnight (their next transition),
// nothing is called yet; a controller whose clock stands two seconds before midnight stops
// each once, until the day after.
flow!(
    a_day_added_to_a_calendar_in_the_evening_stops_the_fleet_the_next_day,
    async |s| {
        let ids = ["i-cal1", "i-cal2"];
        s.add(ids.map(|id| instance(id, InstanceStatus::Running)));
        create_calendar(s, &company_days(&[("2026-01-01", "New Year")])).await;
        create_schedule(s, &always_on()).await;
        let evening = controller_at(s, "2026-11-27T21:00:00Z");
        for (i, id) in ids.iter().enumerate() {
            s.create(&following(&format!("app-{i}"), id, SCHEDULE))
                .await;
        }
        for i in 0..ids.len() {
            let obj = s
                .wait_for(&format!("app-{i}"), settled_in(PowerState::Running))
                .await;
            assert_eq!(next_of(&obj), None, "all day, every day: never changes");
        }

        calendars(s)
            .patch(
                CALENDAR,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"days": [
                    {"date": "2026-01-01", "name": "New Year"},
                    {"date": "2026-11-28", "name": "Company offsite"},
                ]}})),
            )
            .await
            .expect("patch EcsHolidayCalendar");
        let midnight = at("2026-11-28T00:00:00Z");
        for i in 0..ids.len() {
            s.wait_for(&format!("app-{i}"), |o| {
                next_of(o) == Some((PowerState::Stopped, midnight))
            })
            .await;
        }
        s.wait_until("the calendar's next day is the offsite", async || {
            calendars(s).get(CALENDAR).await.is_ok_and(|c| {
                c.status.is_some_and(|st| {
                    st.days == Some(2)
                        && st.next.as_ref().map(|d| d.date.as_str()) == Some("2026-11-28")
                })
            })
        })
        .await;
        for id in ids {
            assert_eq!(s.sim.calls().count_all(Action::StopInstance, id), 0, "{id}");
        }

        // Two seconds before midnight, on a controller of its own.
        s.kill(evening).await;
        controller_at(s, "2026-11-27T23:59:58Z");
        for i in 0..ids.len() {
            let obj = s
                .wait_for(&format!("app-{i}"), settled_in(PowerState::Stopped))
                .await;
            assert_eq!(
                next_of(&obj),
                Some((PowerState::Running, at("2026-11-29T00:00:00Z")))
            );
        }
        for id in ids {
            assert_eq!(s.sim.calls().count_all(Action::StopInstance, id), 1, "{id}");
        }
    }
);

// Deleting the calendar a schedule uses stalls the schedule (CalendarNotFound) and its instance
// (ScheduleInvalid, naming the calendar), and nothing is called; creating it again lets the
// instance follow the schedule again, without a start or a stop (it was running all along).
flow!(
    a_deleted_calendar_stalls_the_schedule_and_its_instances_until_it_is_created_again,
    async |s| {
        s.add([instance("i-calgone1", InstanceStatus::Running)]);
        let calendar = company_days(&[("2026-12-24", "Christmas Eve")]);
        create_calendar(s, &calendar).await;
        create_schedule(s, &always_on()).await;
        controller_at(s, "2026-11-27T12:00:00Z");
        s.create(&following("web", "i-calgone1", SCHEDULE)).await;
        s.wait_for("web", settled_in(PowerState::Running)).await;
        wait_for_schedule_condition(s, "Ready", "True", "ScheduleValid").await;
        let calls = || s.sim.calls().log().len();
        let before = calls();

        calendars(s)
            .delete(CALENDAR, &DeleteParams::default())
            .await
            .expect("delete EcsHolidayCalendar");
        let stalled = s
            .wait_for_reason("web", "Stalled", "True", "ScheduleInvalid")
            .await;
        let message = condition(&stalled, "Stalled").unwrap().message;
        assert!(
            message.contains(&format!("EcsHolidayCalendar {}/{CALENDAR}", s.namespace)),
            "{message}"
        );
        wait_for_schedule_condition(s, "Stalled", "True", "CalendarNotFound").await;
        tokio::time::sleep(QUIET).await;
        assert_eq!(calls(), before, "no ECS call for a stalled instance");

        create_calendar(s, &calendar).await;
        s.wait_for("web", settled_in(PowerState::Running)).await;
        wait_for_schedule_condition(s, "Ready", "True", "ScheduleValid").await;
        assert_eq!(
            s.sim.calls().count_all(Action::StopInstance, "i-calgone1"),
            0
        );
        assert_eq!(
            s.sim.calls().count_all(Action::StartInstance, "i-calgone1"),
            0
        );
        // The calendar's own status, from its controller.
        s.wait_until("the calendar is Ready", async || {
            calendars(s).get(CALENDAR).await.is_ok_and(|c| {
                c.status.is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
        })
        .await;
    }
);
