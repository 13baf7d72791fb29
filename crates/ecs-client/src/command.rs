//! The `ecs` command (`ecs-power-controller ecs …`): the operator's direct line to the ECS API, and the quickest
//! check that credentials, endpoint and permissions work.
//!
//! Success exits 0 (a `DryRunOperation` answer to `--dry-run` is success: "dry run passed").
//! Failure exits 1 with exactly one line on stderr: `CODE: message (RequestId …)`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::EcsApi;
use crate::client::{EcsClient, EcsClientConfig};
use crate::credentials::{CredentialsProvider, DefaultCredentialsChain};
use crate::endpoint::EndpointConfig;
use crate::error::EcsError;
use crate::ratelimit::RateLimits;
use crate::retry::RetryPolicy;
use crate::sign::SignatureVersion;
use crate::types::{Instance, PowerRequest, RebootOptions, StartOptions, StopOptions, StoppedMode};

/// Describe, start, stop or reboot instances directly (checks credentials and connectivity).
#[derive(clap::Args, Debug)]
pub struct EcsArgs {
    #[command(subcommand)]
    pub command: EcsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum EcsCommand {
    /// Show instances: status, last start, stopped mode, locks.
    Describe(DescribeArgs),
    /// StartInstance.
    Start(StartArgs),
    /// StopInstance.
    Stop(StopArgs),
    /// RebootInstance.
    Reboot(RebootArgs),
}

/// How to reach ECS: shared by every command that talks to it (`ecs …` and `run`).
#[derive(clap::Args, Clone, Debug)]
pub struct EcsClientArgs {
    /// Send every request to this URL instead of the regional endpoint
    /// (e.g. http://127.0.0.1:8080 for the simulator).
    #[arg(long = "ecs-endpoint", env = "ECS_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    /// Use the VPC endpoint `ecs-vpc.<region>.aliyuncs.com` (no internet access needed).
    #[arg(long = "ecs-vpc-endpoint", env = "ECS_VPC_ENDPOINT")]
    pub vpc_endpoint: bool,

    /// Request signature: v3 (ACS3-HMAC-SHA256, the SDKs' default) or v1 (legacy HMAC-SHA1).
    #[arg(long, value_parser = signature_versions(), default_value = "v3", env = "ECS_SIGNATURE_VERSION")]
    pub signature_version: SignatureVersion,

    /// Client-side limit of calls per second, per ECS action (0 = unlimited).
    #[arg(
        long = "ecs-qps",
        visible_alias = "qps",
        default_value_t = 5.0,
        env = "ECS_QPS",
        value_name = "QPS"
    )]
    pub qps: f64,

    /// Per-action limit overriding --ecs-qps, e.g. DescribeInstances=10 (repeatable).
    #[arg(long = "ecs-action-qps", value_name = "ACTION=QPS", value_parser = parse_action_qps)]
    pub action_qps: Vec<(String, f64)>,

    /// TCP and TLS set-up timeout (e.g. 5s, 500ms).
    #[arg(long = "ecs-connect-timeout", default_value = "5s", value_parser = parse_duration, env = "ECS_CONNECT_TIMEOUT")]
    pub connect_timeout: Duration,

    /// Whole-request timeout.
    #[arg(long = "ecs-request-timeout", default_value = "15s", value_parser = parse_duration, env = "ECS_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,

    /// Tries per call, including the first (retries only where repeating is safe).
    #[arg(
        long = "ecs-max-attempts",
        default_value_t = 4,
        env = "ECS_MAX_ATTEMPTS"
    )]
    pub max_attempts: u32,
}

impl EcsClientArgs {
    pub fn config(&self) -> Result<EcsClientConfig, String> {
        let endpoint = match (&self.endpoint, self.vpc_endpoint) {
            (Some(url), _) => EndpointConfig::fixed(url)?,
            (None, true) => EndpointConfig::Vpc,
            (None, false) => EndpointConfig::Public,
        };
        if !(self.qps >= 0.0 && self.qps.is_finite()) {
            return Err(format!(
                "--ecs-qps {} must be a number >= 0 (0 means unlimited)",
                self.qps
            ));
        }
        Ok(EcsClientConfig {
            endpoint,
            signature_version: self.signature_version,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                ..RetryPolicy::default()
            },
            rate_limits: RateLimits {
                default_qps: self.qps,
                per_action: self.action_qps.iter().cloned().collect::<BTreeMap<_, _>>(),
            },
        })
    }

    /// A client with these settings and the given credentials.
    pub fn build(&self, credentials: Arc<dyn CredentialsProvider>) -> Result<EcsClient, EcsError> {
        let config = self.config().map_err(EcsError::InvalidInput)?;
        EcsClient::new(config, credentials)
    }
}

/// A flag that takes one of a library enum's values by name. The library types derive no clap
/// traits (they are not the command line's); their flags list them here.
fn one_of<T: Copy + Send + Sync + 'static>(
    values: &'static [(T, &'static str, &'static str)],
) -> impl TypedValueParser<Value = T> {
    let names = values
        .iter()
        .map(|(_, name, help)| PossibleValue::new(*name).help(*help));
    PossibleValuesParser::new(names).map(move |chosen| {
        values
            .iter()
            .find(|(_, name, _)| *name == chosen)
            .map(|(value, _, _)| *value)
            // The parser accepted only these names; the first is the fallback in name only.
            .unwrap_or(values[0].0)
    })
}

fn signature_versions() -> impl TypedValueParser<Value = SignatureVersion> {
    one_of(&[
        (
            SignatureVersion::V3,
            "v3",
            "ACS3-HMAC-SHA256, header-based (the default of the official SDKs)",
        ),
        (
            SignatureVersion::V1,
            "v1",
            "Legacy RPC HMAC-SHA1, parameter-based",
        ),
    ])
}

fn stopped_modes() -> impl TypedValueParser<Value = StoppedMode> {
    one_of(&[
        (
            StoppedMode::KeepCharging,
            "KeepCharging",
            "Keep the instance's resources and keep paying for them (the ECS default)",
        ),
        (
            StoppedMode::StopCharging,
            "StopCharging",
            "Release vCPU and memory while stopped (VPC pay-as-you-go); a later start may find no stock",
        ),
    ])
}

/// The region a command acts in.
#[derive(clap::Args, Debug)]
pub struct RegionArg {
    /// Region id, e.g. cn-hangzhou.
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID")]
    pub region: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    /// One JSON object per line per instance.
    Json,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub region: RegionArg,
    /// Instance id (repeatable).
    #[arg(long = "instance-id", required = true, value_name = "ID")]
    pub instance_ids: Vec<String>,
    /// How to print the instances: a table for people, JSON lines for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub client: EcsClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub region: RegionArg,
    /// The instance to act on (`i-...`).
    #[arg(long = "instance-id", value_name = "ID")]
    pub instance_id: String,
    /// Recover local disks on start (D1, I1, I2 families only).
    #[arg(long)]
    pub init_local_disk: bool,
    /// Only check the request; nothing changes.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: EcsClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    #[command(flatten)]
    pub region: RegionArg,
    /// The instance to act on (`i-...`).
    #[arg(long = "instance-id", value_name = "ID")]
    pub instance_id: String,
    /// Power off without waiting for the guest to shut down (unwritten data is lost).
    #[arg(long)]
    pub force: bool,
    /// Whether a stopped instance keeps its vCPUs and memory (and is charged for them).
    /// Default: KeepCharging, as ECS.
    #[arg(long, value_parser = stopped_modes())]
    pub stopped_mode: Option<StoppedMode>,
    /// Only check the request (permissions, state, quota); nothing changes.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: EcsClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct RebootArgs {
    #[command(flatten)]
    pub region: RegionArg,
    /// The instance to act on (`i-...`).
    #[arg(long = "instance-id", value_name = "ID")]
    pub instance_id: String,
    /// Power-cycle without waiting for the guest (unwritten data is lost).
    #[arg(long)]
    pub force: bool,
    /// Only check the request (permissions, state, quota); nothing changes.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: EcsClientArgs,
}

pub async fn run(args: EcsArgs) -> ExitCode {
    match execute(args).await {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The one line an operator reads: `CODE: message (RequestId …)`.
pub fn error_line(error: &EcsError) -> String {
    let text = match error {
        EcsError::Api(api) => api.to_string(),
        other => format!("{}: {other}", other.code()),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn client(args: &EcsClientArgs) -> Result<EcsClient, EcsError> {
    args.build(Arc::new(DefaultCredentialsChain::from_env()))
}

/// Runs a command; the lines to print on success.
async fn execute(args: EcsArgs) -> Result<Vec<String>, EcsError> {
    match args.command {
        EcsCommand::Describe(args) => {
            let client = client(&args.client)?;
            let region = &args.region.region;
            let found = client
                .describe_instances(region, &args.instance_ids)
                .await?;
            let missing: Vec<&str> = args
                .instance_ids
                .iter()
                .filter(|id| !found.iter().any(|i| &i.instance_id == *id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(EcsError::Api(crate::ApiError {
                    code: "InvalidInstanceId.NotFound".into(),
                    message: format!("no instance {} in {region}", missing.join(", ")),
                    // ECS answered without them; there is no failed request to name.
                    request_id: "-".into(),
                    http_status: 404,
                    recommend: None,
                    retry_after: None,
                }));
            }
            Ok(match args.output {
                OutputFormat::Json => found.iter().map(|i| json_line(i).to_string()).collect(),
                OutputFormat::Table => table(&found),
            })
        }
        EcsCommand::Start(args) => {
            let options = StartOptions {
                init_local_disk: args.init_local_disk,
                dry_run: args.dry_run,
            };
            let request = PowerRequest::Start(options);
            power(&args.client, &args.region, &args.instance_id, request).await
        }
        EcsCommand::Stop(args) => {
            let options = StopOptions {
                force: args.force,
                stopped_mode: args.stopped_mode,
                dry_run: args.dry_run,
            };
            let request = PowerRequest::Stop(options);
            power(&args.client, &args.region, &args.instance_id, request).await
        }
        EcsCommand::Reboot(args) => {
            let options = RebootOptions {
                force: args.force,
                dry_run: args.dry_run,
            };
            let request = PowerRequest::Reboot(options);
            power(&args.client, &args.region, &args.instance_id, request).await
        }
    }
}

/// Start, stop or reboot one instance; the line to print.
async fn power(
    client_args: &EcsClientArgs,
    region: &RegionArg,
    instance_id: &str,
    request: PowerRequest,
) -> Result<Vec<String>, EcsError> {
    let accepted = client(client_args)?
        .power(&region.region, instance_id, request)
        .await?;
    let action = request.action().single();
    let request_id = &accepted.request_id;
    Ok(vec![if accepted.dry_run {
        format!(
            "dry run passed: {action} would be accepted for {instance_id} (RequestId {request_id})"
        )
    } else {
        format!("{action} accepted for {instance_id} (RequestId {request_id})")
    }])
}

/// `describe --output json`: one object per instance, in ECS's own field names.
pub fn json_line(instance: &Instance) -> serde_json::Value {
    serde_json::json!({
        "InstanceId": instance.instance_id,
        "RegionId": instance.region_id,
        "Status": instance.status.as_str(),
        "StartTime": instance.start_time,
        "StoppedMode": instance.stopped_mode,
        "InstanceTypeFamily": instance.instance_type_family,
        "InstanceChargeType": instance.instance_charge_type,
        "ExpiredTime": instance.expired_time,
        "LockReasons": instance.lock_reasons(),
    })
}

fn table(instances: &[Instance]) -> Vec<String> {
    let rows: Vec<[String; 6]> = instances
        .iter()
        .map(|i| {
            let locks = i.lock_reasons().join(",");
            [
                i.instance_id.clone(),
                i.status.to_string(),
                i.start_time.clone().unwrap_or_else(|| "-".into()),
                i.stopped_mode.clone().unwrap_or_else(|| "-".into()),
                i.instance_type_family.clone().unwrap_or_else(|| "-".into()),
                if locks.is_empty() { "-".into() } else { locks },
            ]
        })
        .collect();
    let header = [
        "INSTANCE-ID",
        "STATUS",
        "START-TIME",
        "STOPPED-MODE",
        "FAMILY",
        "LOCKS",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(rows.iter())
        .map(|row| {
            row.iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect()
}

/// The value parser of every duration flag (the controller's, `demo`'s and `bench`'s): jiff's
/// friendly format (`500ms`, `5s`, `2m`, `1h`, `1h 30m`, `1.5s`, or ISO 8601 `PT5S`), or a bare
/// number of seconds as before. jiff rather than humantime: it is already in the tree, keeps
/// fractions (`1.5s`), and refuses days and longer, whose length depends on the calendar. clap
/// puts the flag's name before the message.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let negative = || format!("{text:?} is negative: give a duration such as 5s");
    match text.parse::<f64>() {
        Ok(seconds) => Duration::try_from_secs_f64(seconds).map_err(|_| negative()),
        Err(_) => text
            .parse::<jiff::SignedDuration>()
            .map_err(|e| format!("{text:?} is not a duration (e.g. 500ms, 5s, 2m, 1h): {e}"))
            .and_then(|d| Duration::try_from(d).map_err(|_| negative())),
    }
}

/// `Action=QPS` for `--ecs-action-qps`.
pub fn parse_action_qps(text: &str) -> Result<(String, f64), String> {
    let (action, qps) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ACTION=QPS, e.g. DescribeInstances=10"))?;
    let qps: f64 = qps
        .trim()
        .parse()
        .ok()
        .filter(|q: &f64| *q >= 0.0 && q.is_finite())
        .ok_or_else(|| format!("{text:?}: QPS must be a number >= 0"))?;
    Ok((action.trim().to_string(), qps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{InstanceStatus, OperationLock};
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Harness {
        #[command(subcommand)]
        command: EcsCommand,
    }

    #[test]
    fn flags_parse_into_a_client_config() {
        let parsed = Harness::try_parse_from([
            "x",
            "stop",
            "--region",
            "cn-hangzhou",
            "--instance-id",
            "i-1",
            "--force",
            "--stopped-mode",
            "StopCharging",
            "--ecs-endpoint",
            "http://127.0.0.1:9",
            "--signature-version",
            "v1",
            "--ecs-qps",
            "2",
            "--ecs-action-qps",
            "StopInstance=0.5",
            "--ecs-request-timeout",
            "750ms",
        ])
        .unwrap();
        let EcsCommand::Stop(stop) = parsed.command else {
            panic!("parsed {parsed:?}")
        };
        assert!(stop.force);
        assert_eq!(stop.stopped_mode, Some(StoppedMode::StopCharging));
        let config = stop.client.config().unwrap();
        assert_eq!(config.signature_version, SignatureVersion::V1);
        assert_eq!(config.request_timeout, Duration::from_millis(750));
        assert_eq!(config.rate_limits.qps_for("StopInstance"), 0.5);
        assert_eq!(config.rate_limits.qps_for("StartInstance"), 2.0);
        assert!(matches!(config.endpoint, EndpointConfig::Fixed(_)));
    }

    #[test]
    fn a_bad_duration_names_its_flag_and_the_fix() {
        let err = Harness::try_parse_from([
            "x",
            "describe",
            "--region",
            "cn-hangzhou",
            "--ecs-request-timeout",
            "2 days",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--ecs-request-timeout"), "{err}");
        assert!(err.contains("e.g. 500ms, 5s"), "{err}");
    }

    #[test]
    fn durations_and_action_limits() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5d").is_err());
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_action_qps("DescribeInstances").is_err());
        assert!(parse_action_qps("DescribeInstances=-1").is_err());
    }

    fn instance(id: &str, locks: &[&str]) -> Instance {
        Instance {
            instance_id: id.into(),
            region_id: "cn-hangzhou".into(),
            status: InstanceStatus::Stopped,
            start_time: Some("2026-11-22T10:01Z".into()),
            stopped_mode: Some("StopCharging".into()),
            instance_type_family: Some("ecs.g7".into()),
            instance_charge_type: None,
            expired_time: None,
            locks: locks
                .iter()
                .map(|r| OperationLock {
                    reason: r.to_string(),
                    message: None,
                })
                .collect(),
            tags: Default::default(),
        }
    }

    #[test]
    fn json_output_has_the_fields_scripts_read() {
        let line = json_line(&instance("i-1", &["security"]));
        assert_eq!(line["InstanceId"], "i-1");
        assert_eq!(line["Status"], "Stopped");
        assert_eq!(line["StartTime"], "2026-11-22T10:01Z");
        assert_eq!(line["LockReasons"], serde_json::json!(["security"]));
        assert!(!line.to_string().contains('\n'));
    }

    #[test]
    fn table_output_aligns_columns() {
        let lines = table(&[
            instance("i-1", &[]),
            instance("i-longer-id", &["financial"]),
        ]);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("INSTANCE-ID  "));
        let status_at = lines[0].find("STATUS").unwrap();
        assert_eq!(&lines[1][status_at..status_at + 7], "Stopped");
        assert!(lines[2].ends_with("financial"));
    }

    #[test]
    fn error_lines_are_one_line_with_code_first() {
        let error = EcsError::Transport {
            action: "StopInstance".into(),
            endpoint: "http://127.0.0.1:1/".into(),
            detail: "timed out\nwaiting".into(),
        };
        assert_eq!(
            error_line(&error),
            "Transport: StopInstance: no answer from http://127.0.0.1:1/: timed out waiting"
        );
    }
}
