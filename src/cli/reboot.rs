//! `ecs-power-controller reboot NAME`: asks for one reboot by setting a fresh token on an
//! EcsInstance, the way `kubectl rollout restart` stamps a Deployment: the time of the request,
//! written only over the token it read (a resourceVersion precondition).

use std::process::ExitCode;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use crate::api::{EcsInstance, RebootMode};
use crate::cli::target::Target;
use crate::controller::reconcile::tokens;

/// The field manager of the reboot patch (visible in `metadata.managedFields`).
pub(crate) const MANAGER: &str = "ecs-power-controller-reboot";

/// Ask for one reboot of the instance an EcsInstance manages.
#[derive(clap::Args, Debug)]
pub struct RebootArgs {
    #[command(flatten)]
    pub target: Target,

    /// Power-cycle (ForceStop) instead of a clean OS reboot: unwritten data may be lost.
    #[arg(long)]
    pub hard: bool,
}

/// What was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebootRequested {
    pub namespace: String,
    pub name: String,
    pub token: String,
    pub mode: RebootMode,
    /// The token it replaced, if any.
    pub previous_token: Option<String>,
    /// The replaced token when the controller had not settled it yet: that request is
    /// superseded, and the one reboot after `token` satisfies both (a time token is satisfied
    /// by any later boot; see the README's "Asking for a reboot").
    pub superseded: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RebootError {
    #[error(
        "the EcsInstance CRD is not installed in this cluster: install it with `kubectl apply -k deploy/base` (or `ecs-power-controller crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    #[error(
        "EcsInstance {namespace}/{name} not found (list them with `kubectl get ecsinstances -n {namespace}`)"
    )]
    NotFound { namespace: String, name: String },
    #[error(
        "EcsInstance {namespace}/{name} kept changing while the reboot was being requested ({attempts} conflicts): try again"
    )]
    Contended {
        namespace: String,
        name: String,
        attempts: u32,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// How often a write that lost a race (409) is tried again from a fresh read.
const ATTEMPTS: u32 = 10;

/// Sets `spec.reboot = {token: <now, RFC 3339>, mode}` with a merge patch conditional on the
/// resourceVersion read, trying again from a fresh read when another writer came first (409).
/// So a request never silently replaces one it did not see: the token it replaced is the one
/// in [`RebootRequested::previous_token`], and, if the controller had not carried that one out
/// yet, in [`RebootRequested::superseded`].
///
/// The token is `now` to the nanosecond, and always later than a time token it replaces: a
/// reboot asked for at T is satisfied by any boot after T, so a superseded request is satisfied
/// by the reboot the new one gets.
pub async fn request_reboot(
    client: &Client,
    namespace: &str,
    name: &str,
    mode: RebootMode,
    now: Timestamp,
) -> Result<RebootRequested, RebootError> {
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), namespace);
    let not_found = || RebootError::NotFound {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    for _ in 0..ATTEMPTS {
        // `get_opt` answers `None` for any 404, including "no such resource": discovery tells
        // which.
        let Some(current) = api.get_opt(name).await? else {
            return Err(if served(client).await {
                not_found()
            } else {
                RebootError::CrdMissing
            });
        };
        let previous_token = current.spec.reboot.as_ref().map(|r| r.token.clone());
        let token = fresh_token(now, previous_token.as_deref());
        let patch = json!({
            "metadata": { "resourceVersion": current.metadata.resource_version },
            "spec": { "reboot": { "token": token, "mode": mode } },
        });
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                let status = current.status.unwrap_or_default();
                let superseded = previous_token
                    .clone()
                    .filter(|t| !tokens::settled_in(&status, t));
                return Ok(RebootRequested {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    token,
                    mode,
                    previous_token,
                    superseded,
                });
            }
            // Another writer came first: read again.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            // Deleted between the read and the patch.
            Err(kube::Error::Api(status)) if status.code == 404 => return Err(not_found()),
            Err(err) => return Err(err.into()),
        }
    }
    Err(RebootError::Contended {
        namespace: namespace.to_string(),
        name: name.to_string(),
        attempts: ATTEMPTS,
    })
}

/// `now` to the nanosecond, or just after the token it replaces when that is a time not
/// before `now` (another client's clock ahead of ours): tokens on one object only grow.
fn fresh_token(now: Timestamp, previous: Option<&str>) -> String {
    let after_previous = previous
        .and_then(tokens::time_token)
        .and_then(|t| t.checked_add(jiff::SignedDuration::from_nanos(1)).ok());
    match after_previous {
        Some(next) if next > now => next.to_string(),
        _ => now.to_string(),
    }
}

/// Whether the API server serves EcsInstances (discovery needs no RBAC beyond being logged in).
async fn served(client: &Client) -> bool {
    let group_version = format!("{}/{}", EcsInstance::group(&()), EcsInstance::version(&()));
    let plural = EcsInstance::plural(&());
    client
        .list_api_group_resources(&group_version)
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == plural))
}

/// The `reboot` subcommand.
pub(crate) async fn run(args: RebootArgs) -> ExitCode {
    let (client, namespace) = match args.target.connect().await {
        Ok(connected) => connected,
        Err(err) => {
            eprintln!("error: cannot reach Kubernetes: {err} (set KUBECONFIG)");
            return ExitCode::FAILURE;
        }
    };
    let mode = if args.hard {
        RebootMode::Hard
    } else {
        RebootMode::Soft
    };
    match request_reboot(
        &client,
        &namespace,
        &args.target.name,
        mode,
        Timestamp::now(),
    )
    .await
    {
        Ok(done) => {
            let kind = match done.mode {
                RebootMode::Soft => "soft reboot",
                RebootMode::Hard => "hard reboot (power cycle)",
            };
            println!(
                "ecsinstance {}/{} {kind} requested (token {})",
                done.namespace, done.name, done.token
            );
            if let Some(old) = &done.superseded {
                println!(
                    "note: it supersedes token {old}, which was still pending: one reboot after {} satisfies both requests",
                    done.token
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
