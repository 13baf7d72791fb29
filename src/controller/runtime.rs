//! Wiring kube-runtime's Controller: which objects are watched, what triggers a reconcile, and
//! how leader election starts and stops it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::batch::BatchSettings;
use super::leader::{self, LeaseSettings};
use super::observe::{EcsConnector, Observer};
use super::reconcile::{Context, Settings, error_policy, reconcile};
use crate::api::EcsInstance;
use crate::controller::health;
use crate::telemetry::Metrics;
use crate::telemetry::server::Readiness;

/// What the `run` flags configure.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Watch one namespace (`None`: all).
    pub namespace: Option<String>,
    /// Only objects matching this label selector (for sharding across deployments).
    pub selector: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    pub settings: Settings,
    /// Leader election; `None` runs unconditionally (one replica).
    pub lease: Option<LeaseSettings>,
    /// The `reportingController` of events.
    pub reporter: String,
    /// The `reportingInstance` of events (the pod name).
    pub instance: Option<String>,
    /// Coalesce observations and mutations into ECS batch calls (`None`: one call per object).
    /// Read by whoever builds the [`EcsSide`] (`connect::ecs_side`, the sandbox).
    pub batch: Option<BatchSettings>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            selector: None,
            concurrency: 16,
            settings: Settings::default(),
            lease: None,
            reporter: "ecs-power-controller".to_string(),
            instance: None,
            batch: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the EcsInstance CRD is not installed in this cluster: kubectl apply -f crds/ecsinstance.yaml (or `ecs-power-controller crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    #[error("cannot list EcsInstances: {0}")]
    Kube(#[from] kube::Error),
}

/// Fails fast, with the fix in the message, when the CRD is missing; rides out a briefly
/// unavailable API server (5xx, 429, connection errors) for up to about half a minute. Lists in
/// the watched namespace only, so a namespaced Role is enough (the single-namespace deployment).
pub async fn ensure_crd_installed(
    client: &Client,
    namespace: Option<&str>,
) -> Result<(), RunError> {
    let api: Api<EcsInstance> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut delay = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(RunError::CrdMissing);
            }
            Err(kube::Error::Api(status)) if status.code < 500 && status.code != 429 => {
                return Err(kube::Error::Api(status).into());
            }
            Err(err) if waited >= Duration::from_secs(30) => return Err(err.into()),
            Err(err) => {
                warn!(error = %err, "the API server is not answering yet; retrying");
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The ECS side of the controller.
pub struct EcsSide {
    pub connector: Arc<dyn EcsConnector>,
    pub observer: Arc<dyn Observer>,
}

/// Runs until `shutdown` resolves. With a lease, reconciles only while leading, and stops at
/// once (in-flight reconciles dropped) when the lease is lost.
pub async fn run_controller(
    client: Client,
    ecs: EcsSide,
    options: ControllerOptions,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    ensure_crd_installed(&client, options.namespace.as_deref()).await?;
    let reporter = Reporter {
        controller: options.reporter.clone(),
        instance: options.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: super::events::Publisher::new(client.clone(), reporter),
        connector: ecs.connector,
        observer: ecs.observer,
        settings: options.settings.clone(),
        metrics: metrics.clone(),
    });
    let shutdown = shutdown.shared();
    readiness.set(true);
    let Some(lease) = options.lease.clone() else {
        reconcile_until(ctx, &options, shutdown).await;
        return Ok(());
    };
    let mut leading = leader::spawn(client, lease);
    loop {
        tokio::select! {
            _ = shutdown.clone() => return Ok(()),
            changed = leading.wait_for(|l| *l) => if changed.is_err() { return Ok(()) },
        }
        info!("leading: reconciling");
        let run = reconcile_until(ctx.clone(), &options, shutdown.clone());
        tokio::select! {
            _ = run => return Ok(()),
            _ = leading.wait_for(|l| !*l) => {
                warn!("lost leadership: stopped reconciling");
            }
        }
    }
}

/// One controller run: watches EcsInstances (and the Secrets they reference) and reconciles
/// until `shutdown`.
async fn reconcile_until(
    ctx: Arc<Context>,
    options: &ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (objects, secrets): (Api<EcsInstance>, Api<PartialObjectMeta<Secret>>) =
        match &options.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
    let mut config = watcher::Config::default();
    if let Some(selector) = &options.selector {
        config = config.labels(selector);
    }
    let (reader, writer) = reflector::store();
    // Status writes change neither generation nor annotations: they trigger nothing, so a
    // reconcile's own write never loops back. The resync requeue covers drift.
    let triggers = watcher(objects, config)
        .default_backoff()
        // managedFields are never read: don't keep them for every object in memory.
        .modify(|obj| obj.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            (predicates::generation as fn(&EcsInstance) -> Option<u64>)
                .combine(predicates::annotations as fn(&EcsInstance) -> Option<u64>),
            Default::default(),
        );
    let controller = Controller::for_stream(triggers, reader);
    let store = controller.store();
    // Metadata only: the controller never holds Secret data it does not use.
    let secret_changes = watcher(secrets, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let referencing_store = store.clone();
    let metrics = ctx.metrics.clone();
    let gauge_metrics = ctx.metrics.clone();
    let run = controller
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .watches_stream(secret_changes, move |secret: PartialObjectMeta<Secret>| {
            referencing(&referencing_store, &secret)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            match result {
                Ok(_) => metrics.reconciled("ok"),
                Err(controller::Error::ReconcilerFailed(..)) => metrics.reconciled("error"),
                Err(err) => warn!(error = %err, "controller"),
            }
            std::future::ready(())
        });
    let gauges = count_conditions(store, gauge_metrics, Duration::from_secs(10));
    tokio::select! {
        _ = run => {},
        _ = gauges => {},
    }
}

/// EcsInstances in the Secret's namespace that reference it.
fn referencing(
    store: &Store<EcsInstance>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<EcsInstance>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|o| o.namespace() == namespace)
        .filter(|o| {
            o.spec
                .credentials_secret_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Keeps the `objects{condition}` gauge current.
async fn count_conditions(store: Store<EcsInstance>, metrics: Metrics, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let mut counts = [
            (health::READY, 0i64),
            (health::RECONCILING, 0),
            (health::STALLED, 0),
            ("Unknown", 0),
        ];
        for obj in store.state() {
            let conditions = obj
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            let index = [health::READY, health::RECONCILING, health::STALLED]
                .iter()
                .position(|t| {
                    conditions
                        .iter()
                        .any(|c| c.type_ == *t && c.status == "True")
                })
                .unwrap_or(3);
            counts[index].1 += 1;
        }
        metrics.set_objects(&counts);
    }
}
