//! `ecs-power-controller schedule preview (NAME | --file FILE) [--days 7] [-o table|json|yaml]`:
//! what a schedule will do, before (with `--file`, offline) or after it is applied.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};
use kube::{Api, CustomResourceExt};
use serde_json::Value;

use crate::api::{EcsPowerSchedule, EcsPowerScheduleSpec};
use crate::cli::output::{OutputError, OutputFormat, serialized};
use crate::schedule::{InvalidSchedule, Schedule, preview, report};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ScheduleCommand {
    /// Print the coming transitions of an EcsPowerSchedule in local time and UTC, with DST
    /// changes and exception days.
    Preview(PreviewArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct PreviewArgs {
    /// The EcsPowerSchedule's name: in the cluster, or (with --file) which one of the file's.
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,

    /// Read the schedule from this YAML file instead of the cluster (works offline).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,

    /// The namespace in the cluster (default: the kubeconfig context's).
    #[arg(short = 'n', long, conflicts_with = "file")]
    pub namespace: Option<String>,

    /// How many days ahead to show.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=366))]
    pub days: u16,

    /// Start here instead of now (RFC 3339, e.g. 2027-03-26T00:00:00Z to see a DST change).
    #[arg(long)]
    pub from: Option<Timestamp>,

    /// Output: the table for people, or the documented JSON/YAML document for pipelines.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PreviewError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path} holds no EcsPowerSchedule{}", .name.as_ref().map(|n| format!(" named {n}")).unwrap_or_default())]
    NotInFile { path: PathBuf, name: Option<String> },
    #[error("{path} holds several EcsPowerSchedules ({}): name the one to preview", .names.join(", "))]
    Several { path: PathBuf, names: Vec<String> },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("EcsPowerSchedule {name} is invalid:\n  {}", .source.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        name: String,
        source: InvalidSchedule,
    },
    #[error("cannot reach Kubernetes: {0} (set KUBECONFIG, or preview a file with --file)")]
    Connect(kube::Error),
    #[error(
        "EcsPowerSchedule {namespace}/{name} not found (list them with `kubectl get ecsps -n {namespace}`; the CRD comes with `kubectl apply -k deploy/base`)"
    )]
    NotFound { namespace: String, name: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Output(#[from] OutputError),
}

pub(crate) async fn run(command: ScheduleCommand) -> ExitCode {
    let ScheduleCommand::Preview(args) = command;
    match preview_text(&args, Timestamp::now()).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn preview_text(args: &PreviewArgs, now: Timestamp) -> Result<String, PreviewError> {
    let (name, spec) = match &args.file {
        Some(path) => from_file(path, args.name.as_deref())?,
        None => from_cluster(args).await?,
    };
    let schedule = Schedule::compile(&spec).map_err(|source| PreviewError::Invalid {
        name: name.clone(),
        source,
    })?;
    let from = args.from.unwrap_or(now);
    let until = from
        .checked_add(SignedDuration::from_hours(24 * i64::from(args.days)))
        .unwrap_or(Timestamp::MAX);
    match serialized(args.output, &report::preview(&schedule, &name, from, until)) {
        Some(text) => Ok(text?),
        None => Ok(preview::render(&schedule, &name, from, until)),
    }
}

/// The one EcsPowerSchedule of a YAML file (other kinds in it are skipped).
fn from_file(
    path: &Path,
    name: Option<&str>,
) -> Result<(String, EcsPowerScheduleSpec), PreviewError> {
    let text = std::fs::read_to_string(path).map_err(|source| PreviewError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| PreviewError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let name_of = |doc: &Value| doc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut schedules: Vec<Value> = documents
        .into_iter()
        .filter(|doc| doc["kind"] == "EcsPowerSchedule")
        .filter(|doc| name.is_none_or(|wanted| name_of(doc) == wanted))
        .collect();
    if schedules.len() > 1 {
        return Err(PreviewError::Several {
            path: path.to_path_buf(),
            names: schedules.iter().map(name_of).collect(),
        });
    }
    let Some(mut doc) = schedules.pop() else {
        return Err(PreviewError::NotInFile {
            path: path.to_path_buf(),
            name: name.map(str::to_string),
        });
    };
    // The API server refuses fields the CRD does not declare (kubectl's strict field
    // validation); serde would drop them, and a misspelt `exceptions` with them.
    if let Some((field, known)) = unknown_field(&doc["spec"], &spec_schema(), "spec") {
        return Err(PreviewError::Field {
            field,
            message: format!(
                "unknown field (expected one of {}); `kubectl apply` refuses it too",
                known.join(", ")
            ),
        });
    }
    let spec = serde_path_to_error::deserialize(doc["spec"].take()).map_err(|err| {
        let inner = err.path().to_string();
        PreviewError::Field {
            field: if inner == "." {
                "spec".to_string()
            } else {
                format!("spec.{inner}")
            },
            message: err.into_inner().to_string(),
        }
    })?;
    Ok((name_of(&doc), spec))
}

/// The CRD's schema of `spec`, as the API server validates it.
fn spec_schema() -> Value {
    let crd = serde_json::to_value(EcsPowerSchedule::crd()).unwrap_or_default();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .cloned()
        .unwrap_or_default()
}

/// The first field under `path` (holding `value`) that `schema` does not declare, and the
/// fields it declares there.
fn unknown_field(value: &Value, schema: &Value, path: &str) -> Option<(String, Vec<String>)> {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return None;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object()?;
            fields
                .iter()
                .find_map(|(name, inner)| match properties.get(name) {
                    Some(declared) => unknown_field(inner, declared, &format!("{path}.{name}")),
                    None => Some((
                        format!("{path}.{name}"),
                        properties.keys().cloned().collect(),
                    )),
                })
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            unknown_field(item, &schema["items"], &format!("{path}[{index}]"))
        }),
        _ => None,
    }
}

async fn from_cluster(args: &PreviewArgs) -> Result<(String, EcsPowerScheduleSpec), PreviewError> {
    let name = args.name.clone().unwrap_or_default();
    let client = crate::controller::k8s::client::infer()
        .await
        .map_err(PreviewError::Connect)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<EcsPowerSchedule> = Api::namespaced(client, &namespace);
    match api.get_opt(&name).await? {
        Some(obj) => Ok((name, obj.spec)),
        None => Err(PreviewError::NotFound { namespace, name }),
    }
}
