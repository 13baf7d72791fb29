//! `ecs-power-controller ecs …`: the operator's direct line to the ECS API.

use std::process::ExitCode;

/// Describe, start, stop or reboot instances directly (checks credentials and connectivity).
#[derive(clap::Args, Debug)]
pub struct EcsArgs {}

pub async fn run(_args: EcsArgs) -> ExitCode {
    eprintln!("the ecs subcommand is being built");
    ExitCode::FAILURE
}
