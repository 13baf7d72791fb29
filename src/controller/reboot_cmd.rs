//! `ecs-power-controller reboot NAME`: asks for one reboot by setting a fresh token on an
//! EcsInstance, the way `kubectl rollout restart` stamps a Deployment.

use std::process::ExitCode;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use crate::api::{EcsInstance, RebootMode};

/// The field manager of the reboot patch (visible in `metadata.managedFields`).
pub const MANAGER: &str = "ecs-power-controller-reboot";

/// Ask for one reboot of the instance an EcsInstance manages.
#[derive(clap::Args, Debug)]
pub struct RebootArgs {
    /// The EcsInstance's name.
    pub name: String,

    /// Its namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

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
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Sets `spec.reboot = {token: <now, RFC 3339>, mode}` with a merge patch. The token is always
/// new: if the clock gives the current token again (two requests in one second), a
/// sub-second one is used, so every call asks for exactly one more reboot.
pub async fn request_reboot(
    client: &Client,
    namespace: &str,
    name: &str,
    mode: RebootMode,
    now: Timestamp,
) -> Result<RebootRequested, RebootError> {
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), namespace);
    // `get_opt` answers `None` for any 404, including "no such resource": discovery tells which.
    let Some(current) = api.get_opt(name).await? else {
        return Err(if served(client).await {
            RebootError::NotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }
        } else {
            RebootError::CrdMissing
        });
    };
    let previous_token = current.spec.reboot.as_ref().map(|r| r.token.clone());
    let token = fresh_token(now, previous_token.as_deref());
    let patch = json!({ "spec": { "reboot": { "token": token, "mode": mode } } });
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(RebootRequested {
            namespace: namespace.to_string(),
            name: name.to_string(),
            token,
            mode,
            previous_token,
        }),
        // Deleted between the read and the patch.
        Err(kube::Error::Api(status)) if status.code == 404 => Err(RebootError::NotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }),
        Err(err) => Err(err.into()),
    }
}

/// `now` to the second (`2026-11-22T10:00:00Z`), or to the nanosecond when that would repeat
/// the previous token.
fn fresh_token(now: Timestamp, previous: Option<&str>) -> String {
    let seconds = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let token = seconds.to_string();
    if previous == Some(token.as_str()) {
        now.to_string()
    } else {
        token
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
pub async fn run(args: RebootArgs) -> ExitCode {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("error: cannot reach Kubernetes: {err} (set KUBECONFIG)");
            return ExitCode::FAILURE;
        }
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let mode = if args.hard {
        RebootMode::Hard
    } else {
        RebootMode::Soft
    };
    match request_reboot(&client, &namespace, &args.name, mode, Timestamp::now()).await {
        Ok(done) => {
            let kind = match done.mode {
                RebootMode::Soft => "soft reboot",
                RebootMode::Hard => "hard reboot (power cycle)",
            };
            println!(
                "ecsinstance {}/{} {kind} requested (token {})",
                done.namespace, done.name, done.token
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
