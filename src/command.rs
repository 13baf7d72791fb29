//! The command line: one binary, one subcommand per job. Each job's flags and its `run` live
//! with the job (`controller::run_cmd`, `controller::reboot_cmd`, `demo::demo_cmd`, `bench`,
//! `ecs_client::command`, `ecs_sim::cli`); this is only the table of them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

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
    Crd(crate::crd_cmd::CrdArgs),
    /// Run the controller against a Kubernetes cluster.
    Run(crate::controller::run_cmd::RunArgs),
    /// The no-cluster quick start: a local Kubernetes API, the ECS simulator, the examples and
    /// the real controller, until every object has settled.
    #[cfg(feature = "dev-tools")]
    Demo(crate::demo::demo_cmd::DemoArgs),
    /// Power schedules: preview the coming transitions of an EcsPowerSchedule.
    #[command(subcommand)]
    Schedule(crate::schedule_cmd::ScheduleCommand),
    /// Ask for one reboot of an EcsInstance's VM (sets a fresh spec.reboot.token).
    Reboot(crate::controller::reboot_cmd::RebootArgs),
    /// Hold an EcsInstance that follows a schedule Running or Stopped for a while (at most 7
    /// days), or end the hold with --clear.
    Override(crate::override_cmd::OverrideArgs),
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
            Command::Crd(args) => crate::crd_cmd::run(args),
            Command::Schedule(command) => crate::schedule_cmd::run(command).await,
            Command::Run(args) => crate::controller::run_cmd::run(args).await,
            #[cfg(feature = "dev-tools")]
            Command::Demo(args) => crate::demo::demo_cmd::run(args).await,
            Command::Reboot(args) => crate::controller::reboot_cmd::run(args).await,
            Command::Override(args) => crate::override_cmd::run(args).await,
            #[cfg(feature = "dev-tools")]
            Command::Bench(args) => crate::bench::run(args).await,
        }
    }
}
