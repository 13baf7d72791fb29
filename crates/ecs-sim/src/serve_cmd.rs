//! `ecs-power-controller simulate`: serve the ECS simulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{KeySpec, SimConfig};
use crate::server::Simulator;

/// Serve a local ECS API simulator.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub(crate) listen: SocketAddr,
    /// YAML instances file (instances, keys, transitions, quotas, faults). Without it: the
    /// default fleet (see docs/simulator.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) instances: Option<PathBuf>,
    /// An accepted access key, `ID:SECRET` (repeatable; adds to the file's keys). With no key
    /// anywhere, the default key is accepted and printed.
    #[arg(long = "access-key", value_name = "ID:SECRET", value_parser = parse_key)]
    pub(crate) access_keys: Vec<KeyArg>,
}

/// An `ID:SECRET` pair from the command line; Debug never shows the secret.
#[derive(Clone)]
pub(crate) struct KeyArg {
    id: String,
    secret: String,
}

impl std::fmt::Debug for KeyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyArg({}:<redacted>)", self.id)
    }
}

fn parse_key(s: &str) -> Result<KeyArg, String> {
    match s.split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(KeyArg {
            id: id.to_string(),
            secret: secret.to_string(),
        }),
        _ => Err("expected ID:SECRET, both non-empty".to_string()),
    }
}

/// Runs the `simulate` command: loads the instances file (or the default fleet), adds the keys
/// given, prints the endpoint and the fleet, and serves until Ctrl-C. A bad file or an address
/// that cannot be bound prints the reason and exits with failure.
pub async fn simulate(args: SimulateArgs) -> ExitCode {
    let mut config = match &args.instances {
        Some(path) => match SimConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => SimConfig::default_fleet(),
    };
    config.listen = args.listen;
    let key_given = !config.keys.is_empty() || !args.access_keys.is_empty();
    config
        .keys
        .extend(args.access_keys.into_iter().map(|k| KeySpec {
            id: k.id,
            secret: k.secret,
            security_token: None,
        }));
    let sim = match Simulator::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("ECS simulator listening on {}", sim.endpoint());
    println!("admin API: {}/_sim/instances", sim.endpoint());
    if key_given {
        println!("access key: {} (secret as configured)", sim.access_key().0);
    } else {
        let (id, secret) = sim.access_key();
        println!("access key (default, for local use only): {id}:{secret}");
    }
    for view in sim.instances() {
        println!(
            "  {} {} {} {}",
            view.id, view.region, view.status, view.instance_type_family
        );
    }
    sim.serve_until(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    ExitCode::SUCCESS
}
