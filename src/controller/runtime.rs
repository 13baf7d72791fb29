//! Wiring kube-runtime's Controller: which objects are watched, what triggers a reconcile, and
//! how leader election starts and stops it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;

use super::events::Publisher;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::admission::Gates;
use super::cluster::KubeCluster;
use super::conditions;
use super::config::Config;
use super::leader;
use super::namespaces;
use super::observe::EcsSide;
use super::owners::{self, OwnerIndex};
use super::reconcile::{Error, Reconciler};
use super::schedules::{self, ScheduleCache};
use super::secret_changes;
use crate::api::{EcsInstance, EcsPowerSchedule};
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
    #[error("cannot list EcsInstances or EcsPowerSchedules: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    SharedCredentialsSelector(#[from] namespaces::SelectorError),
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
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
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
            .await
    };
    tokio::select! {
        checked = checked => checked?,
        // A stop while the API server is slow to answer: nothing started, nothing to wait for.
        () = shutdown.clone() => return Ok(()),
    }
    if let Some(selector) = &config.shared_credentials_selector {
        namespaces::check(&client, selector).await?;
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
    let ctx = Arc::new(Reconciler::new(
        Arc::new(cluster),
        ecs,
        schedules.clone(),
        &config,
    ));
    readiness.set(true);
    let Some(lease) = config.lease.clone() else {
        metrics.set_leader(true);
        reconcile_until(client, ctx, &schedules, &config, metrics.clone(), shutdown).await;
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
            &schedules,
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

/// One controller run: watches EcsInstances (and looks after the Secrets and the schedules they
/// reference, see [`schedules`]) and reconciles until `shutdown`; keeps the schedules' status.
async fn reconcile_until(
    client: Client,
    ctx: Arc<Reconciler>,
    schedule_cache: &ScheduleCache,
    config: &Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let objects: Api<EcsInstance> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut watch = watcher::Config::default();
    if let Some(selector) = &config.selector {
        watch = watch.labels(selector);
    }
    let (reader, writer) = reflector::store();
    let (mut follower_changes, followers_changed, instances_listed) =
        schedules::FollowerChanges::new();
    let owners = Arc::new(OwnerIndex::default());
    let events = watcher(objects, watch)
        .default_backoff()
        // managedFields are never read: don't keep them for every object in memory.
        .modify(|obj| obj.managed_fields_mut().clear())
        .reflect(writer)
        // The schedules' follower counts are told after the store has the change.
        .inspect(move |event| follower_changes.inspect(event));
    // The owner index follows the store; a change of an instance's owner wakes its objects.
    let (events, owner_changes) = owners::follow(events, owners.clone());
    let (shared_credentials, namespace_changes) = match &config.shared_credentials_selector {
        Some(selector) => {
            let (gate, changes) = namespaces::watch(client.clone(), selector, reader.clone());
            (Some(gate), changes.boxed())
        }
        None => (None, futures::stream::empty().boxed()),
    };
    let term = Arc::new(Term {
        reconciler: ctx,
        gates: Gates {
            owners,
            shared_credentials,
            tag_guard: config.instance_tag_guard.clone(),
        },
    });
    // Status writes change neither generation nor annotations: they trigger nothing, so a
    // reconcile's own write never loops back. The resync requeue covers drift.
    let triggers = events.applied_objects().predicate_filter(
        (predicates::generation as fn(&EcsInstance) -> Option<u64>)
            .combine(predicates::annotations as fn(&EcsInstance) -> Option<u64>),
        Default::default(),
    );
    let controller = Controller::for_stream(triggers, reader);
    let store = controller.store();
    // Secrets are only ever read by name (get): no list or watch, see `secret_changes`.
    let secret_changes =
        secret_changes::changes(client.clone(), store.clone(), config.secret_recheck);
    let schedule_changes = schedules::changes(
        client.clone(),
        config.namespace.as_deref(),
        schedule_cache.fresh(),
    );
    let schedule_store = store.clone();
    let schedule_status = schedules::status_controller(
        client,
        config,
        store.clone(),
        instances_listed,
        followers_changed,
    );
    // Objects whose instance the fleet observer saw change (and its periodic reading, which
    // runs only while this run polls it).
    let observed_changes = term.reconciler.observer().changes(store.clone());
    let gauge_metrics = metrics.clone();
    let run = controller
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_on(secret_changes)
        .reconcile_on(owner_changes)
        .reconcile_on(namespace_changes)
        .watches_stream(schedule_changes, move |schedule| {
            schedules::followers(&schedule_store, &schedule)
        })
        .reconcile_on(observed_changes)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile,
            |obj, err, term: Arc<Term>| error_policy(obj, err, term.reconciler.clone()),
            term,
        )
        .for_each(move |result| {
            match result {
                Ok(_) => metrics.reconciled("ok"),
                Err(controller::Error::ReconcilerFailed(..)) => metrics.reconciled("error"),
                // A wake-up for an object deleted since (an ordinary delete): nothing to do.
                Err(controller::Error::ObjectNotFound(obj)) => {
                    tracing::debug!(object = %obj, "deleted before its reconcile; nothing to do")
                }
                Err(err) => warn!(error = %err, "controller"),
            }
            std::future::ready(())
        });
    // kube-runtime holds its reconcile runner until the store has the initial list, but stops
    // polling the watch (which fills the store) on a graceful shutdown: a stop during the
    // initial list would wait forever. Then no reconcile has started, so there is nothing to
    // wait for.
    let stopped_before_start = {
        let store = store.clone();
        async move {
            shutdown.await;
            if store.wait_until_ready().now_or_never().is_some() {
                std::future::pending::<()>().await;
            }
        }
    };
    let gauges = count_from_store(store, gauge_metrics, Duration::from_secs(10));
    // The instance controller's end (graceful or not) ends the run; the schedule status
    // controller is dropped then (its writes are idempotent: the next leader recomputes them).
    let schedule_status = async {
        schedule_status.await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = run => {},
        () = schedule_status => {},
        _ = gauges => {},
        () = stopped_before_start => {},
    }
}

/// What reconciles share in one controller run: the reconciler, and the gates over this run's
/// watch caches.
struct Term {
    reconciler: Arc<Reconciler>,
    gates: Gates,
}

/// kube-runtime's reconcile: the reconciler's pass, its delay as a requeue.
async fn reconcile(obj: Arc<EcsInstance>, term: Arc<Term>) -> Result<Action, Error> {
    term.reconciler
        .reconcile_gated(&obj, &term.gates)
        .await
        .map(Action::requeue)
}

/// Requeue after a Kubernetes API failure (ECS failures never get here), backing off per object:
/// a fixed requeue would repeat the reconcile's ECS call every few seconds while its status
/// write keeps failing.
pub(crate) fn error_policy(obj: Arc<EcsInstance>, err: &Error, ctx: Arc<Reconciler>) -> Action {
    let delay = ctx.retry_after(&obj, err);
    warn!(error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// One pass over the store every `every`: keeps the `objects{condition}`,
/// `stalled_objects{namespace,reason}` and `reboots_pending{namespace}` gauges current, and adds
/// the seconds since the last pass to the savings counter for each instance its schedule holds
/// stopped (see [`schedules::held_stopped`]).
async fn count_from_store(store: Store<EcsInstance>, metrics: Metrics, every: Duration) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let now = tokio::time::Instant::now();
        let seconds = now.duration_since(last).as_secs_f64();
        last = now;
        let mut counts = [
            (conditions::READY, 0i64),
            (conditions::RECONCILING, 0),
            (conditions::STALLED, 0),
            ("Unknown", 0),
        ];
        let objects = store.state();
        let mut stalled = Vec::new();
        let mut reboots_pending = Vec::new();
        for obj in &objects {
            let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
            let conditions = obj
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            let index = [
                conditions::READY,
                conditions::RECONCILING,
                conditions::STALLED,
            ]
            .iter()
            .position(|t| {
                conditions
                    .iter()
                    .any(|c| c.type_ == *t && c.status == "True")
            })
            .unwrap_or(3);
            counts[index].1 += 1;
            if let Some(c) = conditions
                .iter()
                .find(|c| c.type_ == conditions::STALLED && c.status == "True")
            {
                stalled.push((namespace, c.reason.as_str()));
            }
            // Asked for and neither carried out nor otherwise settled (in flight counts as not
            // yet carried out).
            if let Some(reboot) = &obj.spec.reboot {
                let status = obj.status.as_ref();
                let settled = status.is_some_and(|s| {
                    s.last_reboot_token.as_deref() == Some(reboot.token.as_str())
                        || s.reboot_history.iter().any(|r| r.token == reboot.token)
                });
                if !settled {
                    reboots_pending.push(namespace);
                }
            }
            if let Some((namespace, schedule)) = schedules::held_stopped(obj) {
                metrics.held_stopped(&namespace, &schedule, seconds);
            }
        }
        metrics.set_objects(&counts);
        metrics.set_stalled(stalled);
        metrics.set_reboots_pending(reboots_pending);
    }
}
