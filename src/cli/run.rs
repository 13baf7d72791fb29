//! `ecs-power-controller run`: the controller as it runs in a cluster.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::{error, info};

use crate::controller::config::{BatchSettings, Config, LeaseSettings, Timings};
use crate::controller::ecs::connect::ecs_side;
use crate::controller::k8s::runtime::run_controller;
use crate::telemetry::Metrics;
use crate::telemetry::server::{self, Readiness};
use ecs_client::command::{EcsClientArgs, parse_duration};
use ecs_client::credentials::DefaultCredentialsChain;

/// Run the controller against the cluster in KUBECONFIG (or the one it runs in).
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Only EcsInstances matching this label selector, to shard a fleet across deployments
    /// (e.g. `shard=a`).
    #[arg(long, env = "SELECTOR")]
    pub selector: Option<String>,

    /// Reconciles running at once. Batching can only combine reconciles that run together, so
    /// keep this well above 100 for fleets (a reconcile waiting on ECS costs a few KB).
    #[arg(long, default_value_t = 512, env = "CONCURRENCY")]
    pub concurrency: u16,

    /// Combine reconciles' ECS calls: one DescribeInstances per 100 objects, and starts, stops
    /// and reboots as StartInstances / StopInstances / RebootInstances (off: one call per
    /// object).
    #[arg(long, value_enum, default_value_t = Switch::On, env = "BATCH")]
    pub batch: Switch,

    /// The longest a call waits for others to share its batch (a lone call goes after
    /// --batch-quiet).
    #[arg(long, default_value = "50ms", value_parser = parse_duration, env = "BATCH_WINDOW")]
    pub batch_window: Duration,

    /// A batch that no call has joined for this long goes out before the window ends.
    #[arg(long, default_value = "10ms", value_parser = parse_duration, env = "BATCH_QUIET")]
    pub batch_quiet: Duration,

    /// Look at every instance at least this often, to find and correct drift.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "RESYNC")]
    pub resync: Duration,

    /// How often to look at an instance that is starting or stopping.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "TRANSITION_POLL")]
    pub transition_poll: Duration,

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

    #[command(flatten)]
    pub tenancy: Box<TenancyArgs>,
}

/// The tenancy guards (boxed: `run`'s arguments are the largest of the commands').
#[derive(clap::Args, Debug)]
pub(crate) struct TenancyArgs {
    /// Only EcsInstances in Namespaces matching this label selector (e.g.
    /// `ecs.powerctl.io/shared-credentials=allowed`) may use the controller's own credentials;
    /// elsewhere an EcsInstance needs spec.credentialsSecretRef. Needs list and watch on
    /// namespaces (the multi-tenant install). Default: every namespace may.
    #[arg(long, env = "SHARED_CREDENTIALS_SELECTOR", value_parser = non_empty)]
    pub shared_credentials_selector: Option<String>,

    /// Start, stop and reboot only instances whose ECS tag KEY lists the EcsInstance's
    /// namespace (comma-separated; `*`: any namespace); others are only read. Default: off.
    #[arg(long, value_name = "KEY", env = "INSTANCE_TAG_GUARD", value_parser = non_empty)]
    pub instance_tag_guard: Option<String>,
}

/// A flag's value that must not be blank (a blank guard would refuse everything, or nothing).
fn non_empty(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("must not be empty (leave the flag out to turn the guard off)".into());
    }
    Ok(trimmed.to_string())
}

/// `on` or `off`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    On,
    Off,
}

impl RunArgs {
    /// The controller's [`Config`], all of it from the flags. `default_namespace` is the
    /// Lease's namespace when --lease-namespace is not given (the kubeconfig's or the pod's).
    fn config(&self, default_namespace: &str) -> Config {
        let identity = self.identity.clone().unwrap_or_else(default_identity);
        Config {
            namespace: self.namespace.clone(),
            selector: self.selector.clone(),
            concurrency: self.concurrency.max(1),
            resync: self.resync,
            timings: Timings {
                transition_poll: self.transition_poll,
                ..Timings::default()
            },
            secret_recheck: Config::default().secret_recheck,
            batch: (self.batch == Switch::On).then(|| BatchSettings {
                window: self.batch_window,
                quiet: self.batch_quiet,
                ..BatchSettings::default()
            }),
            lease: self.leader_elect.then(|| {
                LeaseSettings::new(
                    self.lease_name.clone(),
                    self.lease_namespace
                        .clone()
                        .unwrap_or_else(|| default_namespace.to_string()),
                    identity.clone(),
                )
            }),
            reporter: "ecs-power-controller".to_string(),
            instance: Some(identity),
            shared_credentials_selector: self.tenancy.shared_credentials_selector.clone(),
            instance_tag_guard: self.tenancy.instance_tag_guard.clone(),
            schedule_clock_offset: jiff::SignedDuration::ZERO,
        }
    }
}

pub(crate) async fn run(args: RunArgs) -> ExitCode {
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
    let readiness = Readiness::default();
    let client = crate::controller::k8s::client::infer_reporting(&readiness)
        .await
        .map_err(|e| {
            format!("cannot reach Kubernetes: {e} (set KUBECONFIG, or run inside a cluster)")
        })?;
    let metrics = Metrics::default();
    let base = args
        .ecs
        .build(Arc::new(DefaultCredentialsChain::from_env()))
        .map_err(|e| format!("cannot set up the ECS client: {e}"))?;
    let config = args.config(client.default_namespace());
    let shutdown = shutdown_signal().shared();
    // The endpoints serve only as long as the controller runs: a controller that stopped (a
    // fatal error) ends the process, so the pod restarts instead of looking alive.
    let (stopped, controller_stopped) = oneshot::channel::<()>();
    let server_stop = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                _ = controller_stopped => {}
            }
        }
    };
    let (bound, server) = server::serve(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        server_stop,
    )
    .await
    .map_err(|e| format!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr))?;
    info!(
        metrics = %bound,
        namespace = ?config.namespace,
        selector = ?config.selector,
        shared_credentials_selector = ?config.shared_credentials_selector,
        instance_tag_guard = ?config.instance_tag_guard,
        "starting"
    );
    let ecs = ecs_side(base, metrics.clone(), &config);
    let result = run_controller(client, ecs, config, metrics, readiness, shutdown).await;
    let _ = stopped.send(());
    // A prober's open connection must not hold the exit.
    let _ = tokio::time::timeout(SERVER_DRAIN, server).await;
    result.map_err(|e| e.to_string())
}

/// How long the endpoints may take to close once the controller has stopped.
const SERVER_DRAIN: Duration = Duration::from_secs(2);

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
