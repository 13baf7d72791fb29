use std::process::ExitCode;

use clap::Parser;
use ecs_power_controller::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS provider for the whole process (kube and the ECS client both use rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Cli::parse().run().await
}
