//! One reconciliation of one EcsInstance: observe → decide → act → record.
//!
//! A [`Reconciler`] holds what every pass needs (the cluster, the ECS side, the clock, the
//! settings); a [`Pass`] is one object's reconcile, read top-down as named steps:
//!
//! 1. [`Pass::admit`]: may the object use ECS at all ([`crate::controller::admission`])?
//! 2. [`Pass::resolve_desired`]: its power state now ([`desired`]: `spec.powerState`, or a
//!    schedule and its overrides); [`Pass::check_cycle`]: a `spec.startAfter` cycle stalls here.
//! 3. [`Pass::read_credentials`]: the referenced Secret, or the controller's own chain.
//! 4. [`Pass::observe_and_decide`]: the instance as ECS reports it, and the [`decide`]d step
//!    (a start or stop held by `spec.startAfter`: [`decide::ordered`], over the other
//!    EcsInstances the [`neighbours`] seam reads from the watch cache).
//! 5. [`Pass::check_claim`]: the tag guard, between the observation and any mutating call.
//! 6. [`Pass::act`]: the step carried out: before a call, the gates asked again and
//!    [`Pass::claim_instance`] (the object's claim on its instance recorded and seen by the
//!    owner index, and the object still its owner), then a reboot's intent recorded, then the
//!    call (not sent if the gates close while it is held in a batch).
//! 7. [`Pass::write`]: the status [`next_status`] built, written conditionally on the version
//!    the decision was made from, and its events.
//!
//! Each step hands the next what it found, or ends the pass early with an [`End`]. What the
//! pass decides is [`decide`]'s, what it writes is [`NextStatus`]'s, what the conditions say
//! is [`conditions`]'s: this module only puts them in order and talks to the two seams, the
//! [`Cluster`] and the ECS side.

pub(crate) mod api_retry;
pub(crate) mod conditions;
pub(crate) mod decide;
pub(crate) mod desired;
pub(crate) mod ecs_retry;
pub(crate) mod neighbours;
pub(crate) mod next_status;
mod superseded;
pub(crate) mod tokens;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;
use tracing::{debug, info, instrument, warn};

use self::api_retry::ApiRetry;
use self::decide::{Decision, Facts, Mutation, Step};
use self::desired::{Desired, Schedules};
use self::neighbours::{Alone, Neighbours};
use self::next_status::NextStatus;
use self::superseded::Superseded;
use crate::api::{EcsInstance, EcsInstanceStatus};
use crate::controller::admission::owners::claim_time;
use crate::controller::admission::{Gates, Refusal};
use crate::controller::clock::{Clock, ScheduleClock, SystemClock, elapsed};
use crate::controller::config::{Config, Timings};
use crate::controller::ecs::observe::{
    EcsSide, Freshness, Lookup, credentials_key, freshness_for, observe_confirmed,
};
use crate::controller::k8s::cluster::{Cluster, Written};
use crate::controller::truncate::truncated;
use crate::ordering::{Change, Hold};
use crate::telemetry::Metrics;
use ecs_client::{Credentials, EcsApi, EcsError, ErrorClass, Instance};

/// How soon to look again after a write found the object changed since it was read: the
/// cache has (or soon has) the newer copy.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// How soon to look again at a copy known to be behind the server ([`superseded`]): a
/// fallback only, the watch delivering the newer copy triggers the reconcile first.
const CACHE_BEHIND: Duration = Duration::from_secs(2);

/// How often an instance the tag guard refused is read again (at most): claiming it is a tag
/// edit in ECS, which no watch reports.
const CLAIM_RECHECK: Duration = Duration::from_secs(60);

/// How long a pass about to act waits for the owner index to see the claim it wrote (the
/// EcsInstance watch's lag); then it ends without acting and looks again.
const CLAIM_SEEN: Duration = Duration::from_secs(10);

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
    /// so the next look must wait at least `wanted`: the delay it asked for when that status
    /// held an ECS backoff, zero otherwise.
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
    /// The time schedules are evaluated at (the clock, shifted by
    /// [`Config::schedule_clock_offset`]).
    schedule_clock: ScheduleClock,
    /// The EcsPowerSchedules objects follow.
    schedules: Arc<dyn Schedules>,
    /// The longest between two looks at an object.
    resync: Duration,
    timings: Timings,
    /// Failures on the Kubernetes side, per object (see [`Reconciler::retry_after`]).
    api_retry: ApiRetry,
    /// Where drift is counted (a registry of its own unless [`Reconciler::with_metrics`]).
    metrics: Metrics,
    /// The other EcsInstances, for `spec.startAfter` (none unless
    /// [`Reconciler::with_neighbours`]).
    neighbours: Arc<dyn Neighbours>,
    /// Copies the API server has moved past (our own writes, refused writes): a pass on one
    /// waits for the watch instead of ending in a 409.
    superseded: Superseded,
}

impl Reconciler {
    /// A reconciler on the system clock.
    pub(crate) fn new(
        cluster: Arc<dyn Cluster>,
        ecs: EcsSide,
        schedules: Arc<dyn Schedules>,
        config: &Config,
    ) -> Self {
        Self::with_clock(cluster, ecs, schedules, config, Arc::new(SystemClock))
    }

    /// A reconciler on `clock` (fixed in tests).
    pub(crate) fn with_clock(
        cluster: Arc<dyn Cluster>,
        ecs: EcsSide,
        schedules: Arc<dyn Schedules>,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cluster,
            ecs,
            schedule_clock: ScheduleClock::new(clock.clone(), config.schedule_clock_offset),
            clock,
            schedules,
            resync: config.resync,
            timings: config.timings.clone(),
            api_retry: ApiRetry::default(),
            metrics: Metrics::default(),
            neighbours: Arc::new(Alone),
            superseded: Superseded::default(),
        }
    }

    /// Reads the other EcsInstances (for `spec.startAfter`) from `neighbours`: the
    /// controller's watch cache.
    pub(crate) fn with_neighbours(mut self, neighbours: Arc<dyn Neighbours>) -> Self {
        self.neighbours = neighbours;
        self
    }

    /// Counts drift in `metrics` (the ones the controller exports).
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The ECS side every pass goes through (its observer's change stream triggers
    /// reconciles).
    pub(crate) fn ecs(&self) -> &EcsSide {
        &self.ecs
    }

    /// The time schedules are evaluated at, for the schedule status controller to share.
    pub(crate) fn schedule_clock(&self) -> &ScheduleClock {
        &self.schedule_clock
    }

    /// When to look again at `obj` after its reconcile failed with `err`: the in-memory
    /// retry policy (growing with each consecutive failure), and never sooner than the
    /// reconcile itself asked for when only its status write failed.
    pub(crate) fn retry_after(&self, obj: &EcsInstance, err: &Error) -> Duration {
        let delay = self.api_retry.failed(obj, self.clock.jitter());
        match err {
            Error::Status { wanted, .. } => delay.max(*wanted),
            Error::NoNamespace(_) | Error::Kube(_) => delay,
        }
    }

    /// Reconciles one object, if `gates` let it use ECS; returns when to look again. Errors are
    /// only Kubernetes API failures; every ECS failure is recorded in status and answered with
    /// a requeue.
    #[instrument(skip_all, fields(namespace, name = %obj.name_any(), instance = %obj.spec.instance_id))]
    pub(crate) async fn reconcile(
        &self,
        obj: &EcsInstance,
        gates: &Gates,
    ) -> Result<Duration, Error> {
        if !gates.ready().await {
            // The run ends before the namespaces allowed the shared credentials were listed:
            // judged now, an allowed object would be refused them. The next run judges it.
            return Ok(CACHE_BEHIND);
        }
        let result = self.pass(obj, gates).await;
        if result.is_ok() {
            self.api_retry.succeeded(obj);
        }
        result
    }

    async fn pass(&self, obj: &EcsInstance, gates: &Gates) -> Result<Duration, Error> {
        let namespace = obj
            .namespace()
            .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
        tracing::Span::current().record("namespace", namespace.as_str());
        if self.superseded.behind(obj) {
            debug!(
                "this copy is behind the API server (a write of ours, or a refused one, moved past it); waiting for the watch"
            );
            return Ok(CACHE_BEHIND);
        }
        // Before the schedules are listed, a schedule not found may just not be known yet. The
        // wait is bounded: a schedule watch that cannot list must not hold a reconcile (and a
        // graceful shutdown) forever.
        if obj.spec.schedule_ref.is_some() {
            match tokio::time::timeout(SCHEDULES_LISTED, self.schedules.ready()).await {
                Ok(true) => {}
                // The run ends before they were listed: the next run judges the object.
                Ok(false) => return Ok(CACHE_BEHIND),
                Err(_) => {
                    warn!("the EcsPowerSchedules are not listed yet; looking again later");
                    return Ok(SCHEDULES_LISTED);
                }
            }
        }
        let mut pass = Pass::new(self, gates, obj, namespace);
        let delay = match pass.steps().await {
            Ok(delay) | Err(End::LookAgain(delay)) => delay,
            Err(End::Raced) => return Ok(CONFLICT_RETRY),
            Err(End::Failed(err)) => return Err(err),
        };
        pass.write(delay).await
    }
}

/// How a pass ends before its last step. The step that ends it has recorded why in the next
/// status.
enum End {
    /// Nothing more to do this time: write the status, look again after this long.
    LookAgain(Duration),
    /// The object changed under the pass (its intent write lost a race): nothing is written,
    /// and the object is looked at again soon, as the cache then has it.
    Raced,
    /// The Kubernetes API failed.
    Failed(Error),
}

impl From<kube::Error> for End {
    fn from(err: kube::Error) -> Self {
        End::Failed(err.into())
    }
}

/// One reconcile of one object.
struct Pass<'a> {
    reconciler: &'a Reconciler,
    gates: &'a Gates,
    obj: &'a EcsInstance,
    namespace: String,
    /// The status as the object was read (what the decision is made from).
    previous: EcsInstanceStatus,
    /// When the pass started: evidence it needs fresh must be read after this.
    started: Instant,
    next: NextStatus,
    /// The credentials Secret's resourceVersion: a change resets the backoff.
    secret_version: Option<String>,
    /// The object's resourceVersion every status write is conditional on: the one the decision
    /// was made from, then the one our own intent write left.
    version: Option<String>,
}

impl<'a> Pass<'a> {
    fn new(
        reconciler: &'a Reconciler,
        gates: &'a Gates,
        obj: &'a EcsInstance,
        namespace: String,
    ) -> Self {
        let previous = obj.status.clone().unwrap_or_default();
        let clock = &reconciler.clock;
        Self {
            next: NextStatus::new(
                &previous,
                obj.metadata.generation,
                clock.now(),
                clock.jitter(),
            ),
            reconciler,
            gates,
            obj,
            namespace,
            previous,
            started: Instant::now(),
            secret_version: None,
            version: obj.resource_version(),
        }
    }

    /// The steps, in order. Returns when to look again.
    async fn steps(&mut self) -> Result<Duration, End> {
        self.admit()?;
        let desired = self.resolve_desired()?;
        self.check_cycle()?;
        match self.converge(&desired).await {
            // The boundary itself, not a poll: evaluated at the boundary, the schedule gives
            // the new state (a wake-up a little early finds the same boundary again, a moment
            // ahead).
            Ok(delay) | Err(End::LookAgain(delay)) => Ok(match desired.look_again_at {
                Some(at) => delay.min(elapsed(at, self.reconciler.schedule_clock.now())),
                None => delay,
            }),
            Err(end) => Err(end),
        }
    }

    /// From the credentials to the act: the steps that bring the instance to `desired`.
    async fn converge(&mut self, desired: &Desired) -> Result<Duration, End> {
        let credentials = self.read_credentials().await?;
        let lookup = self.lookup(credentials.as_ref());
        let (instance, decision) = self.observe_and_decide(desired, lookup.clone()).await?;
        self.check_claim(instance.as_ref())?;
        self.act(&decision, instance.as_ref(), &lookup.ecs).await
    }

    /// Admission, before any ECS request (not even a lookup), and again before a mutating call:
    /// a duplicate, or a namespace not allowed the shared credentials, ends the pass.
    fn admit(&mut self) -> Result<(), End> {
        let Some(refusal) = self.gates.before_lookup(self.obj, &self.namespace) else {
            return Ok(());
        };
        // Nor on its behalf: a fleet observer it registered with earlier stops reading.
        self.reconciler
            .ecs
            .observer
            .forget(&ObjectRef::from_obj(self.obj));
        Err(End::LookAgain(self.refuse(&refusal)))
    }

    /// The desired state first: a schedule that cannot be followed calls nothing at all.
    fn resolve_desired(&mut self) -> Result<Desired, End> {
        let annotations = self.obj.metadata.annotations.clone().unwrap_or_default();
        let resolved = desired::resolve(
            &self.obj.spec,
            &annotations,
            &self.namespace,
            self.reconciler.schedules.as_ref(),
            self.reconciler.schedule_clock.now(),
        );
        match resolved {
            Ok(desired) => {
                self.next.desired(&desired);
                Ok(desired)
            }
            Err(problem) => {
                info!(%problem, "the schedule cannot be followed; not calling ECS");
                self.next.schedule_problem(&problem);
                Err(End::LookAgain(self.reconciler.resync))
            }
        }
    }

    /// A `spec.startAfter` cycle through this object is a spec problem, like a schedule that
    /// cannot be followed: stalled before any ECS request (not even DescribeInstances), until
    /// one of its objects is edited (which wakes the others: `k8s::start_order`).
    fn check_cycle(&mut self) -> Result<(), End> {
        if self.obj.spec.start_after.is_empty() {
            return Ok(());
        }
        let neighbours = self.reconciler.neighbours.as_ref();
        let peers = neighbours::peers(neighbours, self.obj, &self.namespace, Change::Start);
        let Some(cycle) = peers.cycle_through(&self.obj.name_any()) else {
            return Ok(());
        };
        let hold = Step::Held(Hold::Cycle(cycle));
        info!(?hold, "spec.startAfter forms a cycle; not calling ECS");
        self.next.step(&hold, &self.obj.spec, None);
        Err(End::LookAgain(self.reconciler.resync))
    }

    /// Reads the referenced Secret (and notes its version): `None` when none is referenced
    /// (the controller's own chain). A Secret missing or unusable is a problem the user must
    /// fix, recorded, and the end of the pass.
    async fn read_credentials(&mut self) -> Result<Option<Credentials>, End> {
        let Some(reference) = &self.obj.spec.credentials_secret_ref else {
            return Ok(None);
        };
        let namespace = &self.namespace;
        let secret = self
            .reconciler
            .cluster
            .secret(namespace, &reference.name)
            .await?;
        let read = match secret {
            None => Err(format!(
                "Secret {namespace}/{} (spec.credentialsSecretRef) does not exist: create it with keys accessKeyId and accessKeySecret.",
                reference.name
            )),
            Some(secret) => {
                self.secret_version = secret.resource_version;
                Credentials::from_secret_data(&secret.data)
                    .map_err(|err| format!("Secret {namespace}/{}: {err}", reference.name))
            }
        };
        match read {
            Ok(credentials) => Ok(Some(credentials)),
            Err(message) => {
                let version = self.secret_version.take();
                Err(End::LookAgain(
                    self.next.credentials_problem(message, version),
                ))
            }
        }
    }

    /// Which instance to look at, with which API handle, and how fresh the reading must be.
    fn lookup(&self, credentials: Option<&Credentials>) -> Lookup {
        let obj = self.obj;
        Lookup {
            ecs: self.reconciler.ecs.connector.connect(credentials),
            credentials_key: credentials_key(credentials),
            region: obj.spec.region_id.clone(),
            instance_id: obj.spec.instance_id.clone(),
            object: ObjectRef::from_obj(obj),
            freshness: freshness_for(obj, self.started),
        }
    }

    /// Observes the instance and decides the step. A call is only ever decided on a reading
    /// sent for this reconcile: a decision to call made on the fleet view is made again on a
    /// fresh reading.
    async fn observe_and_decide(
        &mut self,
        desired: &Desired,
        mut lookup: Lookup,
    ) -> Result<(Option<Instance>, Decision), End> {
        // A new desired state (the spec, or a schedule's boundary) lifts the backoff, as does
        // a changed Secret.
        let previous = &self.previous;
        let backoff_reset = previous.observed_generation != self.obj.metadata.generation
            || previous
                .desired_power_state
                .is_some_and(|was| was != desired.power_state)
            || (previous.retry.count > 0 && previous.retry.secret_version != self.secret_version);
        if backoff_reset {
            self.next.reset_backoff();
        }
        loop {
            let observer = self.reconciler.ecs.observer.as_ref();
            let instance = match observe_confirmed(observer, &lookup).await {
                Ok(instance) => instance,
                Err(err) => {
                    let version = self.secret_version.clone();
                    return Err(End::LookAgain(self.next.failed(
                        "DescribeInstances",
                        &err,
                        version,
                    )));
                }
            };
            // `backoff_reset` lifts the window of `previous.retry`.
            let decision = decide::decide(&Facts {
                spec: &self.obj.spec,
                desired: desired.power_state,
                paused: self.obj.is_paused(),
                generation: self.obj.metadata.generation,
                created: self.obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
                status: &self.previous,
                instance: instance.as_ref(),
                now: self.next.now(),
                backoff_reset,
                timings: &self.reconciler.timings,
            });
            let decision = self.ordered(decision);
            if lookup.freshness == Freshness::View && matches!(decision.step, Step::Call(_)) {
                lookup.freshness = Freshness::After(self.started);
                continue;
            }
            self.next.observed(instance.as_ref());
            self.next.settle(&decision, &self.obj.spec);
            return Ok((instance, decision));
        }
    }

    /// `spec.startAfter`: a start or stop the decision calls for waits for the other
    /// EcsInstances it is ordered after (read from the watch cache only then).
    fn ordered(&self, decision: Decision) -> Decision {
        let Some(change) = decide::power_change(&decision.step) else {
            return decision;
        };
        let neighbours = self.reconciler.neighbours.as_ref();
        let peers = neighbours::peers(neighbours, self.obj, &self.namespace, change);
        decide::ordered(decision, &self.obj.name_any(), &peers)
    }

    /// The tag guard: read, never changed, unless the instance's tag lists the namespace. It
    /// comes after the token bookkeeping, so a token adopted at first sight stays adopted.
    fn check_claim(&mut self, instance: Option<&Instance>) -> Result<(), End> {
        match instance.and_then(|i| self.gates.after_observe(&self.namespace, i)) {
            Some(refusal) => Err(End::LookAgain(self.refuse(&refusal))),
            None => Ok(()),
        }
    }

    /// Records a refusal of the gates; returns when to look again (a change of owner or of a
    /// Namespace's labels wakes the object earlier).
    fn refuse(&mut self, refusal: &Refusal) -> Duration {
        info!(refusal = ?refusal, "not allowed to use ECS for this object");
        self.next.refused(refusal, &self.obj.spec);
        match refusal {
            Refusal::InstanceNotClaimed { .. } => CLAIM_RECHECK.min(self.reconciler.resync),
            Refusal::DuplicateInstance { .. } | Refusal::CredentialsNotPermitted { .. } => {
                self.reconciler.resync
            }
        }
    }

    /// Carries out the decision's step. Returns when to look again.
    async fn act(
        &mut self,
        decision: &Decision,
        instance: Option<&Instance>,
        ecs: &Arc<dyn EcsApi>,
    ) -> Result<Duration, End> {
        let step = &decision.step;
        self.next.step(step, &self.obj.spec, instance);
        Ok(match step {
            Step::Converged | Step::Paused { .. } | Step::Drifted { .. } => self.reconciler.resync,
            Step::Wait { after, .. } => *after,
            Step::Backoff { until, due } => {
                info!(due = ?due, until = %until, "backoff window open; not calling ECS");
                elapsed(*until, self.next.now()).max(Duration::from_secs(1))
            }
            Step::Blocked(_) => ecs_retry::policy(ErrorClass::Locked).first,
            // Woken when a neighbour changes (`k8s::start_order`); the resync is a fallback.
            Step::Held(hold) => {
                info!(%hold, "ordered by spec.startAfter; not calling ECS");
                self.reconciler.resync
            }
            Step::Call(mutation) => {
                // The gates again, immediately before the call: a Namespace that lost the
                // shared credentials (or an owner that changed) while the instance was being
                // read stops it. (Held back in a batch, it is asked once more as the batch
                // leaves: `call`.)
                self.admit()?;
                self.claim_instance().await?;
                self.record_intent(mutation, instance).await?;
                self.call(mutation, ecs).await?
            }
        })
    }

    /// Before the first mutating call, one owner made to stick (`admission::owners`): the
    /// object's claim on its instance is recorded unless it already is (conditional on the
    /// version the decision was made from, like the reboot intent); the pass goes on only once
    /// the owner index has seen the claim, and so every object created before it, and still
    /// names this object the owner. Otherwise it ends without calling ECS: a duplicate after
    /// all (it withdraws its claim), or a watch too far behind (looked at again soon).
    async fn claim_instance(&mut self) -> Result<(), End> {
        let at = match self.previous.claimed_at.as_ref() {
            Some(at) => at.0,
            None => {
                let at = claim_time(self.next.now());
                let cluster = &self.reconciler.cluster;
                let written = cluster
                    .write_claim(self.obj, self.version.as_deref(), &MicroTime(at))
                    .await?;
                self.wrote();
                match written {
                    Written::At(version) => self.version = version,
                    Written::Conflict => return Err(End::Raced),
                }
                self.next.claimed(at);
                at
            }
        };
        match self.gates.after_claim(self.obj, at, CLAIM_SEEN).await {
            Ok(None) => Ok(()),
            Ok(Some(refusal)) => {
                self.reconciler
                    .ecs
                    .observer
                    .forget(&ObjectRef::from_obj(self.obj));
                Err(End::LookAgain(self.refuse(&refusal)))
            }
            Err(not_seen) => {
                warn!(error = %not_seen, "not acting before the owner index has seen this object's claim; looking again");
                Err(End::LookAgain(CONFLICT_RETRY))
            }
        }
    }

    /// Before a reboot, its intent, conditional on the version the decision was made from: a
    /// crash after the call then finds it and never calls twice.
    async fn record_intent(
        &mut self,
        mutation: &Mutation,
        instance: Option<&Instance>,
    ) -> Result<(), End> {
        let Some(intent) = self.next.intend(mutation, instance) else {
            return Ok(());
        };
        let cluster = &self.reconciler.cluster;
        let written = cluster
            .write_intent(self.obj, self.version.as_deref(), &intent)
            .await?;
        self.wrote();
        match written {
            Written::At(version) => {
                self.version = version;
                Ok(())
            }
            Written::Conflict => Err(End::Raced),
        }
    }

    /// Makes the mutating call and records its outcome. Returns when to look again. The call
    /// carries the gates: held back (batched), it is not sent if they close before it leaves.
    async fn call(&mut self, mutation: &Mutation, ecs: &Arc<dyn EcsApi>) -> Result<Duration, End> {
        let spec = &self.obj.spec;
        let admission = self.gates.admission(self.obj, &self.namespace);
        let result = ecs
            .power_if(
                &spec.region_id,
                &spec.instance_id,
                mutation.request(),
                &admission,
            )
            .await;
        Ok(match result {
            Err(EcsError::NotSent(_)) => {
                info!("not sent: the object may no longer use ECS");
                self.next.not_sent(mutation);
                self.admit()?;
                CONFLICT_RETRY
            }
            Ok(accepted) if accepted.dry_run => {
                self.next.dry_run_passed(mutation, &accepted);
                self.reconciler.resync
            }
            Ok(accepted) => {
                self.next.carried_out(mutation, &accepted, spec);
                self.reconciler.timings.transition_poll
            }
            Err(err) => {
                info!(action = mutation.action().single(), error = %truncated(err.to_string()), "ECS refused the call");
                let version = self.secret_version.clone();
                self.next.not_carried_out(mutation, &err, version)
            }
        })
    }

    /// A write based on `self.version` came back, written or refused: either way the server
    /// has moved past that version, and a pass on a copy of it could only end in a 409.
    fn wrote(&self) {
        let superseded = &self.reconciler.superseded;
        superseded.note(self.obj, self.version.as_deref());
    }

    /// Writes the finished status (unless nothing changed), publishes its events, and says
    /// when to look again. When the object has moved on since it was read (a cache that trails
    /// the API server, another writer), the status is not written and the object is looked at
    /// again soon; the events still go out, they report calls that were made.
    async fn write(self, delay: Duration) -> Result<Duration, Error> {
        if let Some(direction) = self.next.drift_counted() {
            self.reconciler
                .metrics
                .drift_corrected(&self.namespace, direction.as_str());
        }
        let (status, events) = self.next.finish();
        let cluster = &self.reconciler.cluster;
        let mut next = delay.min(self.reconciler.resync);
        // At fleet scale most resyncs change nothing: skip the write then.
        if self.obj.status.as_ref() != Some(&status)
            && cluster
                .write_status(self.obj, self.version.as_deref(), &status)
                .await
                .inspect(|_| {
                    // Written or refused, the version it was based on is behind the server.
                    let superseded = &self.reconciler.superseded;
                    superseded.note(self.obj, self.version.as_deref());
                })
                .map_err(|source| Error::Status {
                    source,
                    // Only an ECS backoff must not be cut short by an early retry of the write.
                    // A status with none (settled: its next look the resync, or a schedule's
                    // next transition) is written again on the API backoff; else an API server
                    // outage that ends just after a reboot leaves the object Rebooting, its
                    // outcome unrecorded, until the resync.
                    wanted: if status.retry.next_attempt_after.is_some() {
                        next
                    } else {
                        Duration::ZERO
                    },
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
