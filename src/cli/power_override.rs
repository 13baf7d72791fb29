//! `ecs-power-controller override NAME [-n NS] --state Running|Stopped --for 3h` (or `--clear`):
//! holds one EcsInstance that follows a schedule in a power state for a while, through the
//! override annotations (see [`crate::schedule::overrides`]), without touching the spec Git owns.

use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::api::{EcsInstance, PowerState};
use crate::cli::target::Target;
use crate::schedule::overrides::{MAX_AHEAD, OVERRIDE_POWER_STATE, OVERRIDE_UNTIL};

/// The field manager of the override patch (visible in `metadata.managedFields`).
pub(crate) const MANAGER: &str = "ecs-power-controller-override";

/// Hold an EcsInstance that follows a schedule in a power state for a while, or end the hold.
#[derive(clap::Args, Debug)]
pub(crate) struct OverrideArgs {
    #[command(flatten)]
    pub target: Target,

    /// The power state to hold it in.
    #[arg(
        long,
        value_enum,
        required_unless_present = "clear",
        requires = "duration"
    )]
    pub state: Option<StateArg>,

    /// For how long, from now (e.g. 90m, 3h, 2d; at most 7 days).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_span, requires = "state")]
    pub duration: Option<SignedDuration>,

    /// End the override now: the schedule decides again.
    #[arg(long, conflicts_with_all = ["state", "duration"])]
    pub clear: bool,
}

/// `--state`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "PascalCase")]
pub enum StateArg {
    Running,
    Stopped,
}

impl From<StateArg> for PowerState {
    fn from(arg: StateArg) -> Self {
        match arg {
            StateArg::Running => PowerState::Running,
            StateArg::Stopped => PowerState::Stopped,
        }
    }
}

/// `3h`, `90m`, `2d`, `1h30m` (jiff's friendly format) or plain seconds.
pub(crate) fn parse_span(text: &str) -> Result<SignedDuration, String> {
    let text = text.trim();
    let duration = match text.parse::<SignedDuration>() {
        Ok(d) => d,
        // Days: the friendly format counts them as calendar units, not 24 h.
        Err(_) => {
            let span: jiff::Span = text
                .parse()
                .map_err(|e| format!("{text:?} is not a duration (e.g. 90m, 3h, 2d): {e}"))?;
            span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .map_err(|e| format!("{text:?}: {e}"))?
        }
    };
    Ok(duration)
}

/// What to do with the override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideChange {
    /// Hold `power_state` for `duration` from now.
    Hold {
        power_state: PowerState,
        duration: SignedDuration,
    },
    /// Remove the override annotations.
    Clear,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideWritten {
    pub namespace: String,
    pub name: String,
    /// `None` when cleared.
    pub hold: Option<(PowerState, Timestamp)>,
}

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error(
        "--for {0}: an override lasts more than nothing and at most 7 days (168h); for longer, change the schedule"
    )]
    Duration(String),
    #[error(
        "EcsInstance {namespace}/{name} not found (list them with `kubectl get ecsinstances -n {namespace}`; the CRDs come with `kubectl apply -k deploy/base`)"
    )]
    NotFound { namespace: String, name: String },
    #[error(
        "EcsInstance {namespace}/{name} has spec.powerState, not spec.scheduleRef: overrides hold instances that follow a schedule. Change spec.powerState instead."
    )]
    NotScheduled { namespace: String, name: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The annotations patch for `change` at `now`, and the hold it sets. Refuses a duration that
/// is not positive or reaches more than 7 days ahead (the controller would ignore it).
pub(crate) fn annotations_patch(
    change: OverrideChange,
    now: Timestamp,
) -> Result<(Value, Option<(PowerState, Timestamp)>), OverrideError> {
    match change {
        OverrideChange::Clear => Ok((
            json!({"metadata": {"annotations": {OVERRIDE_POWER_STATE: null, OVERRIDE_UNTIL: null}}}),
            None,
        )),
        OverrideChange::Hold {
            power_state,
            duration,
        } => {
            let refused = || OverrideError::Duration(format!("{duration:#}"));
            if duration <= SignedDuration::ZERO || duration > MAX_AHEAD {
                return Err(refused());
            }
            // To the second: an annotation a person reads.
            let until = now
                .checked_add(duration)
                .ok()
                .and_then(|t| Timestamp::from_second(t.as_second()).ok())
                .ok_or_else(refused)?;
            Ok((
                json!({"metadata": {"annotations": {
                    OVERRIDE_POWER_STATE: power_state.as_str(),
                    OVERRIDE_UNTIL: until.to_string(),
                }}}),
                Some((power_state, until)),
            ))
        }
    }
}

/// Writes (or clears) the override annotations of `namespace/name` with a merge patch.
pub async fn request_override(
    client: &Client,
    namespace: &str,
    name: &str,
    change: OverrideChange,
    now: Timestamp,
) -> Result<OverrideWritten, OverrideError> {
    let (patch, hold) = annotations_patch(change, now)?;
    let not_found = || OverrideError::NotFound {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), namespace);
    let current = api.get_opt(name).await?.ok_or_else(not_found)?;
    if current.spec.schedule_ref.is_none() && hold.is_some() {
        return Err(OverrideError::NotScheduled {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(OverrideWritten {
            namespace: namespace.to_string(),
            name: name.to_string(),
            hold,
        }),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(not_found()),
        Err(err) => Err(err.into()),
    }
}

/// The `override` subcommand.
pub(crate) async fn run(args: OverrideArgs) -> ExitCode {
    let change = match (args.clear, args.state, args.duration) {
        (true, _, _) => OverrideChange::Clear,
        (false, Some(state), Some(duration)) => OverrideChange::Hold {
            power_state: state.into(),
            duration,
        },
        // clap requires --state with --for (and one of them or --clear).
        _ => {
            eprintln!("error: give --state and --for, or --clear");
            return ExitCode::FAILURE;
        }
    };
    // A duration out of bounds is refused before anything is asked of the cluster.
    if let Err(err) = annotations_patch(change, Timestamp::now()) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let (client, namespace) = match args.target.connect().await {
        Ok(connected) => connected,
        Err(err) => {
            eprintln!("error: cannot reach Kubernetes: {err} (set KUBECONFIG)");
            return ExitCode::FAILURE;
        }
    };
    let name = &args.target.name;
    match request_override(&client, &namespace, name, change, Timestamp::now()).await {
        Ok(OverrideWritten {
            namespace,
            name,
            hold: Some((state, until)),
        }) => {
            println!(
                "ecsinstance {namespace}/{name} held {} until {until}; then its schedule decides again",
                state.as_str()
            );
            ExitCode::SUCCESS
        }
        Ok(OverrideWritten {
            namespace, name, ..
        }) => {
            println!("ecsinstance {namespace}/{name}: override cleared; its schedule decides");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-27T12:30:45.5Z".parse().unwrap()
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_span("3h").unwrap(), SignedDuration::from_hours(3));
        assert_eq!(parse_span("90m").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse_span("2d").unwrap(), SignedDuration::from_hours(48));
        assert_eq!(parse_span("1h30m").unwrap(), SignedDuration::from_mins(90));
        assert!(parse_span("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn a_hold_writes_both_annotations_with_an_end_to_the_second() {
        let hold = OverrideChange::Hold {
            power_state: PowerState::Running,
            duration: SignedDuration::from_hours(3),
        };
        let (patch, written) = annotations_patch(hold, now()).unwrap();
        let annotations = &patch["metadata"]["annotations"];
        assert_eq!(annotations[OVERRIDE_POWER_STATE], "Running");
        assert_eq!(annotations[OVERRIDE_UNTIL], "2026-11-27T15:30:45Z");
        assert_eq!(
            written,
            Some((PowerState::Running, "2026-11-27T15:30:45Z".parse().unwrap()))
        );
        // What it writes, the controller reads as an active override.
        let read = crate::schedule::Override::read(
            Some(
                &[
                    (OVERRIDE_POWER_STATE.to_string(), "Running".to_string()),
                    (
                        OVERRIDE_UNTIL.to_string(),
                        "2026-11-27T15:30:45Z".to_string(),
                    ),
                ]
                .into(),
            ),
            now(),
        );
        assert!(matches!(read, crate::schedule::Override::Active { .. }));
    }

    #[test]
    fn more_than_seven_days_or_nothing_is_refused() {
        for duration in [
            SignedDuration::from_hours(7 * 24 + 1),
            SignedDuration::ZERO,
            SignedDuration::from_hours(-1),
        ] {
            let hold = OverrideChange::Hold {
                power_state: PowerState::Stopped,
                duration,
            };
            let err = annotations_patch(hold, now()).unwrap_err();
            assert!(err.to_string().contains("at most 7 days"), "{err}");
        }
        let week = OverrideChange::Hold {
            power_state: PowerState::Stopped,
            duration: MAX_AHEAD,
        };
        assert!(annotations_patch(week, now()).is_ok());
    }

    #[test]
    fn clearing_removes_both_annotations() {
        let (patch, hold) = annotations_patch(OverrideChange::Clear, now()).unwrap();
        assert_eq!(hold, None);
        assert!(patch["metadata"]["annotations"][OVERRIDE_POWER_STATE].is_null());
        assert!(patch["metadata"]["annotations"][OVERRIDE_UNTIL].is_null());
    }
}
