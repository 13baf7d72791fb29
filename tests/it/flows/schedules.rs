//! Power schedules end to end, on both backends (see `flows/mod.rs`): a schedule stops and starts a
//! fleet at its boundaries, an override holds an instance up, a deleted schedule stalls, and
//! the API refuses an EcsInstance with both or neither of powerState and scheduleRef.
//!
//! No flow waits for 08:00: the controller's schedule clock is shifted
//! (`Config::schedule_clock_offset`) to stand two seconds before a boundary, and the flow waits
//! for what the boundary must bring. Nothing asserts how long it took.

use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::power_schedule::{
    EcsPowerScheduleSpec, NextTransition, RunningWindow, Weekday,
};
use ecs_power_controller::api::{
    EcsInstance, EcsPowerSchedule, OverrideState, PowerState, ScheduleReference,
};
use ecs_power_controller::cli::{OverrideChange, request_override};
use ecs_sim::Action;
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use crate::support::scenario::*;

const OVERRIDE_POWER_STATE: &str = "ecs.powerctl.io/override-power-state";
const OVERRIDE_UNTIL: &str = "ecs.powerctl.io/override-until";

/// Every day 08:00 to 20:00 UTC.
pub fn daytime() -> EcsPowerSchedule {
    let days = Weekday::ALL.to_vec();
    EcsPowerSchedule::new(
        "daytime",
        EcsPowerScheduleSpec {
            time_zone: "UTC".into(),
            running: vec![RunningWindow {
                days,
                from: "08:00".into(),
                to: "20:00".into(),
            }],
            exceptions: Vec::new(),
            calendars: Vec::new(),
        },
    )
}

fn schedules(s: &Scenario) -> Api<EcsPowerSchedule> {
    Api::namespaced(s.client.clone(), &s.namespace)
}

pub async fn create_schedule(s: &Scenario, schedule: &EcsPowerSchedule) {
    schedules(s)
        .create(&PostParams::default(), schedule)
        .await
        .expect("create EcsPowerSchedule");
}

/// An EcsInstance that follows `schedule`.
pub fn following(name: &str, instance_id: &str, schedule: &str) -> EcsInstance {
    let mut obj = ecs_instance(name, instance_id, PowerState::Running);
    obj.spec.power_state = None;
    obj.spec.schedule_ref = Some(ScheduleReference {
        name: schedule.into(),
    });
    obj
}

pub fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A controller whose schedule clock reads `schedule_now` now.
fn controller_at(s: &Scenario, schedule_now: &str) -> Replica {
    controller_shifted(s, at(schedule_now).duration_since(Timestamp::now()))
}

/// A controller whose schedule clock is `offset` ahead of the system's.
pub fn controller_shifted(s: &Scenario, offset: SignedDuration) -> Replica {
    let mut options = s.fast_options();
    options.schedule_clock_offset = offset;
    s.controller_with(options)
}

fn desired(obj: &EcsInstance) -> Option<PowerState> {
    obj.status.as_ref()?.desired_power_state
}

pub fn settled_in(state: PowerState) -> impl Fn(&EcsInstance) -> bool {
    move |o| desired(o) == Some(state) && is_ready(o)
}

async fn wait_for_schedule(
    s: &Scenario,
    what: &str,
    check: impl Fn(&EcsPowerSchedule) -> bool,
) -> EcsPowerSchedule {
    s.wait_until(what, async || {
        schedules(s)
            .get("daytime")
            .await
            .is_ok_and(|obj| check(&obj))
    })
    .await;
    schedules(s).get("daytime").await.unwrap()
}

// Two seconds before 20:00 a fleet of three runs; the boundary stops each instance once. A
// controller whose clock stands two seconds before 08:00 starts each once again.
flow!(
    a_schedule_stops_a_fleet_at_its_evening_boundary_and_starts_it_in_the_morning,
    async |s| {
        let ids = ["i-sched1", "i-sched2", "i-sched3"];
        s.add(ids.map(|id| instance(id, InstanceStatus::Running)));
        create_schedule(s, &daytime()).await;
        let evening = controller_at(s, "2026-11-27T19:59:58Z");
        for (i, id) in ids.iter().enumerate() {
            s.create(&following(&format!("dev-{i}"), id, "daytime"))
                .await;
        }

        for i in 0..ids.len() {
            let obj = s
                .wait_for(&format!("dev-{i}"), settled_in(PowerState::Stopped))
                .await;
            let next = obj.status.unwrap().next_transition.unwrap();
            assert_eq!(
                next,
                NextTransition {
                    power_state: PowerState::Running,
                    time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
                        "2026-11-28T08:00:00Z"
                    )),
                }
            );
        }
        for id in ids {
            assert_eq!(s.sim.calls().count_all(Action::StopInstance, id), 1, "{id}");
        }
        let schedule = wait_for_schedule(s, "the schedule says Stopped, followed by 3", |o| {
            o.status.as_ref().is_some_and(|st| {
                st.power_state == Some(PowerState::Stopped) && st.instances == Some(3)
            })
        })
        .await;
        let status = schedule.status.unwrap();
        assert_eq!(
            status.next_transition.unwrap().time.0,
            at("2026-11-28T08:00:00Z")
        );

        // The morning, on a controller of its own.
        s.kill(evening).await;
        controller_at(s, "2026-11-28T07:59:58Z");
        for i in 0..ids.len() {
            s.wait_for(&format!("dev-{i}"), settled_in(PowerState::Running))
                .await;
        }
        for id in ids {
            assert_eq!(
                s.sim.calls().count_all(Action::StartInstance, id),
                1,
                "{id}"
            );
            assert_eq!(
                s.sim.calls().count_all(Action::RebootInstance, id),
                0,
                "{id}"
            );
        }
    }
);

// At night the schedule says Stopped, but an override holds the instance up; once the override
// ends, the schedule takes the instance back (stops it) and an event says the override expired.
flow!(
    an_override_holds_an_instance_up_then_the_schedule_takes_it_back,
    async |s| {
        s.add([instance("i-late1", InstanceStatus::Running)]);
        create_schedule(s, &daytime()).await;
        let night = "2026-11-27T21:00:00Z";
        controller_at(s, night);
        let mut obj = following("release", "i-late1", "daytime");
        obj.metadata.annotations = Some(
            [
                (OVERRIDE_POWER_STATE.to_string(), "Running".to_string()),
                (
                    OVERRIDE_UNTIL.to_string(),
                    "2026-11-27T23:00:00Z".to_string(),
                ),
            ]
            .into(),
        );
        s.create(&obj).await;

        let held = s.wait_for("release", settled_in(PowerState::Running)).await;
        let ov = held.status.unwrap().power_override.unwrap();
        assert_eq!(ov.state, OverrideState::Active);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(s.sim.calls().count_all(Action::StopInstance, "i-late1"), 0);

        // The release is done early: `override` now holds it two more seconds of the
        // schedule's clock.
        let offset = at(night).duration_since(Timestamp::now());
        let hold = OverrideChange::Hold {
            power_state: PowerState::Running,
            duration: SignedDuration::from_secs(2),
        };
        request_override(
            &s.client,
            &s.namespace,
            "release",
            hold,
            Timestamp::now() + offset,
        )
        .await
        .expect("override written");
        let taken_back = s.wait_for("release", settled_in(PowerState::Stopped)).await;
        assert_eq!(
            taken_back.status.unwrap().power_override.unwrap().state,
            OverrideState::Expired
        );
        assert_eq!(s.sim.calls().count_all(Action::StopInstance, "i-late1"), 1);
        s.wait_for_event("release", "OverrideExpired").await;

        // `override --clear` removes the annotations; the expired report goes with them.
        request_override(
            &s.client,
            &s.namespace,
            "release",
            OverrideChange::Clear,
            Timestamp::now(),
        )
        .await
        .expect("override cleared");
        let cleared = s
            .wait_for("release", |o| {
                o.status
                    .as_ref()
                    .is_some_and(|st| st.power_override.is_none())
            })
            .await;
        assert!(cleared.annotations().get(OVERRIDE_UNTIL).is_none());
        assert_eq!(s.sim.calls().count_all(Action::StopInstance, "i-late1"), 1);
    }
);

// Deleting the schedule stalls its instance (ScheduleNotFound) and nothing is called; creating
// it again lets the instance follow it again.
flow!(
    a_deleted_schedule_stalls_its_instances_without_any_ecs_call,
    async |s| {
        s.add([instance("i-orphan1", InstanceStatus::Running)]);
        create_schedule(s, &daytime()).await;
        controller_at(s, "2026-11-27T12:00:00Z");
        s.create(&following("web", "i-orphan1", "daytime")).await;
        s.wait_for("web", settled_in(PowerState::Running)).await;
        wait_for_schedule(s, "the schedule is Ready, followed by 1", |o| {
            o.status.as_ref().is_some_and(|st| {
                st.instances == Some(1)
                    && st
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .await;
        let calls = || s.sim.calls().log().len();
        let before = calls();

        schedules(s)
            .delete("daytime", &DeleteParams::default())
            .await
            .expect("delete EcsPowerSchedule");
        let stalled = s
            .wait_for_reason("web", "Stalled", "True", "ScheduleNotFound")
            .await;
        assert_eq!(desired(&stalled), None);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(calls(), before, "no ECS call for a stalled instance");

        create_schedule(s, &daytime()).await;
        s.wait_for("web", settled_in(PowerState::Running)).await;
    }
);

// The API refuses an EcsInstance with both powerState and scheduleRef, or neither, naming both.
flow!(
    an_instance_needs_exactly_one_of_power_state_and_schedule_ref,
    async |s| {
        let mut both = following("both", "i-both1", "daytime");
        both.spec.power_state = Some(PowerState::Running);
        let mut neither = following("neither", "i-neither1", "daytime");
        neither.spec.schedule_ref = None;
        for obj in [both, neither] {
            let err = s
                .api()
                .create(&PostParams::default(), &obj)
                .await
                .expect_err("refused");
            let text = err.to_string();
            assert!(
                text.contains("exactly one of spec.powerState")
                    && text.contains("spec.scheduleRef"),
                "{text}"
            );
        }
    }
);
