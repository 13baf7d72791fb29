//! Wiring kube-runtime's Controller: which objects are watched, what triggers a reconcile, and
//! how leader election starts and stops it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule};
use crate::controller::admission::owners::{self, OwnerIndex};
use crate::controller::admission::{Gates, tenancy};
use crate::controller::config::Config;
use crate::controller::ecs::observe::EcsSide;
use crate::controller::k8s::calendar_cache;
use crate::controller::k8s::cluster::{KubeCluster, scoped_api};
use crate::controller::k8s::events::Publisher;
use crate::controller::k8s::schedule_cache::{self, FollowerChanges, ScheduleCache};
use crate::controller::k8s::start_order::{InstanceCache, OrderWakes};
use crate::controller::k8s::{leader, secret_changes, store_metrics};
use crate::controller::listed::Listed;
use crate::controller::reconcile::{Error, Reconciler};
use crate::controller::{calendar_status, schedule_status};
use crate::telemetry::Metrics;
use crate::telemetry::server::Readiness;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the EcsInstance CRD is not installed in this cluster: kubectl apply -f crds/ecsinstance.yaml (or `ecs-power-controller crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    #[error(
        "the EcsPowerSchedule CRD is not installed in this cluster: kubectl apply -f crds/ecspowerschedule.yaml (or `ecs-power-controller crd ecspowerschedule | kubectl apply -f -`)"
    )]
    ScheduleCrdMissing,
    #[error(
        "the EcsHolidayCalendar CRD is not installed in this cluster: kubectl apply -f crds/ecsholidaycalendar.yaml (or `ecs-power-controller crd ecsholidaycalendar | kubectl apply -f -`)"
    )]
    CalendarCrdMissing,
    #[error("cannot list EcsInstances, EcsPowerSchedules or EcsHolidayCalendars: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    SharedCredentialsSelector(#[from] tenancy::SelectorError),
}

/// Fails fast, with the fix in the message, when the CRD is missing; rides out a briefly
/// unavailable API server (5xx, 429, connection errors) for up to about half a minute. Lists in
/// the watched namespace only, so a namespaced Role is enough (the single-namespace deployment).
async fn ensure_crd_installed<K>(
    client: &Client,
    namespace: Option<&str>,
    missing: RunError,
) -> Result<(), RunError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = scoped_api(client.clone(), namespace);
    let mut delay = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => return Err(missing),
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

/// Runs until `shutdown` resolves. With a lease, reconciles only while leading, and stops at
/// once (in-flight reconciles dropped) when the lease is lost. Readiness is true only while
/// the controller runs (leading or standing by), false once this returns.
pub(crate) async fn run_controller(
    client: Client,
    ecs: EcsSide,
    config: Config,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let result = run_until(client, ecs, config, metrics, &readiness, shutdown).await;
    readiness.set(false);
    result
}

async fn run_until(
    client: Client,
    ecs: EcsSide,
    config: Config,
    metrics: Metrics,
    readiness: &Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let shutdown = shutdown.shared();
    let namespace = config.namespace.as_deref();
    let checked = async {
        ensure_crd_installed::<EcsInstance>(&client, namespace, RunError::CrdMissing).await?;
        ensure_crd_installed::<EcsPowerSchedule>(&client, namespace, RunError::ScheduleCrdMissing)
            .await?;
        ensure_crd_installed::<EcsHolidayCalendar>(&client, namespace, RunError::CalendarCrdMissing)
            .await
    };
    tokio::select! {
        checked = checked => checked?,
        // A stop while the API server is slow to answer: nothing started, nothing to wait for.
        () = shutdown.clone() => return Ok(()),
    }
    if let Some(selector) = &config.shared_credentials_selector {
        tenancy::check(&client, selector).await?;
    }
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: config.instance.clone(),
    };
    let cluster = KubeCluster {
        client: client.clone(),
        recorder: Publisher::new(client.clone(), reporter),
    };
    let schedules = Arc::new(ScheduleCache::default());
    let neighbours = Arc::new(InstanceCache::default());
    let ctx = Arc::new(
        Reconciler::new(Arc::new(cluster), ecs, schedules.clone(), &config)
            .with_metrics(metrics.clone())
            .with_neighbours(neighbours.clone()),
    );
    let caches = Caches {
        schedules,
        instances: neighbours,
    };
    readiness.set(true);
    let Some(lease) = config.lease.clone() else {
        metrics.set_leader(true);
        reconcile_until(client, ctx, &caches, &config, metrics.clone(), shutdown).await;
        metrics.set_leader(false);
        return Ok(());
    };
    let leadership = leader::spawn(client.clone(), lease);
    let mut leading = leadership.leading();
    loop {
        tokio::select! {
            _ = shutdown.clone() => break,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break },
        }
        info!("leading: reconciling");
        metrics.set_leader(true);
        let run = reconcile_until(
            client.clone(),
            ctx.clone(),
            &caches,
            &config,
            metrics.clone(),
            shutdown.clone(),
        );
        let stopped = tokio::select! {
            // A graceful stop: in-flight reconciles have finished.
            _ = run => true,
            _ = leading.wait_for(|l| !*l) => {
                warn!("lost leadership: stopped reconciling");
                false
            }
        };
        metrics.set_leader(false);
        if stopped {
            break;
        }
    }
    // Nothing of this replica calls ECS any more: hand the lease over now rather than make the
    // other replicas wait out its duration.
    leadership.release().await;
    Ok(())
}

/// The watch caches the reconciles read, shared across runs (each run fills them afresh).
struct Caches {
    schedules: Arc<ScheduleCache>,
    /// The EcsInstances, for `spec.startAfter`.
    instances: Arc<InstanceCache>,
}

/// One controller run: watches EcsInstances and reconciles them until `shutdown`, woken by
/// the triggers named below; keeps the schedules' status beside it.
async fn reconcile_until(
    client: Client,
    reconciler: Arc<Reconciler>,
    caches: &Caches,
    config: &Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let schedule_cache = &caches.schedules;
    let instances = InstanceWatch::start(client.clone(), config);
    caches.instances.set(instances.store.clone());
    let (shared_credentials, namespace_changes) = match &config.shared_credentials_selector {
        Some(selector) => {
            let (gate, changes) = tenancy::watch(client.clone(), selector, instances.store.clone());
            (Some(gate), changes.boxed())
        }
        None => (None, futures::stream::empty().boxed()),
    };
    let context = Arc::new(RunContext {
        gates: Gates {
            owners: instances.owners,
            shared_credentials,
            tag_guard: config.instance_tag_guard.clone(),
        },
        reconciler: reconciler.clone(),
    });
    let controller = Controller::for_stream(instances.triggers, instances.store);
    let store = controller.store();
    let schedule_store = store.clone();
    let schedule_changes = schedule_cache.changes(client.clone(), config.namespace.as_deref());
    let calendars =
        calendar_cache::CalendarWatch::start(client.clone(), config, schedule_cache, store.clone());
    let schedule_status = schedule_status::run(
        client.clone(),
        config,
        reconciler.schedule_clock().clone(),
        store.clone(),
        instances.listed.clone(),
        futures::stream::select(instances.follower_changes, calendars.users),
        schedule_cache.clone(),
    );
    let calendar_status =
        calendar_status::run(client.clone(), config, reconciler.schedule_clock().clone());
    let run = controller
        .with_config(controller::Config::default().concurrency(config.concurrency))
        // A credentials Secret changed under an object backing off (Secrets are only ever
        // read by name: no list or watch, see `secret_changes`).
        .reconcile_on(secret_changes::changes(
            client.clone(),
            store.clone(),
            config.secret_recheck,
        ))
        // An instance's owner changed (the owner deleted, another object pointed at it).
        .reconcile_on(instances.owner_changes)
        // An instance's part in the ordering changed (its status, startAfter, paused): the
        // instances it starts after and those that start after it (`spec.startAfter`).
        .reconcile_on(instances.order_wakes)
        // A namespace joined or left the shared-credentials selection.
        .reconcile_on(namespace_changes)
        // A schedule's spec changed, or it was deleted: its followers.
        .watches_stream(schedule_changes, move |schedule| {
            schedule_cache::followers(&schedule_store, &schedule)
        })
        // A calendar appeared, changed or was deleted: the followers of the schedules using it.
        .reconcile_on(calendars.followers)
        // The fleet observer saw an instance change (its periodic reading runs only while
        // this run polls it).
        .reconcile_on(
            reconciler
                .ecs()
                .observer
                .changes(store.clone(), instances.listed.clone()),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            count_result(&metrics, result);
            std::future::ready(())
        });
    let stopped_before_start = stopped_before_start(instances.listed, shutdown);
    let gauges = store_metrics::count(store, metrics.clone(), Duration::from_secs(10));
    // The instance controller's end (graceful or not) ends the run; the schedule status
    // controller is dropped then (its writes are idempotent: the next leader recomputes them).
    let schedule_status = async {
        futures::join!(schedule_status, calendar_status);
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = run => {},
        () = schedule_status => {},
        _ = gauges => {},
        () = stopped_before_start => {},
    }
}

/// The EcsInstance watch of one run, and what is kept from it: the reflector store, the owner
/// index, and who follows which schedule.
struct InstanceWatch {
    /// What reconciles an object: a change of its spec (generation) or annotations. Status
    /// writes change neither: a reconcile's own write never loops back; the resync requeue
    /// covers drift.
    triggers: BoxStream<'static, Result<EcsInstance, watcher::Error>>,
    store: Store<EcsInstance>,
    owners: Arc<OwnerIndex>,
    /// Objects whose instance changed owner.
    owner_changes: BoxStream<'static, ObjectRef<EcsInstance>>,
    /// Schedules that gained or lost a follower, for their status controller.
    follower_changes: mpsc::UnboundedReceiver<ObjectRef<EcsPowerSchedule>>,
    /// The neighbours of an instance whose part in the ordering changed.
    order_wakes: mpsc::UnboundedReceiver<ObjectRef<EcsInstance>>,
    /// The first full list has been seen.
    listed: Listed,
}

impl InstanceWatch {
    fn start(client: Client, config: &Config) -> Self {
        let objects: Api<EcsInstance> = scoped_api(client, config.namespace.as_deref());
        let mut watch = watcher::Config::default();
        if let Some(selector) = &config.selector {
            watch = watch.labels(selector);
        }
        let (store, writer) = reflector::store();
        let (mut followers, follower_changes, listed) = FollowerChanges::new();
        let (mut wakes, order_wakes) = OrderWakes::new();
        let owners = Arc::new(OwnerIndex::default());
        let events = watcher(objects, watch)
            .default_backoff()
            // managedFields are never read: don't keep them for every object in memory.
            .modify(|obj| obj.managed_fields_mut().clear())
            .reflect(writer)
            // The follower counts and the owner index are told after the store has the change.
            .inspect(move |event| {
                followers.inspect(event);
                wakes.inspect(event);
            });
        let (events, owner_changes) = owners::follow(events, owners.clone());
        let triggers = events
            .applied_objects()
            .predicate_filter(
                (predicates::generation as fn(&EcsInstance) -> Option<u64>)
                    .combine(predicates::annotations as fn(&EcsInstance) -> Option<u64>),
                Default::default(),
            )
            .boxed();
        Self {
            triggers,
            store,
            owners,
            owner_changes: owner_changes.boxed(),
            follower_changes,
            order_wakes,
            listed,
        }
    }
}

/// kube-runtime holds its reconcile runner until the store has the initial list, but stops
/// polling the watch (which fills the store) on a graceful shutdown: a stop during the initial
/// list would wait forever. Then no reconcile has started, so there is nothing to wait for:
/// this resolves then (and never once the list is in).
async fn stopped_before_start(listed: Listed, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    if listed.now() {
        std::future::pending::<()>().await;
    }
}

/// Counts a reconcile's result.
fn count_result<T>(metrics: &Metrics, result: Result<T, controller::Error<Error, watcher::Error>>) {
    match result {
        Ok(_) => metrics.reconciled("ok"),
        Err(controller::Error::ReconcilerFailed(..)) => metrics.reconciled("error"),
        // A wake-up for an object deleted since (an ordinary delete): nothing to do.
        Err(controller::Error::ObjectNotFound(obj)) => {
            tracing::debug!(object = %obj, "deleted before its reconcile; nothing to do")
        }
        Err(err) => warn!(error = %err, "controller"),
    }
}

/// What reconciles share in one controller run: the reconciler, and the gates over this run's
/// watch caches.
struct RunContext {
    reconciler: Arc<Reconciler>,
    gates: Gates,
}

/// kube-runtime's reconcile: the reconciler's pass, its delay as a requeue.
async fn reconcile(obj: Arc<EcsInstance>, context: Arc<RunContext>) -> Result<Action, Error> {
    context
        .reconciler
        .reconcile(&obj, &context.gates)
        .await
        .map(Action::requeue)
}

/// Requeue after a Kubernetes API failure (ECS failures never get here), backing off per object:
/// a fixed requeue would repeat the reconcile's ECS call every few seconds while its status
/// write keeps failing.
fn error_policy(obj: Arc<EcsInstance>, err: &Error, context: Arc<RunContext>) -> Action {
    let delay = context.reconciler.retry_after(&obj, err);
    warn!(error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
