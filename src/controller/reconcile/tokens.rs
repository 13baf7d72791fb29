//! Which reboot tokens are already done: the rules that keep a reboot from being replayed.
//!
//! A token is a request for one reboot, but the spec that carries it is not a queue of requests:
//! GitOps syncs it back to an older value, a restore or a rebuilt cluster recreates the object
//! with the token it had. So a token is carried out only when nothing says it is done:
//! - it is in `status.rebootHistory` (the last [`REBOOT_HISTORY_LIMIT`] settled, carried out or
//!   seen and superseded by a newer token before it was): done;
//! - it is an RFC 3339 time and the instance booted after it: a reboot asked for at T is
//!   satisfied by any boot after T. ECS reports StartTime to the minute, so a boot is "after T"
//!   only when its minute begins after T; and only a boot the controller has not seen before
//!   (a StartTime later than the one in `status.startTime`: it has looked before), dated no
//!   later than the
//!   controller's own clock, and not possibly the controller's own reboot in flight, is
//!   evidence: an ECS clock ahead of ours dates an older boot (our own last reboot among them)
//!   after the request, and would eat it;
//! - the controller sees the object for the first time (no token bookkeeping, no observation
//!   yet) *as it was created* (generation 1): a token already there is adopted as done, unless
//!   it is a time later than the minute of the instance's last boot (a genuine request on a new
//!   object; a restored object's time token is not later than the boot that carried it out,
//!   because StartTime is that boot's minute; nor is one written more than a minute before the
//!   object was created, which holds even when ECS's clock runs behind and dates the boot
//!   earlier). A token that arrived in a later generation is a
//!   request, however late the controller first looks (it was down, behind, not yet leader, or
//!   its status writes failed).
//!
//! Pure: [`judge`] decides, [`remember`] and [`supersede`] keep the history; `decide` and
//! `NextStatus` use them.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{EcsInstanceStatus, REBOOT_HISTORY_LIMIT, RebootOutcome, RebootRecord};
use ecs_client::{Instance, PowerAction};

/// What the spec's reboot token asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Judged<'a> {
    /// No token, or it is the one already settled (`lastRebootToken`).
    Settled,
    /// Carry it out.
    Pending(&'a str),
    /// In the history: settled before, never carried out again.
    AlreadyDone(&'a str),
    /// A time token, and the instance booted after that time.
    BootedAfter(&'a str),
    /// Present when the controller first saw the object: taken as done.
    Adopted(&'a str),
}

/// What [`judge`] reads besides the token and the status: the object's generation (a token
/// is adopted only as the object was created) and the controller's clock (a StartTime ahead of
/// it proves nothing).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen<'i> {
    /// `None`: ECS does not know the instance.
    pub instance: Option<&'i Instance>,
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    pub now: Timestamp,
}

/// How much older than its object a time token may be and still be the request the object was
/// created with (a manifest written, then applied): older, it is a copy (a restore, a
/// re-create) of a request made for an earlier object.
const CREATED_WITH: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// The rules of the module docs, in order.
pub(crate) fn judge<'a>(
    token: Option<&'a str>,
    status: &EcsInstanceStatus,
    seen: Seen<'_>,
) -> Judged<'a> {
    let Some(token) = token else {
        return Judged::Settled;
    };
    if status.last_reboot_token.as_deref() == Some(token) {
        return Judged::Settled;
    }
    if recorded(status, token).is_some() {
        return Judged::AlreadyDone(token);
    }
    let requested_at = time_token(token);
    // Evidence of a boot after the request: a StartTime that is not ahead of the controller's
    // own clock (ECS's may run ahead), and new since the controller last looked (the boot the
    // last look saw, the controller's own earlier reboot among them, is known and dated by a
    // clock that may be off).
    let last_seen = status
        .start_time
        .as_deref()
        .and_then(ecs_client::types::parse_ecs_time);
    // A boot while a reboot of ours is in flight may be that reboot, sent before this request.
    let booted = seen
        .instance
        .and_then(Instance::start_timestamp)
        .filter(|boot| *boot <= seen.now && last_seen.is_some_and(|seen| *boot > seen))
        .filter(|_| status.reboot_in_flight.is_none());
    if let (Some(t), Some(boot)) = (requested_at, booted)
        && boot > t
    {
        return Judged::BootedAfter(token);
    }
    if first_sight(status) && seen.generation == Some(1) {
        let copied = |t: Timestamp| {
            seen.created
                .and_then(|c| c.checked_sub(CREATED_WITH).ok())
                .is_some_and(|limit| t < limit)
        };
        match (
            requested_at,
            seen.instance.and_then(Instance::start_timestamp),
        ) {
            // A plain token in the object as created: a restore, a re-created object.
            (None, _) => return Judged::Adopted(token),
            // A time token not after the minute of the last boot: that boot carried it out.
            (Some(t), Some(boot)) if minute_of(t) <= boot => return Judged::Adopted(token),
            // Older than the object: a copy of an earlier object's request.
            (Some(t), _) if copied(t) => return Judged::Adopted(token),
            // Later than the last boot, written as the object was created: a request.
            _ => {}
        }
    }
    Judged::Pending(token)
}

/// The start of the minute `t` falls in (StartTime's precision).
fn minute_of(t: Timestamp) -> Timestamp {
    let seconds = t.as_second().div_euclid(60) * 60;
    Timestamp::from_second(seconds).unwrap_or(t)
}

/// Whether `status` shows `token` settled or under way: the last one, in flight, in the history, or a time token the
/// last boot seen (`status.startTime`) came after. For the `reboot` command, which reads no
/// instance.
pub(crate) fn settled_in(status: &EcsInstanceStatus, token: &str) -> bool {
    let booted = status
        .start_time
        .as_deref()
        .and_then(ecs_client::types::parse_ecs_time);
    status.last_reboot_token.as_deref() == Some(token)
        || status
            .reboot_in_flight
            .as_ref()
            .is_some_and(|f| f.token == token)
        || recorded(status, token).is_some()
        || time_token(token)
            .zip(booted)
            .is_some_and(|(t, boot)| boot > t)
}

/// The history's entry for `token`.
pub(crate) fn recorded<'s>(status: &'s EcsInstanceStatus, token: &str) -> Option<&'s RebootRecord> {
    status.reboot_history.iter().find(|r| r.token == token)
}

/// A token that is an RFC 3339 time (`2026-11-22T10:00:00.123Z`, `…+08:00`): a request made then.
pub(crate) fn time_token(token: &str) -> Option<Timestamp> {
    token.parse().ok()
}

/// The controller has not yet looked at this object: its status holds no token bookkeeping and
/// no observation of the instance. (Not merely "no status": a first look that failed, say on
/// the credentials, writes a status without deciding anything, and must not void adoption.)
fn first_sight(status: &EcsInstanceStatus) -> bool {
    status.instance_status.is_none()
        && status.last_reboot_token.is_none()
        && status.pending_reboot_token.is_none()
        && status.reboot_in_flight.is_none()
        && status.reboot_history.is_empty()
}

/// Records `token` as settled: `lastRebootToken`, and the history (oldest dropped beyond the
/// limit); it is no longer pending. A status written before the history existed has its `lastRebootToken` carried into
/// it first, so that token too is never carried out again.
pub(crate) fn remember(
    status: &mut EcsInstanceStatus,
    token: &str,
    outcome: RebootOutcome,
    time: Time,
) {
    if status.reboot_history.is_empty()
        && let Some(old) = status.last_reboot_token.clone()
        && old != token
    {
        let legacy = legacy_record(status, old, &time);
        status.reboot_history.push(legacy);
    }
    push_history(status, token, outcome, time);
    status.last_reboot_token = Some(token.to_string());
}

/// Records `token`, seen pending and replaced in the spec before it was carried out, in the
/// history as `Superseded` (a revert to it is then not a request). `lastRebootToken` stays: it
/// names the last token the spec settled on.
pub(crate) fn supersede(status: &mut EcsInstanceStatus, token: &str, time: Time) {
    if recorded(status, token).is_none() && status.last_reboot_token.as_deref() != Some(token) {
        push_history(status, token, RebootOutcome::Superseded, time);
    }
}

/// Appends `token` to the history (replacing an older entry for it), oldest dropped beyond the
/// limit; it is no longer pending.
fn push_history(status: &mut EcsInstanceStatus, token: &str, outcome: RebootOutcome, time: Time) {
    status.reboot_history.retain(|r| r.token != token);
    status.reboot_history.push(RebootRecord {
        token: token.to_string(),
        time,
        outcome,
    });
    let excess = status
        .reboot_history
        .len()
        .saturating_sub(REBOOT_HISTORY_LIMIT);
    status.reboot_history.drain(..excess);
    if status.pending_reboot_token.as_deref() == Some(token) {
        status.pending_reboot_token = None;
    }
}

/// The history entry of a token settled before the history existed: from `lastAction` when it
/// carried that token, else adopted now.
fn legacy_record(status: &EcsInstanceStatus, token: String, now: &Time) -> RebootRecord {
    let action = status
        .last_action
        .as_ref()
        .filter(|a| a.token.as_deref() == Some(token.as_str()));
    let (outcome, time) = match action {
        Some(a) if a.action == PowerAction::Reboot => (RebootOutcome::Rebooted, a.time.clone()),
        Some(a) => (RebootOutcome::Started, a.time.clone()),
        None => (RebootOutcome::Adopted, now.clone()),
    };
    RebootRecord {
        token,
        time,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LastAction, RebootInFlight};
    use ecs_client::InstanceStatus;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn running(start_time: &str) -> Instance {
        Instance {
            start_time: Some(start_time.into()),
            ..crate::testing::instance("i-a", InstanceStatus::Running)
        }
    }

    /// The controller's clock in these tests: after every StartTime they use.
    const NOW: &str = "2026-11-22T12:00:00Z";

    /// What a look shows: `instance`, on an object as created (generation 1), at [`NOW`].
    fn look(instance: Option<&Instance>) -> Seen<'_> {
        Seen {
            instance,
            generation: Some(1),
            created: None,
            now: NOW.parse().unwrap(),
        }
    }

    /// A status the controller has written before (it saw the instance, booted at 09:00).
    fn seen() -> EcsInstanceStatus {
        EcsInstanceStatus {
            instance_status: Some(InstanceStatus::Running),
            start_time: Some("2026-11-22T09:00Z".into()),
            ..EcsInstanceStatus::default()
        }
    }

    fn with_history(tokens: &[&str]) -> EcsInstanceStatus {
        let mut status = seen();
        for t in tokens {
            remember(
                &mut status,
                t,
                RebootOutcome::Rebooted,
                at("2026-11-22T09:00:00Z"),
            );
        }
        status
    }

    /// The GitOps revert: T1 and T2 carried out, the spec says T1 again. T1 is done; a new
    /// token is not.
    #[test]
    fn a_token_in_the_history_is_done_and_a_new_one_is_pending() {
        let status = with_history(&["t1", "t2"]);
        let booted = running("2026-11-22T09:01Z");
        assert_eq!(
            judge(Some("t1"), &status, look(Some(&booted))),
            Judged::AlreadyDone("t1")
        );
        assert_eq!(
            judge(Some("t2"), &status, look(Some(&booted))),
            Judged::Settled
        );
        assert_eq!(
            judge(Some("t3"), &status, look(Some(&booted))),
            Judged::Pending("t3")
        );
        assert_eq!(judge(None, &status, look(Some(&booted))), Judged::Settled);
    }

    /// A fresh object (delete and recreate, a restore, a rebuilt cluster) with a token is adopted
    /// as done; one the controller has seen before is not.
    #[test]
    fn a_token_present_at_first_sight_is_adopted() {
        let booted = running("2026-11-22T09:00Z");
        let fresh = EcsInstanceStatus::default();
        assert_eq!(
            judge(Some("release-42"), &fresh, look(Some(&booted))),
            Judged::Adopted("release-42")
        );
        // ECS does not know the instance (yet): still adopted, no StartTime is needed.
        assert_eq!(
            judge(Some("release-42"), &fresh, look(None)),
            Judged::Adopted("release-42")
        );
        // A first look that failed before deciding (credentials, DescribeInstances) left a
        // status: still the first sight.
        let failed_first_look = EcsInstanceStatus {
            observed_generation: Some(1),
            ..EcsInstanceStatus::default()
        };
        assert_eq!(
            judge(Some("release-42"), &failed_first_look, look(Some(&booted))),
            Judged::Adopted("release-42")
        );
        assert_eq!(
            judge(Some("release-42"), &seen(), look(Some(&booted))),
            Judged::Pending("release-42")
        );
        // A controller that died after recording its intent: not a first sight.
        let intent = EcsInstanceStatus {
            reboot_in_flight: Some(RebootInFlight {
                token: "release-42".into(),
                start_time_before: Some("2026-11-22T09:00Z".into()),
                requested_at: at("2026-11-22T10:00:00Z"),
            }),
            ..EcsInstanceStatus::default()
        };
        assert_eq!(
            judge(Some("release-42"), &intent, look(Some(&booted))),
            Judged::Pending("release-42")
        );
    }

    /// A reboot asked for at T is satisfied by any boot after T the controller has not seen
    /// before (on a fresh object, the boot that carried it out adopts it); a time after the last
    /// boot is a genuine request, also on a fresh object.
    #[test]
    fn a_time_token_is_done_by_any_later_boot() {
        let fresh = EcsInstanceStatus::default();
        let booted = running("2026-11-22T10:05Z");
        assert_eq!(
            judge(Some("2026-11-22T10:04:59Z"), &fresh, look(Some(&booted))),
            Judged::Adopted("2026-11-22T10:04:59Z")
        );
        assert_eq!(
            judge(Some("2026-11-22T10:04:59Z"), &seen(), look(Some(&booted))),
            Judged::BootedAfter("2026-11-22T10:04:59Z")
        );
        // The boot the controller saw at its last look proves nothing new.
        let looked_at_it = EcsInstanceStatus {
            start_time: Some("2026-11-22T10:05Z".into()),
            ..seen()
        };
        assert_eq!(
            judge(
                Some("2026-11-22T10:04:59Z"),
                &looked_at_it,
                look(Some(&booted))
            ),
            Judged::Pending("2026-11-22T10:04:59Z")
        );
        for status in [&fresh, &seen()] {
            // StartTime has minute precision: 10:05 may be before 10:05:30, so on an object the
            // controller has seen, not proven (on a fresh one: see the restore test below).
            if *status == seen() {
                assert_eq!(
                    judge(Some("2026-11-22T10:05:30.5Z"), status, look(Some(&booted))),
                    Judged::Pending("2026-11-22T10:05:30.5Z")
                );
            }
            assert_eq!(
                judge(
                    Some("2026-11-22T18:30:00+08:00"),
                    status,
                    look(Some(&booted))
                ),
                Judged::Pending("2026-11-22T18:30:00+08:00")
            );
            // Never booted (or not known to ECS): nothing satisfies it yet.
            assert_eq!(
                judge(Some("2026-11-22T10:04:59Z"), status, look(None)),
                Judged::Pending("2026-11-22T10:04:59Z")
            );
        }
        // A time without an offset is not a time token: adopted like any other on a fresh object.
        assert_eq!(
            judge(Some("2026-11-22T10:04:59"), &fresh, look(Some(&booted))),
            Judged::Adopted("2026-11-22T10:04:59")
        );
    }

    #[test]
    fn the_history_keeps_the_last_16_and_each_token_once() {
        let tokens: Vec<String> = (1..=20).map(|i| format!("t{i}")).collect();
        let mut status = seen();
        for t in &tokens {
            remember(
                &mut status,
                t,
                RebootOutcome::Rebooted,
                at("2026-11-22T09:00:00Z"),
            );
        }
        let kept: Vec<&str> = status
            .reboot_history
            .iter()
            .map(|r| r.token.as_str())
            .collect();
        assert_eq!(kept.len(), REBOOT_HISTORY_LIMIT);
        assert_eq!(kept.first(), Some(&"t5"), "the oldest are dropped");
        assert_eq!(status.last_reboot_token.as_deref(), Some("t20"));
        // Beyond the bound a token is new again.
        assert_eq!(
            judge(Some("t1"), &status, look(None)),
            Judged::Pending("t1")
        );

        remember(
            &mut status,
            "t10",
            RebootOutcome::Skipped,
            at("2026-11-22T11:00:00Z"),
        );
        assert_eq!(status.reboot_history.len(), REBOOT_HISTORY_LIMIT);
        assert_eq!(
            status
                .reboot_history
                .iter()
                .filter(|r| r.token == "t10")
                .count(),
            1
        );
        assert_eq!(
            status.reboot_history.last().unwrap().outcome,
            RebootOutcome::Skipped
        );
    }

    /// A status from before the history: its `lastRebootToken` joins the history when the next
    /// token is settled, so a revert to it is still recognised.
    #[test]
    fn a_status_without_history_keeps_its_last_token() {
        let mut status = EcsInstanceStatus {
            last_reboot_token: Some("old".into()),
            last_action: Some(LastAction {
                action: PowerAction::Reboot,
                request_id: "req-1".into(),
                time: at("2026-11-20T08:00:00Z"),
                token: Some("old".into()),
                dry_run: false,
            }),
            ..seen()
        };
        assert_eq!(judge(Some("old"), &status, look(None)), Judged::Settled);
        remember(
            &mut status,
            "new",
            RebootOutcome::Rebooted,
            at("2026-11-22T09:00:00Z"),
        );
        let old = recorded(&status, "old").expect("carried into the history");
        assert_eq!(old.outcome, RebootOutcome::Rebooted);
        assert_eq!(old.time, at("2026-11-20T08:00:00Z"));
        assert_eq!(
            judge(Some("old"), &status, look(None)),
            Judged::AlreadyDone("old")
        );
    }

    /// Issue 24 item 1: `reboot` wrote 15:38:14.125Z, RebootInstance went out at 15:38:14, and
    /// ECS's StartTime reads 15:38Z. The object is deleted and created again with the same spec
    /// (a restore, a GitOps re-create): the token is that boot's, adopted; a week later too.
    #[test]
    fn a_recreated_objects_time_token_from_the_same_minute_is_adopted() {
        let fresh = EcsInstanceStatus::default();
        let booted = running("2026-12-07T15:38Z");
        for now in ["2026-12-07T15:39:29Z", "2026-12-14T15:39:29Z"] {
            let seen = Seen {
                now: now.parse().unwrap(),
                ..look(Some(&booted))
            };
            assert_eq!(
                judge(Some("2026-12-07T15:38:14.125Z"), &fresh, seen),
                Judged::Adopted("2026-12-07T15:38:14.125Z"),
                "at {now}"
            );
            // Later than that boot's minute: a new object asking for a reboot.
            assert_eq!(
                judge(Some("2026-12-07T15:39:00Z"), &fresh, seen),
                Judged::Pending("2026-12-07T15:39:00Z")
            );
        }
        // ECS's clock five minutes behind dates that boot 15:33Z; the object re-created 75 s
        // after the request still carries a copy of it, not a request.
        let behind = running("2026-12-07T15:33Z");
        let recreated = Seen {
            created: Some("2026-12-07T15:39:29Z".parse().unwrap()),
            now: "2026-12-07T15:39:30Z".parse().unwrap(),
            ..look(Some(&behind))
        };
        assert_eq!(
            judge(Some("2026-12-07T15:38:14.125Z"), &fresh, recreated),
            Judged::Adopted("2026-12-07T15:38:14.125Z")
        );
        // Written as the object was created: a request.
        assert_eq!(
            judge(Some("2026-12-07T15:39:20Z"), &fresh, recreated),
            Judged::Pending("2026-12-07T15:39:20Z")
        );
    }

    /// Issue 24 item 3: the object was created without a token and given one in generation 2
    /// while the controller was down, behind, or failing to write its status: a request, not
    /// something to adopt.
    #[test]
    fn a_token_that_arrived_after_creation_is_a_request_even_at_first_sight() {
        let fresh = EcsInstanceStatus::default();
        let booted = running("2026-11-22T09:00Z");
        let later = Seen {
            generation: Some(2),
            ..look(Some(&booted))
        };
        assert_eq!(
            judge(Some("sf-tok-1"), &fresh, later),
            Judged::Pending("sf-tok-1")
        );
        assert_eq!(
            judge(Some("2026-11-22T08:59:00Z"), &fresh, later),
            Judged::Pending("2026-11-22T08:59:00Z"),
            "without a look before, a StartTime on a clock that may be off proves nothing"
        );
        assert_eq!(
            judge(Some("2026-11-22T09:00:30Z"), &fresh, later),
            Judged::Pending("2026-11-22T09:00:30Z"),
            "the restore rule is for objects as created"
        );
    }

    /// Issue 24 item 7: with ECS's clock five minutes ahead, an old boot reads 15:59Z while the
    /// controller's clock says 15:55:10: not proof of a boot after a token written at 15:55:03.
    /// With ECS behind, a boot before the token reads earlier still: not proof either.
    #[test]
    fn a_start_time_ahead_of_the_controllers_clock_proves_nothing() {
        let token = "2026-12-07T15:55:03Z";
        let at = |now: &str, start: &str| {
            let booted = running(start);
            let sight = Seen {
                instance: Some(&booted),
                generation: Some(3),
                created: None,
                now: now.parse().unwrap(),
            };
            judge(Some(token), &seen(), sight)
        };
        assert_eq!(
            at("2026-12-07T15:55:10Z", "2026-12-07T15:59Z"),
            Judged::Pending(token)
        );
        assert_eq!(
            at("2026-12-07T15:55:10Z", "2026-12-07T15:49Z"),
            Judged::Pending(token)
        );
        // Once the controller's clock has passed it, a StartTime after the token is a boot
        // after it.
        assert_eq!(
            at("2026-12-07T15:57:10Z", "2026-12-07T15:56Z"),
            Judged::BootedAfter(token)
        );
    }

    /// Issue 24 item 2: a token seen pending and replaced before it was carried out is history:
    /// a revert to it is not a request; the token that replaced it still is.
    #[test]
    fn a_superseded_token_is_history() {
        let mut status = with_history(&["r1"]);
        status.pending_reboot_token = Some("r5".into());
        supersede(&mut status, "r5", at("2026-11-22T09:00:05Z"));
        assert_eq!(status.pending_reboot_token, None);
        assert_eq!(status.last_reboot_token.as_deref(), Some("r1"));
        assert_eq!(
            recorded(&status, "r5").map(|r| r.outcome),
            Some(RebootOutcome::Superseded)
        );
        let booted = running("2026-11-22T09:01Z");
        assert_eq!(
            judge(Some("r5"), &status, look(Some(&booted))),
            Judged::AlreadyDone("r5")
        );
        assert_eq!(
            judge(Some("r20"), &status, look(Some(&booted))),
            Judged::Pending("r20")
        );
        // Superseding what is already settled changes nothing.
        let before = status.clone();
        supersede(&mut status, "r1", at("2026-11-22T09:00:06Z"));
        assert_eq!(status, before);
    }
}
