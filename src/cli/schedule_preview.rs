//! `ecs-power-controller schedule preview (NAME | --file FILE) [--days 7] [-o table|json|yaml]`:
//! what a schedule will do, before (with `--file`, offline) or after it is applied. The
//! EcsHolidayCalendars it uses come from the same file (offline) or from the schedule's
//! namespace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};
use kube::{Api, CustomResourceExt};
use serde_json::Value;

use crate::api::{
    EcsHolidayCalendar, EcsHolidayCalendarSpec, EcsPowerSchedule, EcsPowerScheduleSpec,
};
use crate::cli::manifests::{self, ManifestError};
use crate::cli::output::{OutputError, OutputFormat, print_outcome, serialized};
use crate::schedule::{Calendars, CompileError, InvalidSchedule, Schedule, preview, report};

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
    #[error(transparent)]
    Manifest(#[from] ManifestError),
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
    #[error(
        "EcsPowerSchedule {name} uses EcsHolidayCalendar {calendar} (spec.calendars[{index}]), which {missing}"
    )]
    CalendarNotFound {
        name: String,
        calendar: String,
        index: usize,
        /// Where it was looked for, and the fix.
        missing: String,
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
    print_outcome(preview_text(&args, Timestamp::now()).await)
}

/// A schedule to preview, with the calendars found beside it.
struct Loaded {
    name: String,
    spec: EcsPowerScheduleSpec,
    calendars: Vec<(String, EcsHolidayCalendarSpec)>,
    /// How a calendar not found is missing, and the fix (`is not in FILE: add …`).
    missing: String,
}

async fn preview_text(args: &PreviewArgs, now: Timestamp) -> Result<String, PreviewError> {
    let loaded = match &args.file {
        Some(path) => from_file(path, args.name.as_deref())?,
        None => from_cluster(args).await?,
    };
    let calendars: Calendars<'_> = loaded
        .calendars
        .iter()
        .map(|(name, spec)| (name.as_str(), spec))
        .collect();
    let name = loaded.name.clone();
    let schedule = Schedule::compile(&loaded.spec, &calendars).map_err(|error| match error {
        CompileError::CalendarNotFound {
            name: calendar,
            index,
        } => PreviewError::CalendarNotFound {
            name: name.clone(),
            calendar,
            index,
            missing: loaded.missing.clone(),
        },
        CompileError::Invalid(source) => PreviewError::Invalid {
            name: name.clone(),
            source,
        },
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

/// The one EcsPowerSchedule of a YAML file, with the EcsHolidayCalendars of the same file (other
/// kinds in it are skipped).
fn from_file(path: &Path, name: Option<&str>) -> Result<Loaded, PreviewError> {
    let documents = manifests::documents(path)?;
    let name_of = |doc: &Value| doc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let calendars = documents
        .iter()
        .filter(|doc| doc["kind"] == "EcsHolidayCalendar")
        .map(|doc| {
            let calendar = name_of(doc);
            let spec = typed_spec(
                doc["spec"].clone(),
                &format!("EcsHolidayCalendar {calendar} spec"),
            )?;
            Ok((calendar, spec))
        })
        .collect::<Result<Vec<_>, PreviewError>>()?;
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
    let spec = typed_spec(doc["spec"].take(), "spec")?;
    Ok(Loaded {
        name: name_of(&doc),
        spec,
        calendars,
        missing: format!(
            "is not in {}: add it to the file (a document of kind EcsHolidayCalendar), or remove it from spec.calendars",
            path.display()
        ),
    })
}

/// `value` as a spec, a problem named by its path under `at` (`spec.running[0].days`).
fn typed_spec<T: serde::de::DeserializeOwned>(value: Value, at: &str) -> Result<T, PreviewError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.path().to_string();
        PreviewError::Field {
            field: if inner == "." {
                at.to_string()
            } else {
                format!("{at}.{inner}")
            },
            message: err.into_inner().to_string(),
        }
    })
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

async fn from_cluster(args: &PreviewArgs) -> Result<Loaded, PreviewError> {
    let name = args.name.clone().unwrap_or_default();
    let client = crate::controller::k8s::client::infer()
        .await
        .map_err(PreviewError::Connect)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<EcsPowerSchedule> = Api::namespaced(client.clone(), &namespace);
    let Some(obj) = api.get_opt(&name).await? else {
        return Err(PreviewError::NotFound { namespace, name });
    };
    let calendar_api: Api<EcsHolidayCalendar> = Api::namespaced(client, &namespace);
    let mut calendars = Vec::new();
    for reference in &obj.spec.calendars {
        if let Some(calendar) = calendar_api.get_opt(&reference.name).await? {
            calendars.push((reference.name.clone(), calendar.spec));
        }
    }
    Ok(Loaded {
        name,
        spec: obj.spec,
        calendars,
        missing: format!(
            "does not exist in namespace {namespace} (list them with `kubectl get ecshc -n {namespace}`): create it, or remove it from spec.calendars"
        ),
    })
}
