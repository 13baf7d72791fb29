//! `ecs-power-controller simulate`: serve the ECS simulator.

use std::process::ExitCode;

/// Serve a local ECS API simulator.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {}

pub async fn run(_args: SimulateArgs) -> ExitCode {
    eprintln!("the simulator is being built");
    ExitCode::FAILURE
}
