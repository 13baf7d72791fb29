//! `ecs-power-controller run`: the controller as it runs in a cluster.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tracing::{error, info};

use super::connect::ClientConnector;
use super::decide::Timings;
use super::leader::LeaseSettings;
use super::observe::DirectObserver;
use super::reconcile::Settings;
use super::runtime::{ControllerOptions, EcsSide, run_controller};
use crate::ecs::cli::{EcsClientArgs, parse_duration};
use crate::ecs::credentials::DefaultCredentialsChain;
use crate::telemetry::Metrics;
use crate::telemetry::server::{self, Readiness};

/// Run the controller against the cluster in KUBECONFIG (or the one it runs in).
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Only EcsInstances matching this label selector, to shard a fleet across deployments
    /// (e.g. `shard=a`).
    #[arg(long, env = "SELECTOR")]
    pub selector: Option<String>,

    /// Reconciles running at once.
    #[arg(long, default_value_t = 16, env = "CONCURRENCY")]
    pub concurrency: u16,

    /// Look at every instance at least this often, to find and correct drift.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "RESYNC")]
    pub resync: Duration,

    #[command(flatten)]
    pub ecs: EcsClientArgs,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "METRICS_ADDR")]
    pub metrics_addr: SocketAddr,

    /// Elect a leader through a Lease so that, of several replicas, only one calls ECS.
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,

    /// The Lease's name.
    #[arg(long, default_value = "ecs-power-controller", env = "LEASE_NAME")]
    pub lease_name: String,

    /// The Lease's namespace (default: the controller's own, from POD_NAMESPACE or the
    /// kubeconfig).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease and in events (default: POD_NAME, else the host
    /// name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

pub async fn run(args: RunArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(args: RunArgs) -> Result<(), String> {
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("cannot reach Kubernetes: {e} (set KUBECONFIG, or run inside a cluster)")
    })?;
    let metrics = Metrics::default();
    let base = args
        .ecs
        .build(Arc::new(DefaultCredentialsChain::from_env()))
        .map_err(|e| format!("cannot set up the ECS client: {e}"))?;
    let connector = Arc::new(ClientConnector::new(base, metrics.clone()));
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lease = args.leader_elect.then(|| LeaseSettings {
        name: args.lease_name.clone(),
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        identity: identity.clone(),
        duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    });
    let options = ControllerOptions {
        namespace: args.namespace.clone(),
        selector: args.selector.clone(),
        concurrency: args.concurrency.max(1),
        settings: Settings {
            resync: args.resync,
            timings: Timings::default(),
        },
        lease,
        reporter: "ecs-power-controller".to_string(),
        instance: Some(identity),
    };
    let shutdown = shutdown_signal().shared();
    let readiness = Readiness::default();
    let (bound, server) = server::serve(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|e| format!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr))?;
    info!(metrics = %bound, namespace = ?options.namespace, selector = ?options.selector, "starting");
    let ecs = EcsSide {
        connector,
        observer: Arc::new(DirectObserver),
    };
    let result = run_controller(client, ecs, options, metrics, readiness, shutdown).await;
    let _ = server.await;
    result.map_err(|e| e.to_string())
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "ecs-power-controller".to_string());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("shutting down");
}
