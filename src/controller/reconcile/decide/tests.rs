use super::*;
use crate::api::{
    DriftPolicy, RebootInFlight, RebootOutcome, RebootRequest, RetryStatus, StopSpec,
};
use ecs_client::{OperationLock, StoppedMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

const NOW: &str = "2026-11-22T10:30:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn at(offset_secs: i64) -> Timestamp {
    now()
        .checked_add(jiff::SignedDuration::from_secs(offset_secs))
        .unwrap()
}

fn spec(power: PowerState, token: Option<&str>) -> EcsInstanceSpec {
    EcsInstanceSpec {
        reboot: token.map(|t| RebootRequest {
            token: t.into(),
            mode: RebootMode::Soft,
        }),
        ..EcsInstanceSpec::minimal("i-a", power)
    }
}

fn instance(status: InstanceStatus, start_time: &str, locks: &[&str]) -> Instance {
    Instance {
        start_time: Some(start_time.into()),
        locks: locks
            .iter()
            .map(|r| OperationLock {
                reason: r.to_string(),
                message: None,
            })
            .collect(),
        ..crate::testing::instance("i-a", status)
    }
}

/// Started an hour ago: old enough that a reboot is provable.
const EARLY: &str = "2026-11-22T09:30Z";

fn run(
    spec: &EcsInstanceSpec,
    status: &EcsInstanceStatus,
    instance: Option<&Instance>,
) -> Decision {
    run_with(spec, status, instance, false, false)
}

fn run_with(
    spec: &EcsInstanceSpec,
    status: &EcsInstanceStatus,
    instance: Option<&Instance>,
    paused: bool,
    backoff_reset: bool,
) -> Decision {
    let timings = Timings::default();
    decide(&Facts {
        spec,
        desired: spec.power_state.expect("a fixed power state"),
        paused,
        generation: Some(1),
        created: None,
        status,
        instance,
        now: now(),
        backoff_reset,
        timings: &timings,
    })
}

/// A status the controller has written before: it saw the instance (so a token is not adopted
/// as one present at first sight).
fn seen() -> EcsInstanceStatus {
    EcsInstanceStatus {
        instance_status: Some(InstanceStatus::Running),
        ..Default::default()
    }
}

fn done(token: &str) -> EcsInstanceStatus {
    EcsInstanceStatus {
        last_reboot_token: Some(token.into()),
        ..seen()
    }
}

fn in_flight(token: &str, start_before: &str, requested_offset: i64) -> EcsInstanceStatus {
    EcsInstanceStatus {
        reboot_in_flight: Some(RebootInFlight {
            token: token.into(),
            start_time_before: Some(start_before.into()),
            requested_at: Time(at(requested_offset)),
        }),
        ..seen()
    }
}

fn is_reboot(step: &Step) -> bool {
    matches!(step, Step::Call(Mutation::Reboot { .. }))
}

/// The decision table: desired state × observed status, no token, no locks.
#[test]
fn power_state_table() {
    use InstanceStatus::*;
    let cases = [
        (PowerState::Running, Running, "converged"),
        (PowerState::Running, Stopped, "start"),
        (PowerState::Running, Starting, "wait"),
        (PowerState::Running, Stopping, "wait"),
        (PowerState::Running, Pending, "wait"),
        (PowerState::Running, Unknown, "wait"),
        (PowerState::Stopped, Stopped, "converged"),
        (PowerState::Stopped, Running, "stop"),
        (PowerState::Stopped, Starting, "wait"),
        (PowerState::Stopped, Stopping, "wait"),
        (PowerState::Stopped, Pending, "wait"),
        (PowerState::Stopped, Unknown, "wait"),
    ];
    for (desired, observed, expected) in cases {
        let decision = run(
            &spec(desired, None),
            &EcsInstanceStatus::default(),
            Some(&instance(observed, EARLY, &[])),
        );
        let got = match decision.step {
            Step::Converged => "converged",
            Step::Call(Mutation::Start { .. }) => "start",
            Step::Call(Mutation::Stop { .. }) => "stop",
            Step::Wait { .. } => "wait",
            ref other => panic!("{desired:?}/{observed:?}: unexpected {other:?}"),
        };
        assert_eq!(got, expected, "desired {desired:?}, observed {observed:?}");
    }
}

#[test]
fn a_missing_instance_is_blocked() {
    let d = run(&spec(PowerState::Running, None), &seen(), None);
    assert_eq!(d.step, Step::Blocked(Blocker::InstanceNotFound));
}

#[test]
fn a_new_token_on_a_running_instance_reboots_once() {
    let s = spec(PowerState::Running, Some("t1"));
    let i = instance(InstanceStatus::Running, EARLY, &[]);
    let d = run(&s, &seen(), Some(&i));
    assert_eq!(
        d.step,
        Step::Call(Mutation::Reboot {
            options: RebootOptions::default(),
            token: "t1".into(),
            start_time_before: Some(EARLY.into()),
        })
    );
    // Once recorded, the same token is never carried out again.
    assert_eq!(run(&s, &done("t1"), Some(&i)).step, Step::Converged);
}

#[test]
fn hard_reboot_forces_the_stop() {
    let mut s = spec(PowerState::Running, Some("t1"));
    s.reboot.as_mut().unwrap().mode = RebootMode::Hard;
    let d = run(
        &s,
        &seen(),
        Some(&instance(InstanceStatus::Running, EARLY, &[])),
    );
    let Step::Call(Mutation::Reboot { options, .. }) = d.step else {
        panic!("{d:?}")
    };
    assert!(options.force);
}

#[test]
fn a_reboot_waits_until_the_start_minute_is_over() {
    // Started in the current minute: StartTime could not prove a reboot now.
    let i = instance(InstanceStatus::Running, "2026-11-22T10:30Z", &[]);
    let d = run(&spec(PowerState::Running, Some("t1")), &seen(), Some(&i));
    assert!(
        matches!(d.step, Step::Wait { reason: WaitReason::RecentStart, after } if after == Duration::from_secs(90)),
        "{d:?}"
    );
}

#[test]
fn a_token_while_stopped_is_skipped_and_never_reboots() {
    let s = spec(PowerState::Stopped, Some("t1"));
    let d = run(
        &s,
        &seen(),
        Some(&instance(InstanceStatus::Stopped, EARLY, &[])),
    );
    assert_eq!(d.step, Step::Converged);
    assert_eq!(d.settled, [("t1".into(), Settled::SkippedWhileStopped)]);
    // Even while the instance is still running towards Stopped.
    let d = run(
        &s,
        &seen(),
        Some(&instance(InstanceStatus::Running, EARLY, &[])),
    );
    assert!(matches!(d.step, Step::Call(Mutation::Stop { .. })));
    assert_eq!(d.settled, [("t1".into(), Settled::SkippedWhileStopped)]);
}

#[test]
fn a_start_that_boots_the_instance_satisfies_a_pending_token() {
    let d = run(
        &spec(PowerState::Running, Some("t1")),
        &seen(),
        Some(&instance(InstanceStatus::Stopped, EARLY, &[])),
    );
    assert_eq!(
        d.step,
        Step::Call(Mutation::Start {
            options: StartOptions::default(),
            satisfies_token: Some("t1".into()),
        })
    );
}

/// The instance was started and stopped within the current minute. A start that carries a token
/// now would give it the same StartTime: if its answer were lost, the next look could not tell
/// that it booted and would reboot it for the same token. Like a reboot, it waits for the
/// minute to pass (a start without a token does not).
#[test]
fn a_start_that_carries_a_token_waits_until_the_start_minute_is_over() {
    let stopped_this_minute = instance(InstanceStatus::Stopped, "2026-11-22T10:30Z", &[]);
    let d = run(
        &spec(PowerState::Running, Some("t1")),
        &seen(),
        Some(&stopped_this_minute),
    );
    assert!(
        matches!(d.step, Step::Wait { reason: WaitReason::RecentStart, after } if after == Duration::from_secs(90)),
        "{d:?}"
    );
    let d = run(
        &spec(PowerState::Running, None),
        &seen(),
        Some(&stopped_this_minute),
    );
    assert!(
        matches!(d.step, Step::Call(Mutation::Start { .. })),
        "{d:?}"
    );
}

#[test]
fn stop_and_start_options_come_from_the_spec() {
    let mut s = spec(PowerState::Stopped, None);
    s.stop = Some(StopSpec {
        force: true,
        stopped_mode: StoppedMode::StopCharging,
    });
    s.dry_run = true;
    let d = run(
        &s,
        &seen(),
        Some(&instance(InstanceStatus::Running, EARLY, &[])),
    );
    assert_eq!(
        d.step,
        Step::Call(Mutation::Stop {
            options: StopOptions {
                force: true,
                stopped_mode: Some(StoppedMode::StopCharging),
                dry_run: true,
            }
        })
    );
}

#[test]
fn a_security_lock_blocks_start_and_reboot_but_not_stop() {
    let locked_stopped = instance(InstanceStatus::Stopped, EARLY, &["Security"]);
    let locked_running = instance(InstanceStatus::Running, EARLY, &["security"]);
    let d = run(
        &spec(PowerState::Running, None),
        &seen(),
        Some(&locked_stopped),
    );
    assert_eq!(d.step, Step::Blocked(Blocker::SecurityLock));
    let d = run(
        &spec(PowerState::Running, Some("t")),
        &seen(),
        Some(&locked_running),
    );
    assert_eq!(d.step, Step::Blocked(Blocker::SecurityLock));
    let d = run(
        &spec(PowerState::Running, None),
        &seen(),
        Some(&locked_running),
    );
    assert_eq!(d.step, Step::Blocked(Blocker::SecurityLock));
    let d = run(
        &spec(PowerState::Stopped, None),
        &seen(),
        Some(&locked_running),
    );
    assert!(matches!(d.step, Step::Call(Mutation::Stop { .. })));
}

#[test]
fn any_other_lock_keeps_a_running_instance_from_ready() {
    let i = instance(InstanceStatus::Running, EARLY, &["financial"]);
    let d = run(&spec(PowerState::Running, None), &seen(), Some(&i));
    assert_eq!(
        d.step,
        Step::Blocked(Blocker::Locked(vec!["financial".into()]))
    );
}

#[test]
fn paused_reports_what_is_due_and_never_calls() {
    let d = run_with(
        &spec(PowerState::Running, None),
        &seen(),
        Some(&instance(InstanceStatus::Stopped, EARLY, &[])),
        true,
        false,
    );
    assert!(
        matches!(
            d.step,
            Step::Paused {
                due: Some(Mutation::Start { .. })
            }
        ),
        "{d:?}"
    );
}

#[test]
fn an_open_backoff_window_holds_the_call_until_the_spec_changes() {
    let status = EcsInstanceStatus {
        retry: RetryStatus {
            count: 2,
            next_attempt_after: Some(Time(at(60))),
            last_error_code: Some("InstanceNotReady".into()),
            secret_version: None,
        },
        ..seen()
    };
    let s = spec(PowerState::Running, None);
    let i = instance(InstanceStatus::Stopped, EARLY, &[]);
    let d = run(&s, &status, Some(&i));
    assert!(
        matches!(d.step, Step::Backoff { until, .. } if until == at(60)),
        "{d:?}"
    );
    let d = run_with(&s, &status, Some(&i), false, true);
    assert!(matches!(d.step, Step::Call(Mutation::Start { .. })));
}

#[test]
fn an_expired_backoff_window_allows_the_call() {
    let status = EcsInstanceStatus {
        retry: RetryStatus {
            count: 2,
            next_attempt_after: Some(Time(at(-1))),
            ..Default::default()
        },
        ..seen()
    };
    let d = run(
        &spec(PowerState::Running, None),
        &status,
        Some(&instance(InstanceStatus::Stopped, EARLY, &[])),
    );
    assert!(matches!(d.step, Step::Call(Mutation::Start { .. })));
}

#[test]
fn an_in_flight_reboot_is_settled_by_a_later_start_time() {
    let status = in_flight("t1", EARLY, -120);
    let i = instance(InstanceStatus::Running, "2026-11-22T10:29Z", &[]);
    let d = run(&spec(PowerState::Running, Some("t1")), &status, Some(&i));
    assert_eq!(d.settled, [("t1".into(), Settled::Rebooted)]);
    assert_eq!(d.step, Step::Converged);
}

#[test]
fn an_in_flight_reboot_is_settled_by_a_transition() {
    for observed in [InstanceStatus::Stopping, InstanceStatus::Starting] {
        let d = run(
            &spec(PowerState::Running, Some("t1")),
            &in_flight("t1", EARLY, -5),
            Some(&instance(observed, EARLY, &[])),
        );
        assert_eq!(d.settled, [("t1".into(), Settled::Rebooted)]);
        assert!(matches!(d.step, Step::Wait { .. }));
    }
}

#[test]
fn an_unconfirmed_reboot_waits_out_the_grace_then_is_sent_again() {
    let s = spec(PowerState::Running, Some("t1"));
    let i = instance(InstanceStatus::Running, EARLY, &[]);
    // Within the grace: no second call, whatever happened.
    let d = run(&s, &in_flight("t1", EARLY, -10), Some(&i));
    assert!(matches!(
        d.step,
        Step::Wait {
            reason: WaitReason::RebootUnconfirmed,
            ..
        }
    ));
    assert!(!d.clear_in_flight);
    // Past the grace with no evidence: the call never went out.
    let d = run(&s, &in_flight("t1", EARLY, -600), Some(&i));
    assert!(d.clear_in_flight);
    assert!(is_reboot(&d.step));
}

/// The boundaries the scenarios can only see from below: a retry is due the moment its backoff
/// window ends, and a reboot is sent again the moment the confirmation grace is over.
#[test]
fn a_retry_is_due_exactly_when_its_window_ends_and_a_resend_when_the_grace_ends() {
    let window_until = |until: Timestamp| EcsInstanceStatus {
        retry: RetryStatus {
            count: 1,
            next_attempt_after: Some(Time(until)),
            last_error_code: Some("InstanceNotReady".into()),
            secret_version: None,
        },
        ..seen()
    };
    let s = spec(PowerState::Running, None);
    let i = instance(InstanceStatus::Stopped, EARLY, &[]);
    let just_open = now()
        .checked_add(jiff::SignedDuration::from_millis(1))
        .unwrap();
    let d = run(&s, &window_until(just_open), Some(&i));
    assert!(matches!(d.step, Step::Backoff { .. }), "{d:?}");
    let d = run(&s, &window_until(now()), Some(&i));
    assert!(
        matches!(d.step, Step::Call(Mutation::Start { .. })),
        "{d:?}"
    );

    let grace = Timings::default().reboot_confirmation_grace.as_secs() as i64;
    let s = spec(PowerState::Running, Some("t1"));
    let i = instance(InstanceStatus::Running, EARLY, &[]);
    let d = run(&s, &in_flight("t1", EARLY, 1 - grace), Some(&i));
    assert!(
        matches!(
            d.step,
            Step::Wait {
                reason: WaitReason::RebootUnconfirmed,
                ..
            }
        ),
        "{d:?}"
    );
    let d = run(&s, &in_flight("t1", EARLY, -grace), Some(&i));
    assert!(d.clear_in_flight && is_reboot(&d.step), "{d:?}");
}

/// The case proptest found: the in-flight reboot is proven by a later StartTime, so a newer
/// token is carried out at once, without waiting out the grace of the settled one.
#[test]
fn a_newer_token_reboots_once_the_in_flight_one_is_proven() {
    let d = run(
        &spec(PowerState::Running, Some("t2")),
        &in_flight("t1", "2026-11-22T09:40Z", -2),
        Some(&instance(InstanceStatus::Running, "2026-11-22T10:28Z", &[])),
    );
    assert_eq!(d.settled, [("t1".into(), Settled::Rebooted)]);
    assert!(
        matches!(d.step, Step::Call(Mutation::Reboot { ref token, .. }) if token == "t2"),
        "{d:?}"
    );
}

#[test]
fn a_token_changed_during_a_reboot_is_carried_out_after_it() {
    let d = run(
        &spec(PowerState::Running, Some("t2")),
        &in_flight("t1", EARLY, -5),
        Some(&instance(InstanceStatus::Starting, EARLY, &[])),
    );
    assert_eq!(d.settled, [("t1".into(), Settled::Rebooted)]);
    assert!(matches!(d.step, Step::Wait { .. }));
}

/// A token the history remembers (a GitOps revert) is settled without a call: the instance is
/// where the spec wants it, so the step is the one without a token.
#[test]
fn a_remembered_token_is_settled_without_a_reboot() {
    let mut status = seen();
    for t in ["t1", "t2"] {
        tokens::remember(&mut status, t, RebootOutcome::Rebooted, Time(at(-3600)));
    }
    let d = run(
        &spec(PowerState::Running, Some("t1")),
        &status,
        Some(&instance(InstanceStatus::Running, EARLY, &[])),
    );
    assert_eq!(d.step, Step::Converged);
    assert_eq!(d.settled, [("t1".into(), Settled::AlreadyDone)]);
    // A new token still reboots.
    let d = run(
        &spec(PowerState::Running, Some("t3")),
        &status,
        Some(&instance(InstanceStatus::Running, EARLY, &[])),
    );
    assert!(is_reboot(&d.step), "{d:?}");
    assert!(d.settled.is_empty());
}

/// First sight: a plain token is adopted (a stopped instance is still started, without the
/// token); a time token after the last boot is carried out; one before it was satisfied by it.
#[test]
fn a_token_at_first_sight_is_adopted_unless_it_is_a_later_time() {
    let fresh = EcsInstanceStatus::default();
    let stopped = instance(InstanceStatus::Stopped, EARLY, &[]);
    let d = run(
        &spec(PowerState::Running, Some("t1")),
        &fresh,
        Some(&stopped),
    );
    assert_eq!(d.settled, [("t1".into(), Settled::Adopted)]);
    assert_eq!(
        d.step,
        Step::Call(Mutation::Start {
            options: StartOptions::default(),
            satisfies_token: None,
        })
    );
    // ECS does not know the instance: adopted all the same.
    let d = run(&spec(PowerState::Running, Some("t1")), &fresh, None);
    assert_eq!(d.settled, [("t1".into(), Settled::Adopted)]);

    let running = instance(InstanceStatus::Running, EARLY, &[]);
    let later = "2026-11-22T10:00:00.5Z";
    let d = run(
        &spec(PowerState::Running, Some(later)),
        &fresh,
        Some(&running),
    );
    assert!(
        matches!(d.step, Step::Call(Mutation::Reboot { ref token, .. }) if token == later),
        "{d:?}"
    );
    let earlier = "2026-11-22T09:29:59Z";
    // Fresh: the boot that carried it out adopts it. Seen before (booted at 09:00 then): the
    // 09:30 boot is new, after the token.
    let looked = EcsInstanceStatus {
        start_time: Some("2026-11-22T09:00Z".into()),
        ..seen()
    };
    for (status, how) in [(&fresh, Settled::Adopted), (&looked, Settled::BootedAfter)] {
        let d = run(
            &spec(PowerState::Running, Some(earlier)),
            status,
            Some(&running),
        );
        assert_eq!(d.step, Step::Converged);
        assert_eq!(d.settled, [(earlier.into(), how)]);
        // Satisfied, not skipped, also when the desired state is Stopped.
        let d = run(
            &spec(PowerState::Stopped, Some(earlier)),
            status,
            Some(&running),
        );
        assert_eq!(d.settled, [(earlier.into(), how)]);
    }
}

// ---- properties ----

fn any_status() -> impl Strategy<Value = InstanceStatus> {
    prop_oneof![
        Just(InstanceStatus::Pending),
        Just(InstanceStatus::Starting),
        Just(InstanceStatus::Running),
        Just(InstanceStatus::Stopping),
        Just(InstanceStatus::Stopped),
        Just(InstanceStatus::Unknown),
    ]
}

/// Half the time within the last few minutes, where the StartTime guard decides.
fn any_start_time() -> impl Strategy<Value = String> {
    prop_oneof![0i64..3, 0i64..120]
        .prop_map(|m| at(-m * 60).strftime("%Y-%m-%dT%H:%MZ").to_string())
}

prop_compose! {
    fn any_facts()(
        desired in prop_oneof![Just(PowerState::Running), Just(PowerState::Stopped)],
        token in proptest::option::of(prop_oneof![Just("t1"), Just("t2"), Just("t3"), Just("2026-11-22T10:00:00Z")]),
        last in proptest::option::of(prop_oneof![Just("t1"), Just("t2")]),
        history in proptest::collection::vec(prop_oneof![Just("t1"), Just("t2"), Just("t3")], 0..3),
        fresh in any::<bool>(),
        flight in proptest::option::of((prop_oneof![Just("t1"), Just("t2")], any_start_time(), -900i64..0)),
        status in any_status(),
        start in any_start_time(),
        locks in proptest::collection::vec(prop_oneof![Just("security"), Just("financial"), Just("Recycling")], 0..2),
        backoff in proptest::option::of(-600i64..600),
        paused in any::<bool>(),
        reset in any::<bool>(),
        dry_run in any::<bool>(),
    ) -> (EcsInstanceSpec, EcsInstanceStatus, Instance, bool, bool) {
        let mut s = spec(desired, token);
        s.dry_run = dry_run;
        let mut st = EcsInstanceStatus {
            last_reboot_token: last.map(str::to_string),
            instance_status: (!fresh).then_some(InstanceStatus::Running),
            ..Default::default()
        };
        for t in history {
            tokens::remember(&mut st, t, RebootOutcome::Rebooted, Time(at(-3600)));
        }
        st.last_reboot_token = last.map(str::to_string);
        if let Some((t, before, offset)) = flight {
            st.reboot_in_flight = Some(RebootInFlight {
                token: t.into(),
                start_time_before: Some(before),
                requested_at: Time(at(offset)),
            });
        }
        st.retry.next_attempt_after = backoff.map(|o| Time(at(o)));
        let i = instance(status, &start, &locks);
        (s, st, i, paused, reset)
    }
}

proptest! {
    #[test]
    fn never_mutates_while_paused_transitional_or_security_locked(
        (s, st, i, paused, reset) in any_facts()
    ) {
        let d = run_with(&s, &st, Some(&i), paused, reset);
        if let Step::Call(m) = &d.step {
            prop_assert!(!paused);
            prop_assert!(!i.status.is_transitional());
            prop_assert!(i.status != InstanceStatus::Unknown);
            if i.is_security_locked() {
                prop_assert!(matches!(m, Mutation::Stop { .. }), "{m:?} while security-locked");
            }
        }
    }

    #[test]
    fn only_reboots_a_running_instance_with_a_new_token(
        (s, st, i, paused, reset) in any_facts()
    ) {
        let d = run_with(&s, &st, Some(&i), paused, reset);
        if let Step::Call(Mutation::Reboot { token, .. }) = &d.step {
            prop_assert_eq!(i.status, InstanceStatus::Running);
            prop_assert_eq!(s.power_state, Some(PowerState::Running));
            prop_assert!(st.last_reboot_token.as_deref() != Some(token.as_str()));
            // Never a second call for a token whose reboot is provably under way or done.
            for (settled, _) in &d.settled {
                prop_assert_ne!(settled, token);
            }
            // Never a token the history remembers, never one adopted at first sight.
            prop_assert!(tokens::recorded(&st, token).is_none());
            let sight = tokens::Seen { instance: Some(&i), generation: Some(1), created: None, now: now() };
            prop_assert!(!matches!(tokens::judge(Some(token), &st, sight), Judged::Adopted(_)));
            // Never inside the grace of an unconfirmed reboot (one this decision did not settle
            // from the instance's evidence).
            if let Some(f) = &st.reboot_in_flight
                && !d.settled.iter().any(|(t, _)| *t == f.token)
            {
                prop_assert!(elapsed(now(), f.requested_at.0) >= Timings::default().reboot_confirmation_grace);
            }
        }
    }

    #[test]
    fn never_calls_inside_an_open_backoff_window(
        (s, st, i, paused, reset) in any_facts()
    ) {
        let d = run_with(&s, &st, Some(&i), paused, reset);
        if let (Step::Call(_), Some(until)) = (&d.step, &st.retry.next_attempt_after) {
            prop_assert!(reset || until.0 <= now());
        }
    }

    /// Liveness: a stable, unlocked, unpaused instance not in the desired state is acted on.
    #[test]
    fn the_desired_state_is_acted_on_when_the_cloud_allows(
        (s, mut st, i, _paused, _reset) in any_facts()
    ) {
        st.retry = RetryStatus::default();
        st.reboot_in_flight = None;
        let stable = matches!(i.status, InstanceStatus::Running | InstanceStatus::Stopped);
        let wrong = (s.power_state == Some(PowerState::Running)) != (i.status == InstanceStatus::Running);
        if stable && wrong && i.locks.is_empty() {
            let d = run_with(&s, &st, Some(&i), false, false);
            // A start that carries a token may wait out the StartTime minute first.
            let proving = matches!(d.step, Step::Wait { reason: WaitReason::RecentStart, .. })
                && matches!(judged(&Facts {
                    spec: &s,
                    desired: s.power_state.expect("a fixed power state"),
                    paused: false,
                    generation: Some(1),
                    created: None,
                    status: &st,
                    instance: Some(&i),
                    now: now(),
                    backoff_reset: false,
                    timings: &Timings::default(),
                }), Judged::Pending(_));
            prop_assert!(proving || matches!(d.step, Step::Call(Mutation::Start { .. } | Mutation::Stop { .. })), "{:?}", d);
        }
    }
}

proptest! {
    // The facts that matter (a token, a recent StartTime, no lock, pause, backoff or dry run)
    // meet in about one case in a thousand.
    #![proptest_config(ProptestConfig::with_cases(8192))]

    /// Every boot that carries a token (a reboot, or a start) is sent only once the StartTime
    /// minute is over, so a later StartTime can prove it.
    #[test]
    fn a_boot_that_carries_a_token_is_provable(
        (s, st, i, paused, reset) in any_facts()
    ) {
        let d = run_with(&s, &st, Some(&i), paused, reset);
        if let Step::Call(m) = &d.step
            && m.carried_token().is_some()
            && let Some(not_before) = reboot_not_before(&i, &Timings::default())
        {
            prop_assert!(not_before <= now(), "{m:?} inside the StartTime minute");
        }
    }
}

// Drift: an instance out of the desired state the controller had brought it to, by another hand.

/// The status of a pass that found the instance in the desired state for generation 1:
/// Ready, nothing in flight.
fn converged(desired: PowerState) -> EcsInstanceStatus {
    use crate::controller::reconcile::conditions::{Verdict, conditions};
    let ready = Verdict::Ready {
        reason: "InstanceRunning",
        message: String::new(),
    };
    EcsInstanceStatus {
        observed_generation: Some(1),
        desired_power_state: Some(desired),
        instance_status: Some(match desired {
            PowerState::Running => InstanceStatus::Running,
            PowerState::Stopped => InstanceStatus::Stopped,
        }),
        conditions: conditions(&ready, Some(1), &[], at(-600)),
        ..Default::default()
    }
}

fn with_policy(power: PowerState, policy: DriftPolicy) -> EcsInstanceSpec {
    EcsInstanceSpec {
        drift_policy: policy,
        ..spec(power, None)
    }
}

/// One decision for generation `generation` of `spec` (desired: its power state).
fn decide_at(
    spec: &EcsInstanceSpec,
    generation: i64,
    status: &EcsInstanceStatus,
    observed: InstanceStatus,
) -> Decision {
    let timings = Timings::default();
    decide(&Facts {
        spec,
        desired: spec.power_state.expect("a fixed power state"),
        paused: false,
        generation: Some(generation),
        created: None,
        status,
        instance: Some(&instance(observed, EARLY, &[])),
        now: now(),
        backoff_reset: false,
        timings: &timings,
    })
}

/// Started or stopped behind the controller's back after it had converged: drift, by
/// direction. `Correct` makes the call that sets it back; `Report` only reports it.
#[test]
fn an_instance_moved_out_of_the_converged_state_is_drift_set_back_or_reported_by_policy() {
    use InstanceStatus::*;
    let cases = [
        (PowerState::Stopped, Running, Direction::Started, "stop"),
        (PowerState::Running, Stopped, Direction::Stopped, "start"),
    ];
    for (desired, seen, direction, call) in cases {
        let status = converged(desired);
        let correct = decide_at(
            &with_policy(desired, DriftPolicy::Correct),
            1,
            &status,
            seen,
        );
        assert_eq!(
            correct.drift,
            Some(Drift { direction, seen }),
            "{desired:?}"
        );
        let made = match &correct.step {
            Step::Call(Mutation::Start { .. }) => "start",
            Step::Call(Mutation::Stop { .. }) => "stop",
            other => panic!("Correct, {desired:?}/{seen:?}: {other:?}"),
        };
        assert_eq!(made, call);

        let report = decide_at(&with_policy(desired, DriftPolicy::Report), 1, &status, seen);
        assert_eq!(report.drift, Some(Drift { direction, seen }));
        let Step::Drifted { due: Some(due) } = &report.step else {
            panic!("Report, {desired:?}/{seen:?}: {:?}", report.step);
        };
        assert_eq!(
            Step::Call(due.clone()),
            correct.step,
            "due is what Correct calls"
        );
    }
}

/// Caught moving away (Starting while Stopped is desired): drift already. `Correct` waits for
/// the transition to end, then sets it back; `Report` reports it at once.
#[test]
fn an_instance_caught_moving_away_is_drift_too() {
    use InstanceStatus::*;
    for (desired, seen) in [
        (PowerState::Stopped, Starting),
        (PowerState::Running, Stopping),
    ] {
        let status = converged(desired);
        let correct = decide_at(
            &with_policy(desired, DriftPolicy::Correct),
            1,
            &status,
            seen,
        );
        assert!(matches!(correct.step, Step::Wait { .. }), "{correct:?}");
        assert!(correct.drift.is_some());
        let report = decide_at(&with_policy(desired, DriftPolicy::Report), 1, &status, seen);
        assert_eq!(report.step, Step::Drifted { due: None });
    }
}

/// Drift stays drift while the status records it (Ready is then False): the next looks still
/// report it under `Report`, and once the instance is back by itself it is converged.
#[test]
fn recorded_drift_holds_until_the_instance_comes_back() {
    let mut status = converged(PowerState::Stopped);
    status.conditions.clear();
    status.instance_status = Some(InstanceStatus::Running);
    status.drift = Some(crate::api::DriftStatus {
        instance_status: InstanceStatus::Starting,
        seen_at: Time(at(-300)),
    });
    let spec = with_policy(PowerState::Stopped, DriftPolicy::Report);
    let again = decide_at(&spec, 1, &status, InstanceStatus::Running);
    assert!(
        matches!(again.step, Step::Drifted { due: Some(_) }),
        "{again:?}"
    );
    // Someone stops it again: on its way back it is not drift.
    let back = decide_at(&spec, 1, &status, InstanceStatus::Stopping);
    assert_eq!(back.drift, None);
    assert!(matches!(back.step, Step::Wait { .. }));
    let home = decide_at(&spec, 1, &status, InstanceStatus::Stopped);
    assert_eq!((home.step, home.drift), (Step::Converged, None));
}

/// Not drift: a new desired state (a spec change, a schedule boundary or override), a status
/// that never showed the instance converged (first sight, a change under way, a failure), or a
/// reboot of ours in flight. `Report` acts on all of these like `Correct`.
#[test]
fn a_new_desired_state_or_an_unfinished_change_is_not_drift() {
    let spec = with_policy(PowerState::Stopped, DriftPolicy::Report);
    let seen = InstanceStatus::Running;
    let converged = converged(PowerState::Stopped);
    let starting = {
        use crate::controller::reconcile::conditions::{Progress, Verdict, conditions};
        let verdict = Verdict::Progressing {
            why: Progress::Starting,
            message: String::new(),
        };
        EcsInstanceStatus {
            conditions: conditions(&verdict, Some(1), &[], at(-60)),
            ..converged.clone()
        }
    };
    let cases: [(&str, i64, EcsInstanceStatus); 6] = [
        ("first sight", 1, EcsInstanceStatus::default()),
        ("a spec change", 2, converged.clone()),
        (
            "a schedule boundary",
            1,
            EcsInstanceStatus {
                desired_power_state: Some(PowerState::Running),
                instance_status: Some(InstanceStatus::Running),
                ..converged.clone()
            },
        ),
        ("a change under way", 1, starting),
        (
            "a reboot in flight",
            1,
            EcsInstanceStatus {
                reboot_in_flight: Some(RebootInFlight {
                    token: "t1".into(),
                    start_time_before: Some(EARLY.into()),
                    requested_at: Time(at(-3600)),
                }),
                ..converged.clone()
            },
        ),
        (
            "a status that last saw it elsewhere",
            1,
            EcsInstanceStatus {
                instance_status: Some(InstanceStatus::Running),
                ..converged.clone()
            },
        ),
    ];
    for (case, generation, status) in cases {
        let d = decide_at(&spec, generation, &status, seen);
        assert_eq!(d.drift, None, "{case}");
        assert!(
            matches!(d.step, Step::Call(Mutation::Stop { .. })),
            "{case}: {:?}",
            d.step
        );
    }
    // In the desired state: converged, whatever the status said.
    let d = decide_at(&spec, 1, &converged, InstanceStatus::Stopped);
    assert_eq!((d.step, d.drift), (Step::Converged, None));
}

/// `Report` never calls on drift, even when paused or after a failure's window ended; the
/// decision still names the drift so it is reported.
#[test]
fn report_wins_over_pause_and_backoff_and_leaves_a_lock_stalled() {
    let spec = with_policy(PowerState::Running, DriftPolicy::Report);
    let mut status = converged(PowerState::Running);
    status.retry.next_attempt_after = Some(Time(at(60)));
    let timings = Timings::default();
    let stopped = instance(InstanceStatus::Stopped, EARLY, &[]);
    let locked = instance(InstanceStatus::Stopped, EARLY, &["security"]);
    for (paused, observed) in [(true, &stopped), (false, &stopped), (false, &locked)] {
        let d = decide(&Facts {
            spec: &spec,
            desired: PowerState::Running,
            paused,
            generation: Some(1),
            created: None,
            status: &status,
            instance: Some(observed),
            now: now(),
            backoff_reset: false,
            timings: &timings,
        });
        assert!(d.drift.is_some());
        if observed.is_security_locked() {
            assert_eq!(d.step, Step::Blocked(Blocker::SecurityLock));
        } else {
            assert!(matches!(d.step, Step::Drifted { due: Some(_) }), "{d:?}");
        }
    }
}

proptest! {
    /// Under `Report`, no call is ever made on an instance the decision calls drifted; and
    /// nothing that was never Ready, nor a status of another generation, is drift.
    #[test]
    fn report_never_calls_on_drift_and_drift_needs_a_converged_status(
        (mut s, st, i, paused, reset) in any_facts(),
        report in any::<bool>(),
        generation in 1i64..3,
    ) {
        if report {
            s.drift_policy = DriftPolicy::Report;
        }
        let timings = Timings::default();
        let d = decide(&Facts {
            spec: &s,
            desired: s.power_state.expect("a fixed power state"),
            paused,
            generation: Some(generation),
            created: None,
            status: &st,
            instance: Some(&i),
            now: now(),
            backoff_reset: reset,
            timings: &timings,
        });
        // `any_facts` statuses were never Ready and record no drift.
        prop_assert_eq!(d.drift, None);
        let mut conv = converged(s.power_state.expect("fixed"));
        conv.retry = st.retry.clone();
        let d = decide(&Facts {
            spec: &s,
            desired: s.power_state.expect("a fixed power state"),
            paused,
            generation: Some(generation),
            created: None,
            status: &conv,
            instance: Some(&i),
            now: now(),
            backoff_reset: reset,
            timings: &timings,
        });
        if generation != 1 {
            prop_assert_eq!(d.drift, None);
        }
        if report && d.drift.is_some() {
            prop_assert!(!matches!(d.step, Step::Call(_)), "{:?}", d);
        }
    }
}
