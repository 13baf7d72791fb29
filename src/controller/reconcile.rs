//! One reconciliation of one EcsInstance: observe → decide → act → record.
//!
//! A [`Reconciler`] holds what every pass needs (the cluster, the ECS side, the clock, the
//! settings); a [`Pass`] is one object's reconcile. What the pass decides is [`decide`]'s, what
//! it writes is [`Record`]'s, what the conditions say is [`super::conditions`]'s: this module
//! only puts them in order and talks to Kubernetes and ECS.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, instrument, warn};

use super::admission::{Gates, Refusal};
use super::api_backoff::ApiBackoff;
use super::backoff;
use super::bounded::bounded;
use super::cluster::{Cluster, Written};
use super::config::{Config, Timings};
use super::decide::{self, Decision, Facts, Mutation, Step};
use super::desired::{self, Desired, Schedules};
use super::observe::{EcsSide, Freshness, Lookup, Observer, credentials_key, freshness_for};
use super::record::Record;
use crate::api::EcsInstance;
use ecs_client::{Credentials, EcsApi, ErrorClass, Instance};

/// Where a reconcile gets the time and its jitter: the system's in production, fixed in
/// tests, so reconcile is tested without a wall clock.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// In `[0, 1)`: spreads the retries of many objects apart.
    fn jitter(&self) -> f64;
}

/// The system clock and a random jitter.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn jitter(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// How soon to look again after a write found the object changed since it was read: the
/// cache has (or soon has) the newer copy.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// How often an instance the tag guard refused is read again (at most): claiming it is a tag
/// edit in ECS, which no watch reports.
const CLAIM_RECHECK: Duration = Duration::from_secs(60);

/// How long a reconcile of a scheduled object waits for the schedules' first list.
const SCHEDULES_LISTED: Duration = Duration::from_secs(10);

/// Failures that end a reconcile early; kube-runtime requeues the object.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("EcsInstance {0} has no namespace")]
    NoNamespace(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The status write failed: what the reconcile recorded (an ECS backoff among it) is lost,
    /// so the next look must wait at least `wanted`, the delay it asked for.
    #[error("writing status: {source}")]
    Status {
        #[source]
        source: kube::Error,
        wanted: Duration,
    },
}

/// What every reconcile shares.
pub(crate) struct Reconciler {
    cluster: Arc<dyn Cluster>,
    ecs: EcsSide,
    clock: Arc<dyn Clock>,
    /// The EcsPowerSchedules objects follow.
    schedules: Arc<dyn Schedules>,
    /// Added to the clock where schedules are evaluated ([`Config::schedule_clock_offset`]).
    schedule_offset: jiff::SignedDuration,
    /// The longest between two looks at an object.
    resync: Duration,
    timings: Timings,
    /// Failures on the Kubernetes side, per object (see [`Reconciler::retry_after`]).
    api_backoff: ApiBackoff,
}

impl Reconciler {
    pub(crate) fn new(
        cluster: Arc<dyn Cluster>,
        ecs: EcsSide,
        schedules: Arc<dyn Schedules>,
        config: &Config,
    ) -> Self {
        Self {
            cluster,
            ecs,
            clock: Arc::new(SystemClock),
            schedules,
            schedule_offset: config.schedule_clock_offset,
            resync: config.resync,
            timings: config.timings.clone(),
            api_backoff: ApiBackoff::default(),
        }
    }

    /// The observer every pass looks through (its change stream triggers reconciles).
    pub(crate) fn observer(&self) -> &Arc<dyn Observer> {
        &self.ecs.observer
    }

    /// When to look again at `obj` after its reconcile failed with `err`: the in-memory
    /// backoff (growing with each consecutive failure), and never sooner than the reconcile
    /// itself asked for when only its status write failed.
    pub(crate) fn retry_after(&self, obj: &EcsInstance, err: &Error) -> Duration {
        let delay = self.api_backoff.failed(obj, self.clock.jitter());
        match err {
            Error::Status { wanted, .. } => delay.max(*wanted),
            Error::NoNamespace(_) | Error::Kube(_) => delay,
        }
    }

    /// [`Reconciler::reconcile_gated`] with the gates all open (no other object, no guard).
    #[cfg(test)]
    pub(crate) async fn reconcile(&self, obj: &EcsInstance) -> Result<Duration, Error> {
        self.reconcile_gated(obj, &Gates::default()).await
    }

    /// Reconciles one object, if `gates` let it use ECS; returns when to look again. Errors are
    /// only Kubernetes API failures; every ECS failure is recorded in status and answered with
    /// a requeue.
    #[instrument(skip_all, fields(namespace, name = %obj.name_any(), instance = %obj.spec.instance_id))]
    pub(crate) async fn reconcile_gated(
        &self,
        obj: &EcsInstance,
        gates: &Gates,
    ) -> Result<Duration, Error> {
        gates.ready().await;
        let result = self.pass(obj, gates).await;
        if result.is_ok() {
            self.api_backoff.succeeded(obj);
        }
        result
    }

    /// The time schedules are evaluated at.
    fn schedule_now(&self) -> Timestamp {
        self.clock
            .now()
            .checked_add(self.schedule_offset)
            .unwrap_or(Timestamp::MAX)
    }

    /// The desired state of `obj` now (see [`desired`]).
    fn desired(&self, obj: &EcsInstance, namespace: &str) -> Result<Desired, desired::Problem> {
        let annotations = obj.metadata.annotations.clone().unwrap_or_default();
        desired::resolve(
            &obj.spec,
            &annotations,
            namespace,
            self.schedules.as_ref(),
            self.schedule_now(),
        )
    }

    async fn pass(&self, obj: &EcsInstance, gates: &Gates) -> Result<Duration, Error> {
        let namespace = obj
            .namespace()
            .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
        tracing::Span::current().record("namespace", namespace.as_str());
        // Before the schedules are listed, a schedule not found may just not be known yet. The
        // wait is bounded: a schedule watch that cannot list must not hold a reconcile (and a
        // graceful shutdown) forever.
        if obj.spec.schedule_ref.is_some()
            && tokio::time::timeout(SCHEDULES_LISTED, self.schedules.ready())
                .await
                .is_err()
        {
            warn!("the EcsPowerSchedules are not listed yet; looking again later");
            return Ok(SCHEDULES_LISTED);
        }
        let previous = obj.status.clone().unwrap_or_default();
        let mut pass = Pass {
            reconciler: self,
            gates,
            obj,
            record: Record::new(
                &previous,
                obj.metadata.generation,
                self.clock.now(),
                self.clock.jitter(),
            ),
            secret_version: None,
            version: obj.resource_version(),
            look_again_at: None,
        };
        match pass.run(&namespace).await? {
            Some(delay) => {
                let delay = match pass.look_again_at {
                    // The boundary itself, not a poll: evaluated at the boundary, the schedule
                    // gives the new state (a wake-up a little early finds the same boundary
                    // again, a moment ahead).
                    Some(at) => delay.min(decide::elapsed(at, self.schedule_now())),
                    None => delay,
                };
                pass.write(delay).await
            }
            // The intent write lost a race: look again with a fresh object.
            None => Ok(CONFLICT_RETRY),
        }
    }
}

/// One reconcile of one object.
struct Pass<'a> {
    reconciler: &'a Reconciler,
    gates: &'a Gates,
    obj: &'a EcsInstance,
    record: Record,
    /// The credentials Secret's resourceVersion: a change resets the backoff.
    secret_version: Option<String>,
    /// The object's resourceVersion every status write is conditional on: the one the decision
    /// was made from, then the one our own intent write left.
    version: Option<String>,
    /// The desired state changes then (a schedule's boundary, an override's end): look again.
    look_again_at: Option<Timestamp>,
}

impl Pass<'_> {
    /// Observes, decides and acts. `Some(delay)`: write the record and look again after
    /// `delay`; `None`: nothing was done because the object changed under us.
    async fn run(&mut self, namespace: &str) -> Result<Option<Duration>, Error> {
        let obj = self.obj;
        let previous = obj.status.clone().unwrap_or_default();
        let started = tokio::time::Instant::now();

        // Admission, before any ECS request (not even a lookup).
        if let Some(refusal) = self.gates.before_lookup(obj, namespace) {
            // Nor on its behalf: a fleet observer it registered with earlier stops reading.
            self.reconciler
                .ecs
                .observer
                .forget(&ObjectRef::from_obj(obj));
            return Ok(Some(self.refuse(&refusal)));
        }

        // The desired state first: a schedule that cannot be followed calls nothing at all.
        let desired = match self.reconciler.desired(obj, namespace) {
            Ok(desired) => desired,
            Err(problem) => {
                info!(%problem, "the schedule cannot be followed; not calling ECS");
                self.record.schedule_problem(&problem);
                return Ok(Some(self.reconciler.resync));
            }
        };
        self.record.desired(&desired);
        self.look_again_at = desired.look_again_at;

        // Observe: credentials first, then the instance.
        let credentials = match self.credentials(namespace).await? {
            Ok(credentials) => credentials,
            Err(message) => {
                let version = self.secret_version.take();
                return Ok(Some(self.record.credentials_problem(message, version)));
            }
        };
        // A new desired state (the spec, or a schedule's boundary) lifts the backoff, as does
        // a changed Secret.
        let backoff_reset = previous.observed_generation != obj.metadata.generation
            || previous
                .desired_power_state
                .is_some_and(|was| was != desired.power_state)
            || (previous.retry.count > 0 && previous.retry.secret_version != self.secret_version);
        if backoff_reset {
            self.record.reset_backoff();
        }
        let mut lookup = Lookup {
            ecs: self.reconciler.ecs.connector.connect(credentials.as_ref()),
            credentials_key: credentials_key(credentials.as_ref()),
            region: obj.spec.region_id.clone(),
            instance_id: obj.spec.instance_id.clone(),
            object: ObjectRef::from_obj(obj),
            freshness: freshness_for(obj, started),
        };
        let (instance, decision) = loop {
            let instance = match self.reconciler.ecs.observer.observe(&lookup).await {
                Ok(instance) => instance,
                Err(err) => {
                    let version = self.secret_version.clone();
                    return Ok(Some(self.record.failed("DescribeInstances", &err, version)));
                }
            };

            // Decide (`backoff_reset` lifts the window of `previous.retry`).
            let decision = decide::decide(&Facts {
                spec: &obj.spec,
                desired: desired.power_state,
                paused: obj.is_paused(),
                status: &previous,
                instance: instance.as_ref(),
                now: self.record.now(),
                backoff_reset,
                timings: &self.reconciler.timings,
            });
            // A call is made only on a reading sent for this reconcile, never on the fleet view.
            if lookup.freshness == Freshness::View && matches!(decision.step, Step::Call(_)) {
                lookup.freshness = Freshness::After(started);
                continue;
            }
            break (instance, decision);
        };
        self.record.observed(instance.as_ref());
        self.record.settle(&decision);

        // The tag guard: read, never changed, unless the instance's tag lists the namespace. It
        // comes after the token bookkeeping, so a token adopted at first sight stays adopted.
        let unclaimed = instance
            .as_ref()
            .and_then(|i| self.gates.after_observe(namespace, i));
        if let Some(refusal) = unclaimed {
            return Ok(Some(self.refuse(&refusal)));
        }

        // Act.
        self.act(&decision, instance.as_ref(), &lookup.ecs).await
    }

    /// Records a refusal of the gates; returns when to look again (a change of owner or of a
    /// Namespace's labels wakes the object earlier).
    fn refuse(&mut self, refusal: &Refusal) -> Duration {
        info!(refusal = ?refusal, "not allowed to use ECS for this object");
        self.record.refused(refusal, &self.obj.spec);
        match refusal {
            Refusal::InstanceNotClaimed { .. } => CLAIM_RECHECK.min(self.reconciler.resync),
            Refusal::DuplicateInstance { .. } | Refusal::CredentialsNotPermitted { .. } => {
                self.reconciler.resync
            }
        }
    }

    /// Carries out the decision's step; see [`Pass::run`] for the answer.
    async fn act(
        &mut self,
        decision: &Decision,
        instance: Option<&Instance>,
        ecs: &Arc<dyn EcsApi>,
    ) -> Result<Option<Duration>, Error> {
        let step = &decision.step;
        self.record.step(step, &self.obj.spec, instance);
        let delay = match step {
            Step::Converged | Step::Paused { .. } => self.reconciler.resync,
            Step::Wait { after, .. } => *after,
            Step::Backoff { until, due } => {
                info!(due = ?due, until = %until, "backoff window open; not calling ECS");
                decide::elapsed(*until, self.record.now()).max(Duration::from_secs(1))
            }
            Step::Blocked(_) => backoff::schedule(ErrorClass::Locked).first,
            Step::Call(mutation) => {
                if let Some(intent) = self.record.intend(mutation, instance) {
                    let cluster = &self.reconciler.cluster;
                    match cluster
                        .write_intent(self.obj, self.version.as_deref(), &intent)
                        .await?
                    {
                        Written::At(version) => self.version = version,
                        Written::Conflict => return Ok(None),
                    }
                }
                self.call(mutation, ecs).await
            }
        };
        Ok(Some(delay))
    }

    /// Makes the mutating call and records its outcome. Returns when to look again.
    async fn call(&mut self, mutation: &Mutation, ecs: &Arc<dyn EcsApi>) -> Duration {
        let spec = &self.obj.spec;
        let result = ecs
            .power(&spec.region_id, &spec.instance_id, mutation.request())
            .await;
        match result {
            Ok(accepted) if accepted.dry_run => {
                self.record.dry_run_passed(mutation, &accepted);
                self.reconciler.resync
            }
            Ok(accepted) => {
                self.record.carried_out(mutation, &accepted, spec);
                self.reconciler.timings.transition_poll
            }
            Err(err) => {
                info!(action = mutation.action().single(), error = %bounded(err.to_string()), "ECS refused the call");
                let version = self.secret_version.clone();
                self.record.not_carried_out(mutation, &err, version)
            }
        }
    }

    /// Reads the referenced Secret (and notes its version). `Ok(Err(message))`: a problem
    /// the user must fix; `Ok(Ok(None))`: no Secret referenced, the controller's own chain.
    async fn credentials(
        &mut self,
        namespace: &str,
    ) -> Result<Result<Option<Credentials>, String>, Error> {
        let Some(reference) = &self.obj.spec.credentials_secret_ref else {
            return Ok(Ok(None));
        };
        let Some(secret) = self
            .reconciler
            .cluster
            .secret(namespace, &reference.name)
            .await?
        else {
            return Ok(Err(format!(
                "Secret {namespace}/{} (spec.credentialsSecretRef) does not exist: create it with keys accessKeyId and accessKeySecret.",
                reference.name
            )));
        };
        self.secret_version = secret.resource_version;
        Ok(Credentials::from_secret_data(&secret.data)
            .map(Some)
            .map_err(|err| format!("Secret {namespace}/{}: {err}", reference.name)))
    }

    /// Writes the finished status (unless nothing changed), publishes its events, and says
    /// when to look again. When the object has moved on since it was read (a cache that trails
    /// the API server, another writer), the status is not written and the object is looked at
    /// again soon; the events still go out, they report calls that were made.
    async fn write(self, delay: Duration) -> Result<Duration, Error> {
        let (status, events) = self.record.finish();
        let cluster = &self.reconciler.cluster;
        let mut next = delay.min(self.reconciler.resync);
        // At fleet scale most resyncs change nothing: skip the write then.
        if self.obj.status.as_ref() != Some(&status)
            && cluster
                .write_status(self.obj, self.version.as_deref(), &status)
                .await
                .map_err(|source| Error::Status {
                    source,
                    wanted: next,
                })?
                == Written::Conflict
        {
            info!("the object changed since it was read; status not written, looking again");
            next = CONFLICT_RETRY;
        }
        for event in &events {
            cluster.publish(self.obj, event).await;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests;
