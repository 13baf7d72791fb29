//! Overrides: an operator holds one EcsInstance in a power state for a while, whatever its
//! schedule says, with two annotations:
//!
//! ```yaml
//! ecs.powerctl.io/override-power-state: Running     # or Stopped
//! ecs.powerctl.io/override-until: "2026-11-28T08:00:00Z"   # RFC 3339, at most 7 days ahead
//! ```
//!
//! `override-until` is required: an override that is forgotten must end by itself. Once it has
//! passed the override is ignored (and reported once as expired), so nobody has to remove the
//! annotations for the schedule to take over again. A malformed override is ignored too, and
//! reported with the annotation named.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::Schedule;
use crate::api::PowerState;

pub const OVERRIDE_POWER_STATE: &str = "ecs.powerctl.io/override-power-state";
pub const OVERRIDE_UNTIL: &str = "ecs.powerctl.io/override-until";

/// The longest an override may reach ahead.
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_hours(7 * 24);

/// What an object's override annotations say at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Override {
    /// No override annotations.
    None,
    /// In force until `until` (exclusive).
    Active {
        power_state: PowerState,
        until: Timestamp,
    },
    /// It ended at `until`: ignored; worth one event so the operator knows.
    Expired {
        power_state: PowerState,
        until: Timestamp,
    },
    /// Malformed: ignored, and reported.
    Invalid(OverrideError),
}

/// Why override annotations are not an override. Each message names the annotation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error(
        "metadata.annotations[\"{OVERRIDE_UNTIL}\"]: required with {OVERRIDE_POWER_STATE}: an RFC 3339 time at most 7 days ahead, e.g. 2026-11-28T08:00:00Z"
    )]
    MissingUntil,
    #[error(
        "metadata.annotations[\"{OVERRIDE_POWER_STATE}\"]: required with {OVERRIDE_UNTIL}: Running or Stopped"
    )]
    MissingPowerState,
    #[error("metadata.annotations[\"{OVERRIDE_POWER_STATE}\"]: {0:?} is not Running or Stopped")]
    BadPowerState(String),
    #[error(
        "metadata.annotations[\"{OVERRIDE_UNTIL}\"]: {0:?} is not an RFC 3339 time, e.g. 2026-11-28T08:00:00Z"
    )]
    BadUntil(String),
    /// `until` as written (a time past what can be represented, 9999-12-31T23:59:59Z, is
    /// valid RFC 3339 and simply too far ahead).
    #[error(
        "metadata.annotations[\"{OVERRIDE_UNTIL}\"]: {until} is more than 7 days ahead: an override may reach at most 7 days ahead"
    )]
    TooFarAhead { until: String },
}

/// The most bytes of an annotation's value quoted back in an [`OverrideError`]: the message
/// lands in status and events, and a value may be 256 KB.
pub const QUOTED_LIMIT: usize = 64;

/// `value` as an error quotes it: its beginning only when it is long.
fn quoted(value: &str) -> String {
    crate::controller::truncate::truncated_to(value.to_string(), QUOTED_LIMIT)
}

impl Override {
    /// Reads the override annotations at `now`.
    pub fn read(annotations: Option<&BTreeMap<String, String>>, now: Timestamp) -> Override {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(|v| v.trim());
        let (state, until) = match (get(OVERRIDE_POWER_STATE), get(OVERRIDE_UNTIL)) {
            (None, None) => return Override::None,
            (Some(_), None) => return Override::Invalid(OverrideError::MissingUntil),
            (None, Some(_)) => return Override::Invalid(OverrideError::MissingPowerState),
            (Some(state), Some(until)) => (state, until),
        };
        let power_state = match state {
            "Running" => PowerState::Running,
            "Stopped" => PowerState::Stopped,
            other => return Override::Invalid(OverrideError::BadPowerState(quoted(other))),
        };
        let until_at = match until.parse::<Timestamp>() {
            Ok(at) => at,
            // RFC 3339 allows up to 9999-12-31T23:59:59Z; the last day or so is past what a
            // Timestamp holds, and far past the 7 days an override may reach.
            Err(_) if beyond_representable(until) => {
                return Override::Invalid(OverrideError::TooFarAhead {
                    until: quoted(until),
                });
            }
            Err(_) => return Override::Invalid(OverrideError::BadUntil(quoted(until))),
        };
        if until_at <= now {
            Override::Expired {
                power_state,
                until: until_at,
            }
        } else if until_at.duration_since(now) > MAX_AHEAD {
            Override::Invalid(OverrideError::TooFarAhead {
                until: until_at.to_string(),
            })
        } else {
            Override::Active {
                power_state,
                until: until_at,
            }
        }
    }
}

/// A well-formed time with an offset in the year 9999, which jiff cannot hold past
/// 9999-12-30T22:00:00Z.
fn beyond_representable(text: &str) -> bool {
    jiff::fmt::temporal::Pieces::parse(text).is_ok_and(|pieces| {
        pieces.date().year() == 9999 && pieces.time().is_some() && pieces.offset().is_some()
    })
}

/// The power state an object following a schedule should be in, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub power_state: PowerState,
    /// Set when an active override decides.
    pub overridden_until: Option<Timestamp>,
    /// When to look again: the override's end or the schedule's next transition; `None` when
    /// nothing will change.
    pub next_change: Option<Timestamp>,
}

impl Schedule {
    /// The schedule's state at `now`, unless `ov` is an active override.
    pub fn effective(&self, ov: &Override, now: Timestamp) -> Effective {
        match ov {
            Override::Active { power_state, until } => Effective {
                power_state: *power_state,
                overridden_until: Some(*until),
                next_change: Some(*until),
            },
            Override::None | Override::Expired { .. } | Override::Invalid(_) => Effective {
                power_state: self.state_at(now),
                overridden_until: None,
                next_change: self.next_transition(now).map(|t| t.at),
            },
        }
    }
}
