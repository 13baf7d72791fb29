//! The command line: one binary, one subcommand per job, each in its own module here with its
//! flags and its `run`: `run` (the controller), `reboot`, `power_override`,
//! `schedule_preview`, `plan`, `crd`, and the `kubectl ecsi` [`plugin`]; `target` is the
//! `NAME [-n NAMESPACE]` they share, `output` the `-o table|json|yaml` of preview and plan, `manifests` the YAML files read
//! offline. The developer tools keep theirs beside them (`demo`,
//! `bench`, behind the `dev-tools` feature), as do the crates (`ecs_client::command`,
//! `ecs_sim::cli`). This module is the table of them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

pub(crate) mod crd;
pub(crate) mod manifests;
pub(crate) mod output;
pub(crate) mod plan;
pub mod plugin;
pub(crate) mod power_override;
pub(crate) mod reboot;
pub(crate) mod run;
pub(crate) mod schedule_preview;
pub(crate) mod target;

pub use power_override::{OverrideChange, OverrideError, OverrideWritten, request_override};
pub use reboot::{RebootError, RebootRequested, request_reboot};

#[derive(Parser, Debug)]
#[command(name = "ecs-power-controller", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, env = "LOG_FORMAT")]
    log_format: LogFormatArg,

    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Call the ECS API directly: describe, start, stop, reboot.
    Ecs(ecs_client::command::EcsArgs),
    /// Serve a local ECS API simulator.
    #[cfg(feature = "dev-tools")]
    Simulate(ecs_sim::SimulateArgs),
    /// Print the CustomResourceDefinitions (EcsInstance, EcsPowerSchedule) as YAML.
    Crd(crd::CrdArgs),
    /// Run the controller against a Kubernetes cluster.
    Run(run::RunArgs),
    /// The no-cluster quick start: a local Kubernetes API, the ECS simulator, the examples and
    /// the real controller, until every object has settled.
    #[cfg(feature = "dev-tools")]
    Demo(crate::demo::demo_cmd::DemoArgs),
    /// Power schedules: preview the coming transitions of an EcsPowerSchedule.
    #[command(subcommand)]
    Schedule(schedule_preview::ScheduleCommand),
    /// Every coming power change of the EcsInstances (schedules, overrides' ends), sorted by
    /// time, and why nothing will change for the others.
    Plan(plan::PlanArgs),
    /// Ask for one reboot of an EcsInstance's VM (sets a fresh spec.reboot.token).
    Reboot(reboot::RebootArgs),
    /// Hold an EcsInstance that follows a schedule Running or Stopped for a while (at most 7
    /// days), or end the hold with --clear.
    Override(power_override::OverrideArgs),
    /// Benchmark the controller at fleet scale against the ECS quota bound.
    #[cfg(feature = "dev-tools")]
    Bench(crate::bench::BenchArgs),
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        // Interactive commands keep their output readable; the controller logs what it does.
        let default_level = match self.command {
            Command::Run(_) => "info",
            #[cfg(feature = "dev-tools")]
            Command::Simulate(_) => "info",
            _ => "warn",
        };
        telemetry::init(self.log_format.into(), default_level);
        match self.command {
            Command::Ecs(args) => ecs_client::command::run(args).await,
            #[cfg(feature = "dev-tools")]
            Command::Simulate(args) => ecs_sim::simulate(args).await,
            Command::Crd(args) => crd::run(args),
            Command::Schedule(command) => schedule_preview::run(command).await,
            Command::Run(args) => run::run(args).await,
            #[cfg(feature = "dev-tools")]
            Command::Demo(args) => crate::demo::demo_cmd::run(args).await,
            Command::Plan(args) => plan::run(args).await,
            Command::Reboot(args) => reboot::run(args).await,
            Command::Override(args) => power_override::run(args).await,
            #[cfg(feature = "dev-tools")]
            Command::Bench(args) => crate::bench::run(args).await,
        }
    }
}
