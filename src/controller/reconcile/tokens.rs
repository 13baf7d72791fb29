//! Which reboot tokens are already done: the rules that keep a reboot from being replayed.
//!
//! A token is a request for one reboot, but the spec that carries it is not a queue of requests:
//! GitOps syncs it back to an older value, a restore or a rebuilt cluster recreates the object
//! with the token it had. So a token is carried out only when nothing says it is done:
//! - it is in `status.rebootHistory` (the last [`REBOOT_HISTORY_LIMIT`] settled): done;
//! - it is an RFC 3339 time and the instance booted after it: a reboot asked for at T is
//!   satisfied by any boot after T;
//! - the controller sees the object for the first time (no token bookkeeping, no observation
//!   yet): a token already there is adopted as done, unless it is a time later than the
//!   instance's last boot (a genuine pending request, as the `reboot` command writes).
//!
//! Pure: [`judge`] decides, [`remember`] keeps the history; `decide` and `NextStatus` use them.

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

/// The rules of the module docs, in order. `instance`: `None` when ECS does not know it.
pub(crate) fn judge<'a>(
    token: Option<&'a str>,
    status: &EcsInstanceStatus,
    instance: Option<&Instance>,
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
    let booted = instance.and_then(Instance::start_timestamp);
    if let (Some(t), Some(boot)) = (requested_at, booted)
        && boot > t
    {
        return Judged::BootedAfter(token);
    }
    // A time token not yet satisfied (or an instance ECS does not know) is a genuine request.
    if first_sight(status) && requested_at.is_none() {
        return Judged::Adopted(token);
    }
    Judged::Pending(token)
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
        && status.reboot_in_flight.is_none()
        && status.reboot_history.is_empty()
}

/// Records `token` as settled: `lastRebootToken`, and the history (oldest dropped beyond the
/// limit). A status written before the history existed has its `lastRebootToken` carried into
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
    status.last_reboot_token = Some(token.to_string());
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

    /// A status the controller has written before (it saw the instance).
    fn seen() -> EcsInstanceStatus {
        EcsInstanceStatus {
            instance_status: Some(InstanceStatus::Running),
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
            judge(Some("t1"), &status, Some(&booted)),
            Judged::AlreadyDone("t1")
        );
        assert_eq!(judge(Some("t2"), &status, Some(&booted)), Judged::Settled);
        assert_eq!(
            judge(Some("t3"), &status, Some(&booted)),
            Judged::Pending("t3")
        );
        assert_eq!(judge(None, &status, Some(&booted)), Judged::Settled);
    }

    /// A fresh object (delete and recreate, a restore, a rebuilt cluster) with a token is adopted
    /// as done; one the controller has seen before is not.
    #[test]
    fn a_token_present_at_first_sight_is_adopted() {
        let booted = running("2026-11-22T09:00Z");
        let fresh = EcsInstanceStatus::default();
        assert_eq!(
            judge(Some("release-42"), &fresh, Some(&booted)),
            Judged::Adopted("release-42")
        );
        // ECS does not know the instance (yet): still adopted, no StartTime is needed.
        assert_eq!(
            judge(Some("release-42"), &fresh, None),
            Judged::Adopted("release-42")
        );
        // A first look that failed before deciding (credentials, DescribeInstances) left a
        // status: still the first sight.
        let failed_first_look = EcsInstanceStatus {
            observed_generation: Some(1),
            ..EcsInstanceStatus::default()
        };
        assert_eq!(
            judge(Some("release-42"), &failed_first_look, Some(&booted)),
            Judged::Adopted("release-42")
        );
        assert_eq!(
            judge(Some("release-42"), &seen(), Some(&booted)),
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
            judge(Some("release-42"), &intent, Some(&booted)),
            Judged::Pending("release-42")
        );
    }

    /// A reboot asked for at T is satisfied by any boot after T, whether the object is fresh or
    /// not; a time after the last boot is a genuine request, also on a fresh object.
    #[test]
    fn a_time_token_is_done_by_any_later_boot() {
        let fresh = EcsInstanceStatus::default();
        let booted = running("2026-11-22T10:05Z");
        for status in [&fresh, &seen()] {
            assert_eq!(
                judge(Some("2026-11-22T10:04:59Z"), status, Some(&booted)),
                Judged::BootedAfter("2026-11-22T10:04:59Z")
            );
            // StartTime has minute precision: 10:05 may be before 10:05:30, so not proven.
            assert_eq!(
                judge(Some("2026-11-22T10:05:30.5Z"), status, Some(&booted)),
                Judged::Pending("2026-11-22T10:05:30.5Z")
            );
            assert_eq!(
                judge(Some("2026-11-22T18:30:00+08:00"), status, Some(&booted)),
                Judged::Pending("2026-11-22T18:30:00+08:00")
            );
            // Never booted (or not known to ECS): nothing satisfies it yet.
            assert_eq!(
                judge(Some("2026-11-22T10:04:59Z"), status, None),
                Judged::Pending("2026-11-22T10:04:59Z")
            );
        }
        // A time without an offset is not a time token: adopted like any other on a fresh object.
        assert_eq!(
            judge(Some("2026-11-22T10:04:59"), &fresh, Some(&booted)),
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
        assert_eq!(judge(Some("t1"), &status, None), Judged::Pending("t1"));

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
        assert_eq!(judge(Some("old"), &status, None), Judged::Settled);
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
            judge(Some("old"), &status, None),
            Judged::AlreadyDone("old")
        );
    }
}
