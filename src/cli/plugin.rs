//! `kubectl ecsi`: the operator's kubectl plugin. The same binary answers as `kubectl-ecsi`
//! (installed as a symlink or copy of that name on `PATH`), so kubectl's plugin mechanism runs
//! `kubectl ecsi reboot NAME [--hard]`, `kubectl ecsi pause|resume NAME`,
//! `kubectl ecsi status` and `kubectl ecsi plan` (the same as `ecs-power-controller plan`).
//!
//! kubectl hands a plugin no flags of its own: the cluster comes from `KUBECONFIG` (or
//! `~/.kube/config`) as for any kube client, the namespace from `-n` or the context.
//!
//! `status` is a fleet summary for the person on call: how many objects are Ready and, for the
//! rest, why (counts by the Ready condition's reason); which objects are stalled (they will not
//! get better without a person) with their message; which are backing off, with when the next
//! attempt may come; which are paused. The summary is a pure function of the objects and the
//! time, tested without a cluster.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::{EcsInstance, PAUSED_ANNOTATION};
use crate::cli::plan::{self, PlanArgs};
use crate::cli::reboot::{self, RebootArgs};

/// The executable name kubectl looks for on `PATH` for `kubectl ecsi`.
pub const PLUGIN_NAME: &str = "kubectl-ecsi";

/// The field manager of pause/resume patches (visible in `metadata.managedFields`).
pub const MANAGER: &str = "kubectl-ecsi";

/// Whether the process was started as the kubectl plugin (by its `argv[0]`).
pub fn invoked_as_plugin(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n == PLUGIN_NAME || n == format!("{PLUGIN_NAME}.exe"))
}

/// `kubectl ecsi`: operate EcsInstances (ecs.powerctl.io) from kubectl.
#[derive(Parser, Debug)]
#[command(name = "kubectl ecsi", version, about, long_about = None)]
pub struct PluginCli {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Ask for one reboot of an EcsInstance's VM (sets a fresh spec.reboot.token).
    Reboot(RebootArgs),
    /// Stop the controller from changing this instance (it keeps observing and reporting).
    Pause(Target),
    /// Let the controller act on this instance again.
    Resume(Target),
    /// Fleet summary: Ready counts by reason, stalled objects, objects in backoff, paused ones.
    Status(StatusArgs),
    /// Every coming power change of the EcsInstances, sorted by time, and why nothing will
    /// change for the others.
    Plan(PlanArgs),
}

pub use crate::cli::target::Target;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The namespace to summarize (default: the kubeconfig context's).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,

    /// Summarize every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Why a plugin command failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot reach Kubernetes: {0} (set KUBECONFIG)")]
    Connect(kube::Error),
    #[error(
        "EcsInstance {namespace}/{name} not found (list them with `kubectl get ecsinstances -n {namespace}`)"
    )]
    NotFound { namespace: String, name: String },
    #[error(
        "EcsInstances are not served by this cluster: a cluster admin installs the CRD first (`kubectl apply -k crds`)"
    )]
    CrdMissing,
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Entry point when started as `kubectl-ecsi`.
pub async fn main() -> ExitCode {
    let cli = PluginCli::parse();
    let result = match cli.command {
        PluginCommand::Reboot(args) => return reboot::run(args).await,
        PluginCommand::Plan(args) => return plan::run(args).await,
        PluginCommand::Pause(t) => set_paused(t, true).await,
        PluginCommand::Resume(t) => set_paused(t, false).await,
        PluginCommand::Status(args) => status(args).await,
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn client() -> Result<Client, PluginError> {
    crate::controller::k8s::client::infer()
        .await
        .map_err(PluginError::Connect)
}

fn not_found(e: kube::Error, namespace: &str, name: &str) -> PluginError {
    match e {
        kube::Error::Api(s) if s.code == 404 && s.message.contains("could not find") => {
            PluginError::CrdMissing
        }
        kube::Error::Api(s) if s.code == 404 => PluginError::NotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
        other => PluginError::Kube(other),
    }
}

/// Sets (or removes) the paused annotation with a merge patch.
async fn set_paused(t: Target, paused: bool) -> Result<String, PluginError> {
    let (client, namespace) = t.connect().await.map_err(PluginError::Connect)?;
    let api: Api<EcsInstance> = Api::namespaced(client, &namespace);
    let value = if paused { json!("true") } else { json!(null) };
    let patch = json!({"metadata": {"annotations": {PAUSED_ANNOTATION: value}}});
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(&t.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| not_found(e, &namespace, &t.name))?;
    Ok(if paused {
        format!(
            "ecsinstance {namespace}/{} paused: the controller observes and reports, and will not start, stop or reboot it\n",
            t.name
        )
    } else {
        format!("ecsinstance {namespace}/{} resumed\n", t.name)
    })
}

async fn status(args: StatusArgs) -> Result<String, PluginError> {
    let client = client().await?;
    let (api, scope): (Api<EcsInstance>, String) = if args.all_namespaces {
        (Api::all(client), "all namespaces".into())
    } else {
        let ns = args
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_string());
        (Api::namespaced(client, &ns), format!("namespace {ns}"))
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| not_found(e, "", ""))?;
    Ok(render(&summarize(&list.items, Timestamp::now()), &scope))
}

/// One line about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noted {
    pub object: String,
    pub detail: String,
}

/// What `kubectl ecsi status` says about a fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetSummary {
    pub total: usize,
    /// (Ready status, reason) → how many.
    pub by_ready_reason: BTreeMap<(String, String), usize>,
    pub stalled: Vec<Noted>,
    pub backing_off: Vec<Noted>,
    pub paused: Vec<String>,
}

fn condition<'a>(
    o: &'a EcsInstance,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Summarizes a fleet as of `now`.
pub fn summarize(objects: &[EcsInstance], now: Timestamp) -> FleetSummary {
    let mut s = FleetSummary {
        total: objects.len(),
        ..FleetSummary::default()
    };
    for o in objects {
        let id = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        let (ready, reason) = match condition(o, "Ready") {
            Some(c) => (c.status.clone(), c.reason.clone()),
            None => ("Unknown".to_string(), "NotYetObserved".to_string()),
        };
        *s.by_ready_reason.entry((ready, reason)).or_default() += 1;
        if let Some(c) = condition(o, "Stalled").filter(|c| c.status == "True") {
            s.stalled.push(Noted {
                object: id.clone(),
                detail: format!("{}: {}", c.reason, c.message),
            });
        }
        let retry = o.status.as_ref().map(|st| &st.retry);
        if let Some(r) = retry
            && let Some(next) = &r.next_attempt_after
            && next.0 > now
        {
            let wait =
                jiff::SignedDuration::from_secs((next.0.as_second() - now.as_second()).max(0));
            s.backing_off.push(Noted {
                object: id.clone(),
                detail: format!(
                    "failure {} ({}), next attempt after {} (in {})",
                    r.count,
                    r.last_error_code.as_deref().unwrap_or("no error code"),
                    next.0,
                    age(wait),
                ),
            });
        }
        if o.is_paused() {
            s.paused.push(id);
        }
    }
    s
}

/// `2m5s`, `3h`: how long until something, as kubectl prints ages.
fn age(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 600 && secs % 60 != 0 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if secs < 10_800 {
        format!("{}m", secs / 60)
    } else {
        format!("{}h", secs / 3600)
    }
}

/// The summary as printed.
pub fn render(s: &FleetSummary, scope: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "EcsInstances in {scope}: {}", s.total);
    if s.total == 0 {
        return out;
    }
    let width = s
        .by_ready_reason
        .keys()
        .map(|(_, r)| r.len())
        .max()
        .unwrap_or(0)
        .max("REASON".len());
    let _ = writeln!(out, "\nREADY    {:<width$}  COUNT", "REASON");
    for ((ready, reason), n) in &s.by_ready_reason {
        let _ = writeln!(out, "{ready:<8} {reason:<width$}  {n}");
    }
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{title} ({}):", lines.len());
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
    };
    let noted = |v: &[Noted]| -> Vec<String> {
        v.iter()
            .map(|n| format!("{}  {}", n.object, n.detail))
            .collect()
    };
    section("Stalled, needs a person", noted(&s.stalled));
    section("Backing off", noted(&s.backing_off));
    section("Paused", s.paused.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, ready: (&str, &str), extra: serde_json::Value) -> EcsInstance {
        let mut v = json!({
            "apiVersion": "ecs.powerctl.io/v1alpha1", "kind": "EcsInstance",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"instanceId": "i-1", "regionId": "cn-hangzhou", "powerState": "Running"},
            "status": {"conditions": [{"type": "Ready", "status": ready.0, "reason": ready.1,
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        });
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_summary_counts_reasons_and_names_who_needs_attention() {
        let now: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let fleet = [
            obj("web-1", ("True", "InstanceRunning"), json!({})),
            obj("web-2", ("True", "InstanceRunning"), json!({})),
            obj(
                "db-1",
                ("False", "InstanceLockedForSecurity"),
                json!({"status": {"conditions": [
                    {"type": "Ready", "status": "False", "reason": "InstanceLockedForSecurity",
                     "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Stalled", "status": "True", "reason": "InstanceLockedForSecurity",
                     "message": "ECS locked the instance (Security); ask Alibaba Cloud support",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
            ),
            obj(
                "batch-1",
                ("False", "Retrying"),
                json!({"status": {"retry": {"count": 3, "lastErrorCode": "Throttling",
                    "nextAttemptAfter": "2026-01-01T10:02:05Z"}}}),
            ),
            obj(
                "old-backoff",
                ("True", "InstanceRunning"),
                json!({"status": {"retry": {"count": 1, "nextAttemptAfter": "2026-01-01T09:00:00Z"}}}),
            ),
            obj(
                "maint-1",
                ("False", "Paused"),
                json!({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}}),
            ),
        ];
        let s = summarize(&fleet, now);
        assert_eq!(s.total, 6);
        assert_eq!(
            s.by_ready_reason[&("True".to_string(), "InstanceRunning".to_string())],
            3
        );
        assert_eq!(
            s.stalled,
            [Noted {
                object: "shop/db-1".into(),
                detail: "InstanceLockedForSecurity: ECS locked the instance (Security); ask Alibaba Cloud support".into(),
            }]
        );
        assert_eq!(
            s.backing_off.len(),
            1,
            "a past nextAttemptAfter is no backoff"
        );
        assert_eq!(
            s.backing_off[0].detail,
            "failure 3 (Throttling), next attempt after 2026-01-01T10:02:05Z (in 2m5s)"
        );
        assert_eq!(s.paused, ["shop/maint-1"]);
        let text = render(&s, "namespace shop");
        assert!(
            text.starts_with("EcsInstances in namespace shop: 6\n"),
            "{text}"
        );
        assert!(
            text.contains("True     InstanceRunning            3"),
            "{text}"
        );
        assert!(
            text.contains("Stalled, needs a person (1):\n  shop/db-1  InstanceLockedForSecurity"),
            "{text}"
        );
        assert!(text.contains("Paused (1):\n  shop/maint-1"), "{text}");
    }

    #[test]
    fn only_the_plugin_name_selects_the_plugin() {
        assert!(invoked_as_plugin(OsStr::new("/usr/local/bin/kubectl-ecsi")));
        assert!(invoked_as_plugin(OsStr::new("kubectl-ecsi")));
        assert!(!invoked_as_plugin(OsStr::new(
            "/usr/bin/ecs-power-controller"
        )));
        assert!(!invoked_as_plugin(OsStr::new("kubectl-ecsi-old")));
    }
}
