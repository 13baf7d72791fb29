//! `ecs-power-controller plan [-n NAMESPACE | -A | -f FILE] [--for 24h] [-o table|json|yaml]`,
//! also `kubectl ecsi plan`: what will happen to the fleet, from the cluster's objects or,
//! offline, from manifests. The plan itself is the pure `crate::plan`; this module fetches the
//! objects and prints the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule};
use crate::cli::manifests::{self, ManifestError};
use crate::cli::output::{OutputError, OutputFormat, print_outcome, serialized};
use crate::plan::{self, Fleet};

/// The longest range a plan covers (as `schedule preview --days`).
const MAX_RANGE: SignedDuration = SignedDuration::from_hours(366 * 24);

/// Every coming power change of the EcsInstances, and why, sorted by time.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The namespace (default: the kubeconfig context's; with --file: every object in it).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,

    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// How far ahead (e.g. 12h, 24h, 7d; at most 366 days).
    #[arg(long = "for", value_name = "DURATION", default_value = "24h", value_parser = parse_range)]
    pub range: SignedDuration,

    /// Output: a table for people, or the documented JSON/YAML document for pipelines.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Read EcsInstances, EcsPowerSchedules and EcsHolidayCalendars from these YAML files (or every `*.yaml` of a
    /// directory) instead of the cluster (works offline). Objects without a namespace are in
    /// `default`.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Vec<PathBuf>,

    /// Plan from this instant instead of now (RFC 3339, e.g. 2026-12-24T00:00:00Z).
    #[arg(long)]
    pub from: Option<Timestamp>,
}

/// `--for`: a positive duration, at most [`MAX_RANGE`].
fn parse_range(text: &str) -> Result<SignedDuration, String> {
    let range = crate::cli::power_override::parse_span(text)?;
    if !range.is_positive() {
        return Err(format!(
            "{text:?} is not a range ahead: give a positive duration, e.g. --for 24h"
        ));
    }
    if range > MAX_RANGE {
        return Err(format!(
            "{text:?} is more than 366 days: plan at most --for 366d"
        ));
    }
    Ok(range)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {kind} {name}: {field}: {message}")]
    Field {
        path: PathBuf,
        kind: String,
        name: String,
        field: String,
        message: String,
    },
    #[error(
        "--file reads objects from files, not from a cluster: drop -A (use -n NAMESPACE to keep one namespace of the files)"
    )]
    AllNamespacesWithFile,
    #[error("cannot reach Kubernetes: {0} (set KUBECONFIG, or plan from manifests with --file)")]
    Connect(kube::Error),
    #[error(
        "{0} are not served by this cluster: a cluster admin installs the CRDs first (`kubectl apply -k crds`)"
    )]
    CrdMissing(&'static str),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Output(#[from] OutputError),
}

pub(crate) async fn run(args: PlanArgs) -> ExitCode {
    print_outcome(plan_text(&args, Timestamp::now()).await)
}

async fn plan_text(args: &PlanArgs, now: Timestamp) -> Result<String, PlanError> {
    let (objects, scope) = if args.file.is_empty() {
        from_cluster(args).await?
    } else {
        from_files(args)?
    };
    // Now to the second: the document's `from` is read by people and pipelines alike.
    let from = args
        .from
        .unwrap_or_else(|| now.round(jiff::Unit::Second).unwrap_or(now));
    let until = from.checked_add(args.range).unwrap_or(Timestamp::MAX);
    let report = plan::plan(
        Fleet {
            instances: &objects.instances,
            schedules: &objects.schedules,
            calendars: &objects.calendars,
        },
        from,
        until,
    );
    match serialized(args.output, &report) {
        Some(text) => Ok(text?),
        None => Ok(plan::render(&report, &scope)),
    }
}

/// The objects a plan is made of, fetched.
#[derive(Default)]
struct Objects {
    instances: Vec<EcsInstance>,
    schedules: Vec<EcsPowerSchedule>,
    calendars: Vec<EcsHolidayCalendar>,
}

async fn from_cluster(args: &PlanArgs) -> Result<(Objects, String), PlanError> {
    let client = crate::controller::k8s::client::infer()
        .await
        .map_err(PlanError::Connect)?;
    let namespace = (!args.all_namespaces).then(|| {
        args.namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string())
    });
    let scope = match &namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_string(),
    };
    let objects = Objects {
        instances: list(&client, namespace.as_deref(), "EcsInstances").await?,
        schedules: list(&client, namespace.as_deref(), "EcsPowerSchedules").await?,
        calendars: list(&client, namespace.as_deref(), "EcsHolidayCalendars").await?,
    };
    Ok((objects, scope))
}

/// Every object of a kind in `namespace` (all of them for `None`).
async fn list<K>(
    client: &Client,
    namespace: Option<&str>,
    kinds: &'static str,
) -> Result<Vec<K>, PlanError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(PlanError::CrdMissing(kinds)),
        Err(e) => Err(PlanError::Kube(e)),
    }
}

fn from_files(args: &PlanArgs) -> Result<(Objects, String), PlanError> {
    if args.all_namespaces {
        return Err(PlanError::AllNamespacesWithFile);
    }
    let mut objects = Objects::default();
    let mut names = Vec::new();
    for path in &args.file {
        for file in yaml_files(path)? {
            read_file(&file, args.namespace.as_deref(), &mut objects)?;
        }
        names.push(path.display().to_string());
    }
    let scope = match &args.namespace {
        Some(ns) => format!("namespace {ns} of {}", names.join(", ")),
        None => names.join(", "),
    };
    Ok((objects, scope))
}

/// `path` itself, or the YAML files of a directory.
fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, PlanError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    manifests::yaml_files(path).map_err(|source| {
        PlanError::Manifest(ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// The EcsInstances, EcsPowerSchedules and EcsHolidayCalendars of one file (in `namespace`, if
/// given), other kinds skipped.
fn read_file(path: &Path, namespace: Option<&str>, objects: &mut Objects) -> Result<(), PlanError> {
    let documents = manifests::documents(path)?;
    for mut doc in documents {
        let Some(kind) = doc["kind"].as_str().map(str::to_string) else {
            continue;
        };
        if !matches!(
            kind.as_str(),
            "EcsInstance" | "EcsPowerSchedule" | "EcsHolidayCalendar"
        ) {
            continue;
        }
        if doc["metadata"]["namespace"].as_str().is_none() && doc["metadata"].is_object() {
            doc["metadata"]["namespace"] = Value::from("default");
        }
        if namespace.is_some_and(|ns| doc["metadata"]["namespace"] != ns) {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
        let field_error = |err: serde_path_to_error::Error<serde_json::Error>| {
            let inner = err.path().to_string();
            PlanError::Field {
                path: path.to_path_buf(),
                kind: kind.clone(),
                name: name.clone(),
                field: if inner == "." { String::new() } else { inner },
                message: err.into_inner().to_string(),
            }
        };
        match kind.as_str() {
            "EcsInstance" => objects
                .instances
                .push(serde_path_to_error::deserialize(doc).map_err(field_error)?),
            "EcsPowerSchedule" => objects
                .schedules
                .push(serde_path_to_error::deserialize(doc).map_err(field_error)?),
            _ => objects
                .calendars
                .push(serde_path_to_error::deserialize(doc).map_err(field_error)?),
        }
    }
    Ok(())
}
