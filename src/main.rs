use std::process::ExitCode;

use clap::Parser;
use ecs_power_controller::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS provider for the whole process (kube and the ECS client both use rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Installed as `kubectl-ecsi`, the same binary is the kubectl plugin (`kubectl ecsi ...`).
    if std::env::args_os()
        .next()
        .is_some_and(|argv0| ecs_power_controller::cli::plugin::invoked_as_plugin(&argv0))
    {
        return ecs_power_controller::cli::plugin::main().await;
    }
    Cli::parse().run().await
}
