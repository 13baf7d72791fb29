//! Reconcile, pass by pass, against an in-memory cluster and a fake ECS, on a fixed clock:
//! what an operator would see after one look at one object (calls made, status written,
//! events, when the next look is due). No Kubernetes API, no simulator, no wall clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::Event;

use super::*;
use crate::api::{
    DriftPolicy, EcsInstanceSpec, EcsInstanceStatus, PowerState, RebootInFlight, RebootMode,
    RebootRequest, SecretReference,
};
use crate::controller::ecs::observe::{DirectObserver, EcsConnector, Freshness, Lookup, Observer};
use crate::controller::k8s::cluster::SecretData;
use crate::controller::reconcile::ecs_retry::retry_delay;
use crate::testing::{FakeEcs, FakeSchedules, FixedClock, Log, api_error};
use ecs_client::{Accepted, EcsError, InstanceStatus, PowerAction};

const NOW: &str = "2026-11-22T10:30:00Z";
const ID: &str = "i-web1";
const JITTER: f64 = 0.5;
/// The resourceVersion of the object every test reconciles.
const OBJECT_VERSION: u64 = 7;

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A cluster in memory: Secrets to read, and every write and event kept. Like the API server,
/// it holds the object's resourceVersion and refuses a write made from another one (409).
#[derive(Default)]
struct FakeCluster {
    log: Log,
    secrets: HashMap<String, SecretData>,
    /// The object's resourceVersion in the API server: [`OBJECT_VERSION`] unless a test has
    /// moved it on (another writer, or a cache that trails the server); each write bumps it.
    version: Mutex<Option<u64>>,
    statuses: Mutex<Vec<EcsInstanceStatus>>,
    intents: Mutex<Vec<RebootInFlight>>,
    claims: Mutex<Vec<Timestamp>>,
    /// The reasons of the events published.
    events: Mutex<Vec<String>>,
    /// Their notes.
    notes: Mutex<Vec<String>>,
    /// Status writes are answered `500 InternalError` (an API server in trouble).
    failing_status_writes: std::sync::atomic::AtomicBool,
}

impl FakeCluster {
    /// A cluster whose copy of the object is `ahead` writes newer than the one reconciled.
    fn moved_on(ahead: u64) -> Self {
        Self {
            version: Mutex::new(Some(OBJECT_VERSION + ahead)),
            ..Self::default()
        }
    }

    /// Checks the precondition and bumps the version, as the API server does.
    fn write_at(&self, version: Option<&str>, what: &str) -> Written {
        let mut current = self.version.lock().unwrap();
        let at = current.get_or_insert(OBJECT_VERSION);
        if version.is_some_and(|v| v != at.to_string()) {
            self.log.lock().unwrap().push(format!("{what}: conflict"));
            return Written::Conflict;
        }
        self.log.lock().unwrap().push(what.into());
        *at += 1;
        Written::At(Some(at.to_string()))
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn secret(&self, _: &str, name: &str) -> Result<Option<SecretData>, kube::Error> {
        Ok(self.secrets.get(name).map(|s| SecretData {
            data: s.data.clone(),
            resource_version: s.resource_version.clone(),
        }))
    }

    async fn write_intent(
        &self,
        _: &EcsInstance,
        version: Option<&str>,
        intent: &RebootInFlight,
    ) -> Result<Written, kube::Error> {
        let written = self.write_at(version, "write intent");
        if written != Written::Conflict {
            self.intents.lock().unwrap().push(intent.clone());
        }
        Ok(written)
    }

    async fn write_claim(
        &self,
        _: &EcsInstance,
        version: Option<&str>,
        at: &MicroTime,
    ) -> Result<Written, kube::Error> {
        let written = self.write_at(version, "write claim");
        if written != Written::Conflict {
            self.claims.lock().unwrap().push(at.0);
        }
        Ok(written)
    }

    async fn write_status(
        &self,
        _: &EcsInstance,
        version: Option<&str>,
        status: &EcsInstanceStatus,
    ) -> Result<Written, kube::Error> {
        if self
            .failing_status_writes
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.log.lock().unwrap().push("write status: 500".into());
            let status = kube::core::Status::failure("etcd is sulking", "InternalError");
            return Err(kube::Error::Api(Box::new(status.with_code(500))));
        }
        let written = self.write_at(version, "write status");
        if written != Written::Conflict {
            self.statuses.lock().unwrap().push(status.clone());
        }
        Ok(written)
    }

    async fn publish(&self, _: &EcsInstance, event: &Event) {
        self.events.lock().unwrap().push(event.reason.clone());
        self.notes
            .lock()
            .unwrap()
            .extend(event.note.iter().cloned());
    }
}

struct Connector(Arc<FakeEcs>);

impl EcsConnector for Connector {
    fn connect(&self, _: Option<&Credentials>) -> Arc<dyn EcsApi> {
        self.0.clone()
    }
}

/// A reconciler over these fakes, observing through `observer`.
fn reconciler(
    cluster: &Arc<FakeCluster>,
    ecs: &Arc<FakeEcs>,
    schedules: &Arc<FakeSchedules>,
    clock: &Arc<FixedClock>,
    observer: Arc<dyn Observer>,
) -> Reconciler {
    Reconciler::with_clock(
        cluster.clone(),
        EcsSide {
            connector: Arc::new(Connector(ecs.clone())),
            observer,
        },
        schedules.clone(),
        &Config::default(),
        clock.clone(),
    )
}

/// One object, the world around it, and a reconciler over them.
struct World {
    log: Log,
    cluster: Arc<FakeCluster>,
    ecs: Arc<FakeEcs>,
    reconciler: Arc<Reconciler>,
    clock: Arc<FixedClock>,
    schedules: Arc<FakeSchedules>,
}

impl World {
    fn new(instance: Option<Instance>, answer: Result<Accepted, EcsError>) -> Self {
        Self::with_cluster(instance, answer, FakeCluster::default())
    }

    fn with_cluster(
        instance: Option<Instance>,
        answer: Result<Accepted, EcsError>,
        mut cluster: FakeCluster,
    ) -> Self {
        let log = Log::default();
        cluster.log = log.clone();
        let cluster = Arc::new(cluster);
        let ecs = FakeEcs::one(instance, answer, log.clone());
        let clock = Arc::new(FixedClock::new(now(), JITTER));
        let schedules = Arc::new(FakeSchedules::default());
        let reconciler = reconciler(&cluster, &ecs, &schedules, &clock, Arc::new(DirectObserver));
        Self {
            log,
            cluster,
            ecs,
            reconciler: Arc::new(reconciler),
            clock,
            schedules,
        }
    }

    /// One reconcile of `obj`, with the gates all open (no other object, no guard).
    async fn reconcile(&self, obj: &EcsInstance) -> Result<Duration, Error> {
        self.reconciler.reconcile(obj, &Gates::default()).await
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The last status written.
    fn status(&self) -> EcsInstanceStatus {
        self.cluster
            .statuses
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a status was written")
    }

    fn event_reasons(&self) -> Vec<String> {
        self.cluster.events.lock().unwrap().clone()
    }
}

fn instance(status: InstanceStatus) -> Instance {
    Instance {
        start_time: Some("2026-11-22T09:00Z".into()),
        ..crate::testing::instance(ID, status)
    }
}

fn object(power_state: PowerState) -> EcsInstance {
    let mut obj = EcsInstance::new("web-1", EcsInstanceSpec::minimal(ID, power_state));
    obj.metadata.namespace = Some("default".into());
    obj.metadata.generation = Some(1);
    obj.metadata.resource_version = Some(OBJECT_VERSION.to_string());
    obj
}

/// A new token on an object the controller has looked at before (a token already there when
/// it first sees an object is adopted as done: `controller::tokens`).
fn with_reboot(mut obj: EcsInstance, token: &str) -> EcsInstance {
    obj.spec.reboot = Some(RebootRequest {
        token: token.into(),
        mode: RebootMode::Soft,
    });
    let status = obj.status.get_or_insert_with(Default::default);
    status
        .instance_status
        .get_or_insert(InstanceStatus::Running);
    status
        .claimed_at
        .get_or_insert(MicroTime("2026-11-22T09:00:00Z".parse().unwrap()));
    obj
}

fn accepted(request_id: &str) -> Result<Accepted, EcsError> {
    Ok(Accepted {
        request_id: request_id.into(),
        dry_run: false,
    })
}

fn refused(code: &str, http_status: u16) -> Result<Accepted, EcsError> {
    Err(api_error(code, http_status))
}

fn condition<'a>(status: &'a EcsInstanceStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test]
async fn a_stopped_instance_wanted_running_is_started_once_and_polled() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1"));
    let obj = object(PowerState::Running);

    let next = world.reconcile(&obj).await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            "write claim".into(),
            format!("StartInstance {ID}"),
            "write status".into()
        ]
    );
    assert_eq!(next, Config::default().timings.transition_poll);
    let status = world.status();
    // The claim written before the call stays in the status written after it.
    let claims = world.cluster.claims.lock().unwrap().clone();
    assert_eq!(claims, [now()]);
    assert_eq!(status.claimed_at.as_ref().map(|t| t.0), Some(now()));
    let last = status.last_action.as_ref().unwrap();
    assert_eq!(
        (last.action, last.request_id.as_str(), last.dry_run),
        (PowerAction::Start, "req-1", false)
    );
    assert_eq!(last.time.0, now());
    assert_eq!(condition(&status, "Reconciling").status, "True");
    assert_eq!(condition(&status, "Reconciling").reason, "Starting");
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(world.event_reasons(), ["Starting"]);
}

#[tokio::test]
async fn a_converged_instance_is_ready_and_an_unchanged_status_is_not_written_again() {
    let world = World::new(
        Some(instance(InstanceStatus::Running)),
        refused("NeverCalled", 500),
    );
    let mut obj = object(PowerState::Running);

    let next = world.reconcile(&obj).await.unwrap();
    assert_eq!(next, Config::default().resync);
    let status = world.status();
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(condition(&status, "Ready").reason, "InstanceRunning");
    assert_eq!(status.instance_status, Some(InstanceStatus::Running));
    // The owner claims its instance in its first status write (no call needed).
    assert_eq!(status.claimed_at.as_ref().map(|t| t.0), Some(now()));

    // The next resync finds the same: nothing to write.
    obj.status = Some(status);
    world.reconcile(&obj).await.unwrap();
    let writes = world.log().iter().filter(|l| *l == "write status").count();
    assert_eq!(writes, 1, "{:?}", world.log());
    assert!(!world.log().iter().any(|l| l.starts_with("StartInstance")));
}

#[tokio::test]
async fn a_passed_dry_run_is_an_answer_not_a_failure() {
    let world = World::new(
        Some(instance(InstanceStatus::Running)),
        Ok(Accepted {
            request_id: "req-dry".into(),
            dry_run: true,
        }),
    );
    let mut obj = object(PowerState::Stopped);
    obj.spec.dry_run = true;

    let next = world.reconcile(&obj).await.unwrap();

    assert!(
        world
            .log()
            .contains(&format!("StopInstance {ID} (dry run)"))
    );
    assert_eq!(next, Config::default().resync);
    let status = world.status();
    let last = status.last_action.as_ref().unwrap();
    assert_eq!((last.action, last.dry_run), (PowerAction::Stop, true));
    assert_eq!(status.retry.count, 0, "a dry run is no failure: no backoff");
    assert_eq!(condition(&status, "Ready").reason, "DryRun");
    assert!(condition(&status, "Ready").message.contains("req-dry"));
    assert_eq!(condition(&status, "Reconciling").status, "False");
    assert_eq!(condition(&status, "Stalled").status, "False");
    assert_eq!(world.event_reasons(), ["DryRun"]);
}

#[tokio::test]
async fn a_reboot_is_recorded_as_intended_before_it_is_sent() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-r"));
    let obj = with_reboot(object(PowerState::Running), "t1");

    world.reconcile(&obj).await.unwrap();

    // Both writes went through: the status write was made at the version the intent write left
    // (the fake cluster, like the API server, refuses any other).
    assert_eq!(
        world.log()[1..],
        [
            "write intent".to_string(),
            format!("RebootInstance {ID}"),
            "write status".into()
        ]
    );
    let intents = world.cluster.intents.lock().unwrap().clone();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].token, "t1");
    assert_eq!(
        intents[0].start_time_before.as_deref(),
        Some("2026-11-22T09:00Z")
    );
    assert_eq!(intents[0].requested_at.0, now());
    // Accepted: the token is done; the intent stays until ECS shows the boot (until then a new
    // StartTime may be this reboot's, no evidence for a newer token).
    let status = world.status();
    assert_eq!(status.last_reboot_token.as_deref(), Some("t1"));
    assert_eq!(
        status.reboot_in_flight.as_ref().map(|f| f.token.as_str()),
        Some("t1")
    );
    assert_eq!(condition(&status, "Reconciling").reason, "Rebooting");
}

#[tokio::test]
async fn an_object_changed_under_the_intent_is_looked_at_again_without_calling_ecs() {
    let world = World::with_cluster(
        Some(instance(InstanceStatus::Running)),
        accepted("req-r"),
        FakeCluster::moved_on(1),
    );
    let obj = with_reboot(object(PowerState::Running), "t1");

    let next = world.reconcile(&obj).await.unwrap();

    assert_eq!(next, seconds(1));
    assert_eq!(world.log()[1..], ["write intent: conflict".to_string()]);
    assert!(world.cluster.statuses.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_reboot_whose_fate_is_unknown_stays_in_flight_and_backs_off() {
    let world = World::new(
        Some(instance(InstanceStatus::Running)),
        refused("InternalError", 500),
    );
    let obj = with_reboot(object(PowerState::Running), "t1");

    let next = world.reconcile(&obj).await.unwrap();

    let status = world.status();
    let in_flight = status.reboot_in_flight.as_ref().expect("still in flight");
    assert_eq!(in_flight.token, "t1");
    assert_eq!(status.last_reboot_token, None);
    let delay = retry_delay(ErrorClass::Transient, 1, None, JITTER);
    assert_eq!(next, delay);
    assert_eq!(status.retry.count, 1);
    assert_eq!(
        status.retry.last_error_code.as_deref(),
        Some("InternalError")
    );
    let after = jiff::SignedDuration::try_from(delay).unwrap();
    assert_eq!(
        status.retry.next_attempt_after,
        Some(Time(now().checked_add(after).unwrap()))
    );
    assert_eq!(condition(&status, "Reconciling").reason, "Retrying");
    assert_eq!(world.event_reasons(), ["InternalError"]);
}

#[tokio::test]
async fn a_reboot_refused_outright_is_forgotten_so_it_is_sent_again() {
    let world = World::new(
        Some(instance(InstanceStatus::Running)),
        refused("IncorrectInstanceStatus", 403),
    );
    let obj = with_reboot(object(PowerState::Running), "t1");

    world.reconcile(&obj).await.unwrap();

    let status = world.status();
    assert_eq!(status.reboot_in_flight, None);
    assert_eq!(status.last_reboot_token, None);
    assert_eq!(status.retry.count, 1);
}

#[tokio::test]
async fn an_open_backoff_window_calls_nothing_and_keeps_the_conditions() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1"));
    let mut obj = object(PowerState::Running);
    let failed = EcsInstanceStatus {
        observed_generation: Some(1),
        retry: crate::api::RetryStatus {
            count: 2,
            next_attempt_after: Some(Time(
                now()
                    .checked_add(jiff::SignedDuration::from_secs(90))
                    .unwrap(),
            )),
            last_error_code: Some("Throttling.User".into()),
            secret_version: None,
        },
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "Retrying".into(),
            message: "throttled".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }],
        ..EcsInstanceStatus::default()
    };
    obj.status = Some(failed);

    let next = world.reconcile(&obj).await.unwrap();

    assert_eq!(next, seconds(90));
    assert!(!world.log().iter().any(|l| l.starts_with("StartInstance")));
    let status = world.status();
    assert_eq!(status.conditions.len(), 1);
    assert_eq!(condition(&status, "Ready").reason, "Retrying");
    assert_eq!(status.retry.count, 2);
}

#[tokio::test]
async fn a_missing_credentials_secret_stalls_without_calling_ecs() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1"));
    let mut obj = object(PowerState::Running);
    obj.spec.credentials_secret_ref = Some(SecretReference {
        name: "ecs-credentials".into(),
    });

    let next = world.reconcile(&obj).await.unwrap();

    assert_eq!(world.log(), ["write status"]);
    let status = world.status();
    assert_eq!(condition(&status, "Stalled").status, "True");
    assert_eq!(condition(&status, "Stalled").reason, "CredentialsInvalid");
    assert!(
        condition(&status, "Stalled")
            .message
            .contains("Secret default/ecs-credentials")
    );
    // Rechecked within the backoff (10 minutes and more), but never later than the resync.
    assert!(retry_delay(ErrorClass::Credentials, 1, None, JITTER) > Config::default().resync);
    assert_eq!(next, Config::default().resync);
    assert_eq!(world.event_reasons(), ["CredentialsInvalid"]);
}

#[tokio::test]
async fn a_changed_credentials_secret_lifts_the_backoff_at_once() {
    let secret = SecretData {
        data: BTreeMap::from([
            ("accessKeyId".to_string(), b"LTAI-new".to_vec()),
            ("accessKeySecret".to_string(), b"new-secret".to_vec()),
        ]),
        resource_version: Some("v2".into()),
    };
    let cluster = FakeCluster {
        secrets: HashMap::from([("ecs-credentials".to_string(), secret)]),
        ..FakeCluster::default()
    };
    let world = World::with_cluster(
        Some(instance(InstanceStatus::Stopped)),
        accepted("req-1"),
        cluster,
    );
    let mut obj = object(PowerState::Running);
    obj.spec.credentials_secret_ref = Some(SecretReference {
        name: "ecs-credentials".into(),
    });
    obj.status = Some(EcsInstanceStatus {
        observed_generation: Some(1),
        retry: crate::api::RetryStatus {
            count: 3,
            next_attempt_after: Some(Time(
                now()
                    .checked_add(jiff::SignedDuration::from_secs(600))
                    .unwrap(),
            )),
            last_error_code: Some("InvalidAccessKeyId.NotFound".into()),
            secret_version: Some("v1".into()),
        },
        ..EcsInstanceStatus::default()
    });

    world.reconcile(&obj).await.unwrap();

    assert!(world.log().contains(&format!("StartInstance {ID}")));
    assert_eq!(world.status().retry.count, 0);
}

#[tokio::test]
async fn an_unknown_instance_stalls_with_the_fix_in_the_message() {
    let world = World::new(None, accepted("req-1"));
    let obj = object(PowerState::Running);

    world.reconcile(&obj).await.unwrap();

    let status = world.status();
    assert_eq!(status.instance_status, Some(InstanceStatus::Unknown));
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "InstanceNotFound")
    );
    assert!(stalled.message.contains("check spec.instanceId"));
}

/// The cache trails the API server: the copy reconciled was made before a reboot was recorded
/// (the instance has just started, so the copy's pending token waits for the minute to pass).
/// Its status (token not done) must not overwrite the newer one: the write is refused, nothing
/// is called, and the object is looked at again soon.
#[tokio::test]
async fn a_stale_copy_never_overwrites_a_newer_status() {
    let mut just_rebooted = instance(InstanceStatus::Running);
    just_rebooted.start_time = Some("2026-11-22T10:30Z".into());
    let world = World::with_cluster(
        Some(just_rebooted),
        refused("NeverCalled", 500),
        FakeCluster::moved_on(2),
    );
    let stale = with_reboot(object(PowerState::Running), "t1");

    let next = world.reconcile(&stale).await.unwrap();

    assert_eq!(
        world.log(),
        [
            format!("describe [\"{ID}\"]"),
            "write status: conflict".into()
        ]
    );
    assert!(world.cluster.statuses.lock().unwrap().is_empty());
    assert_eq!(next, seconds(1));
}

/// A watch that trails the API server (issue 21's 10,000-object flip on a real server): the
/// copy the cache still holds is one the controller itself wrote over, or one a write was
/// refused at. A pass on it could only end in another 409 after a DescribeInstances for
/// nothing, and on a loaded server those refusals fed on themselves. It does nothing and waits
/// for the watch; the newer copy is reconciled as usual.
#[tokio::test]
async fn a_copy_behind_our_own_write_or_a_refused_one_waits_for_the_watch() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-1"));
    let stale = object(PowerState::Running);
    world.reconcile(&stale).await.unwrap();
    let written = world.log().len();
    assert!(written > 1, "started and recorded: {:?}", world.log());

    // The requeue (a transition poll) comes before the watch delivers our own write.
    let next = world.reconcile(&stale).await.unwrap();
    assert_eq!(
        world.log().len(),
        written,
        "no ECS call, no write: {:?}",
        world.log()
    );
    assert_eq!(next, CACHE_BEHIND);

    // The watch delivers the copy the server holds: reconciled as usual (one look at ECS).
    let mut caught_up = stale.clone();
    caught_up.metadata.resource_version =
        world.cluster.version.lock().unwrap().map(|v| v.to_string());
    caught_up.status = Some(world.status());
    world.reconcile(&caught_up).await.unwrap();
    assert!(
        world.log().len() > written,
        "looked at again: {:?}",
        world.log()
    );

    // A copy another writer moved past: refused once, then left alone until the watch moves on.
    let world = World::with_cluster(
        Some(instance(InstanceStatus::Stopped)),
        accepted("req-1"),
        FakeCluster::moved_on(1),
    );
    world.reconcile(&stale).await.unwrap();
    let refused = world.log();
    assert!(
        refused.iter().any(|l| l.ends_with(": conflict")),
        "{refused:?}"
    );
    world.reconcile(&stale).await.unwrap();
    world.reconcile(&stale).await.unwrap();
    assert_eq!(
        world.log(),
        refused,
        "no second DescribeInstances, no second refused write"
    );
}

/// The API server answers every status write with 500 while ECS refuses the start: the outcome
/// (and its ECS backoff) is never recorded, so only memory can slow the retries down. Each failed
/// reconcile waits longer than the one before (exponential, capped at 5 minutes), never less than
/// the ECS backoff the failure asked for: a handful of StartInstance calls in the first minute
/// instead of one every 5 s.
#[tokio::test]
async fn failing_status_writes_back_off_in_memory() {
    let world = World::new(
        Some(instance(InstanceStatus::Stopped)),
        refused("InternalError", 500),
    );
    world
        .cluster
        .failing_status_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // It has claimed the instance (no call is made before a claim is recorded).
    let mut obj = object(PowerState::Running);
    obj.status = Some(EcsInstanceStatus {
        claimed_at: Some(MicroTime("2026-11-22T09:00:00Z".parse().unwrap())),
        ..EcsInstanceStatus::default()
    });
    let obj = Arc::new(obj);

    let mut delays = Vec::new();
    for _ in 0..8 {
        let err = world.reconcile(&obj).await.unwrap_err();
        delays.push(world.reconciler.retry_after(&obj, &err));
    }

    let ecs_backoff = retry_delay(ErrorClass::Transient, 1, None, JITTER);
    assert_eq!(ecs_backoff, seconds(11));
    assert_eq!(
        delays,
        [11, 11, 22, 44, 88, 176, 300, 300].map(seconds),
        "5 s doubling with 10% jitter, never under the ECS backoff, capped"
    );
    let mut at = Duration::ZERO;
    let calls_in_a_minute = delays
        .iter()
        .take_while(|d| {
            let call_at = at;
            at += **d;
            call_at < seconds(60)
        })
        .count();
    assert_eq!(calls_in_a_minute, 4);
    let starts = world
        .log()
        .iter()
        .filter(|l| l.starts_with("StartInstance"))
        .count();
    assert_eq!(starts, 8, "one call per look");
}

/// The API server is away when a settled status (nothing pending, its next look the resync)
/// is to be written, as after a reboot finishes during a control-plane restart: the write is
/// retried on the API backoff, not an hour later at the resync.
#[tokio::test]
async fn a_settled_status_that_cannot_be_written_is_retried_on_the_api_backoff() {
    let world = World::new(
        Some(instance(InstanceStatus::Running)),
        refused("NeverCalled", 500),
    );
    world
        .cluster
        .failing_status_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let obj = Arc::new(object(PowerState::Running));

    let mut delays = Vec::new();
    for _ in 0..3 {
        let err = world.reconcile(&obj).await.unwrap_err();
        delays.push(world.reconciler.retry_after(&obj, &err));
    }

    assert_eq!(
        delays,
        [5500, 11000, 22000].map(Duration::from_millis),
        "5 s doubling with 10% jitter"
    );
    assert!(world.log().iter().all(|l| !l.starts_with("StartInstance")));
}

/// A hostile or broken endpoint answers with a 5 MB error message (multi-byte characters, so a
/// cut at a byte count lands inside one): status and events get its beginning, about 1 KB, cut
/// on a character boundary, never the whole (the API server would refuse the status write, and
/// every copy would be held in memory).
#[tokio::test]
async fn a_huge_ecs_error_message_is_cut_short_in_status_and_events() {
    let mut err = api_error("InternalError", 500);
    if let EcsError::Api(api) = &mut err {
        api.message = "错误".repeat(5 * 1024 * 1024 / 6);
    }
    let world = World::new(Some(instance(InstanceStatus::Stopped)), Err(err));
    let obj = object(PowerState::Running);

    world.reconcile(&obj).await.unwrap();

    let status = world.status();
    for c in &status.conditions {
        assert!(
            c.message.len() <= 1024,
            "{}: {} bytes",
            c.type_,
            c.message.len()
        );
    }
    let ready = condition(&status, "Ready");
    assert!(ready.message.contains("错误错误"), "{}", ready.message);
    assert!(ready.message.ends_with("(truncated)"), "{}", ready.message);
    let notes = world.cluster.notes.lock().unwrap().clone();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].len() <= 1024, "{} bytes", notes[0].len());
    assert!(notes[0].starts_with("StartInstance failed"), "{}", notes[0]);
}

/// The instance was started and stopped within this minute, and a reboot token is pending: the
/// start that would carry it waits for the minute to pass (its StartTime could not prove it),
/// and the conditions say so.
#[tokio::test]
async fn a_start_that_carries_a_token_waits_out_the_start_minute() {
    let mut stopped = instance(InstanceStatus::Stopped);
    stopped.start_time = Some("2026-11-22T10:30Z".into());
    let world = World::new(Some(stopped), accepted("req-1"));
    let obj = with_reboot(object(PowerState::Running), "t1");

    let next = world.reconcile(&obj).await.unwrap();

    assert!(!world.log().iter().any(|l| l.starts_with("StartInstance")));
    // The end of the StartTime minute, plus the default margin.
    assert_eq!(next, seconds(90));
    let reconciling = condition(&world.status(), "Reconciling").clone();
    assert_eq!(reconciling.reason, "Starting");
    assert!(
        reconciling
            .message
            .contains("start that carries the reboot token")
    );
}

/// The GitOps revert: t1 and t2 were carried out, Git syncs the spec back to t1. No ECS call,
/// one Normal event naming when t1 was carried out (not one per look), Ready as it was.
#[tokio::test]
async fn a_reverted_token_is_not_carried_out_again_and_said_so_once() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-r"));
    world.reconcile(&object(PowerState::Running)).await.unwrap();
    let mut ready = world.status();
    for t in ["t1", "t2"] {
        crate::controller::reconcile::tokens::remember(
            &mut ready,
            t,
            crate::api::RebootOutcome::Rebooted,
            Time("2026-11-22T08:00:00Z".parse().unwrap()),
        );
    }
    let before = condition(&ready, "Ready").clone();
    assert_eq!(before.status, "True");

    let mut reverted = with_reboot(object(PowerState::Running), "t1");
    reverted.metadata.generation = Some(2);
    reverted.metadata.resource_version = Some((OBJECT_VERSION + 1).to_string());
    reverted.status = Some(ready);
    world.reconcile(&reverted).await.unwrap();

    assert!(
        !world.log().iter().any(|l| l.starts_with("RebootInstance")),
        "{:?}",
        world.log()
    );
    let status = world.status();
    assert_eq!(status.last_reboot_token.as_deref(), Some("t1"));
    assert_eq!(status.reboot_history.len(), 2, "nothing new carried out");
    let after = condition(&status, "Ready");
    assert_eq!(
        (&after.status, &after.reason, &after.last_transition_time),
        (&before.status, &before.reason, &before.last_transition_time)
    );
    assert_eq!(world.event_reasons(), ["RebootTokenAlreadyDone"]);
    let note = world.cluster.notes.lock().unwrap().last().cloned().unwrap();
    assert!(
        note.contains("\"t1\"") && note.contains("2026-11-22T08:00:00Z"),
        "{note}"
    );

    // The next look (a resync) says nothing more and calls nothing.
    reverted.metadata.resource_version = Some((OBJECT_VERSION + 2).to_string());
    reverted.status = Some(status);
    world.reconcile(&reverted).await.unwrap();
    assert_eq!(world.event_reasons(), ["RebootTokenAlreadyDone"]);
    assert!(!world.log().iter().any(|l| l.starts_with("RebootInstance")));
}

/// A fresh object (deleted and created again, restored) with a token: adopted, no call.
#[tokio::test]
async fn a_token_on_a_fresh_object_is_adopted_without_a_reboot() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-r"));
    let mut fresh = object(PowerState::Running);
    fresh.spec.reboot = Some(RebootRequest {
        token: "release-42".into(),
        mode: RebootMode::Soft,
    });
    world.reconcile(&fresh).await.unwrap();
    assert!(!world.log().iter().any(|l| l.starts_with("RebootInstance")));
    let status = world.status();
    assert_eq!(status.last_reboot_token.as_deref(), Some("release-42"));
    let adopted = &status.reboot_history[0];
    assert_eq!(adopted.outcome, crate::api::RebootOutcome::Adopted);
    assert_eq!(adopted.time.0, now());
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(world.event_reasons(), ["RebootTokenAdopted"]);
}

/// A second object naming an instance another (older) object owns: Stalled naming the owner,
/// a Warning event, and not a single ECS call, not even DescribeInstances.
#[tokio::test]
async fn a_duplicate_makes_no_ecs_call_and_names_the_owner() {
    use crate::controller::admission::Gates;
    use kube::runtime::watcher;
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-1"));
    let mut owner = object(PowerState::Running);
    owner.metadata.namespace = Some("team-a".into());
    owner.metadata.creation_timestamp = Some(Time("2026-11-22T09:00:00Z".parse().unwrap()));
    let mut duplicate = object(PowerState::Stopped);
    duplicate.metadata.creation_timestamp = Some(Time("2026-11-22T10:00:00Z".parse().unwrap()));
    let gates = Gates::default();
    gates.owners.apply(&watcher::Event::Apply(owner));
    gates
        .owners
        .apply(&watcher::Event::Apply(duplicate.clone()));

    let next = world
        .reconciler
        .reconcile(&duplicate, &gates)
        .await
        .unwrap();

    assert_eq!(world.log(), ["write status"]);
    assert_eq!(next, Config::default().resync);
    let status = world.status();
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "DuplicateInstance")
    );
    assert!(
        stalled.message.contains("team-a/web-1"),
        "{}",
        stalled.message
    );
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(status.claimed_at, None, "a duplicate claims nothing");
    assert_eq!(world.event_reasons(), ["DuplicateInstance"]);
}

/// With the tag guard on, an instance whose tag does not list the namespace is read and
/// reported, never changed; the next look is within a minute (a tag edit has no watch).
#[tokio::test]
async fn the_tag_guard_reads_an_unclaimed_instance_and_never_changes_it() {
    use crate::controller::admission::Gates;
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-1"));
    let gates = Gates {
        tag_guard: Some("owner-namespaces".into()),
        ..Gates::default()
    };

    let next = world
        .reconciler
        .reconcile(&object(PowerState::Stopped), &gates)
        .await
        .unwrap();

    assert_eq!(
        world.log(),
        [format!("describe [\"{ID}\"]"), "write status".into()]
    );
    assert_eq!(next, seconds(60));
    let status = world.status();
    assert_eq!(condition(&status, "Stalled").reason, "InstanceNotClaimed");
    assert_eq!(status.instance_status, Some(InstanceStatus::Running));
}

/// A token already in the spec when the controller first sees an unclaimed instance is adopted
/// as done (recorded) like any other: claiming the instance later must not reboot it.
#[tokio::test]
async fn the_tag_guard_keeps_a_token_seen_at_first_sight_adopted() {
    use crate::controller::admission::Gates;
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-1"));
    let gates = Gates {
        tag_guard: Some("owner-namespaces".into()),
        ..Gates::default()
    };

    let mut restored = object(PowerState::Running);
    restored.spec.reboot = Some(RebootRequest {
        token: "restored".into(),
        mode: RebootMode::Soft,
    });

    world.reconciler.reconcile(&restored, &gates).await.unwrap();

    assert!(!world.log().iter().any(|l| l.starts_with("RebootInstance")));
    let status = world.status();
    assert_eq!(status.last_reboot_token.as_deref(), Some("restored"));
    assert_eq!(condition(&status, "Stalled").reason, "InstanceNotClaimed");
}
mod model;
mod ordering;
mod owners;
mod schedules;
// ---- the fleet observer's view -------------------------------------------------------------

/// An observer with a view of its own that may be behind ECS: a look that takes the view gets
/// `view`; a look that needs a reading sent after it began reads ECS (the fake).
struct ViewObserver {
    log: Log,
    view: Option<Instance>,
}

#[async_trait]
impl Observer for ViewObserver {
    async fn observe(&self, lookup: &Lookup) -> Result<Option<Instance>, EcsError> {
        match lookup.freshness {
            Freshness::View => {
                self.log.lock().unwrap().push("view".into());
                Ok(self.view.clone())
            }
            Freshness::After(_) => DirectObserver.observe(lookup).await,
        }
    }
}

impl World {
    /// ECS shows `instance`; the observer's view shows `view`.
    fn viewing(instance: Option<Instance>, view: Option<Instance>) -> Self {
        let world = Self::new(instance, accepted("req-1"));
        let observer = Arc::new(ViewObserver {
            log: world.log.clone(),
            view,
        });
        let reconciler = reconciler(
            &world.cluster,
            &world.ecs,
            &world.schedules,
            &world.clock,
            observer,
        );
        Self {
            reconciler: Arc::new(reconciler),
            ..world
        }
    }
}

/// An object its controller has reconciled before (status for its generation).
fn looked_at(mut obj: EcsInstance, instance_status: InstanceStatus) -> EcsInstance {
    obj.status = Some(EcsInstanceStatus {
        observed_generation: obj.metadata.generation,
        instance_status: Some(instance_status),
        claimed_at: Some(MicroTime("2026-11-22T09:00:00Z".parse().unwrap())),
        ..EcsInstanceStatus::default()
    });
    obj
}

#[tokio::test]
async fn a_resync_with_nothing_due_decides_on_the_fleet_view_without_calling_ecs() {
    let running = Some(instance(InstanceStatus::Running));
    let world = World::viewing(running.clone(), running);
    let obj = looked_at(object(PowerState::Running), InstanceStatus::Running);

    world.reconcile(&obj).await.unwrap();

    assert_eq!(world.log()[0], "view");
    assert!(!world.log().iter().any(|l| l.starts_with("describe")));
    assert_eq!(condition(&world.status(), "Ready").status, "True");
}

#[tokio::test]
async fn a_call_is_made_only_on_a_reading_sent_for_this_reconcile_never_on_the_view() {
    // The view still shows the instance Stopped; ECS shows it Running (started since).
    let world = World::viewing(
        Some(instance(InstanceStatus::Running)),
        Some(instance(InstanceStatus::Stopped)),
    );
    let obj = looked_at(object(PowerState::Running), InstanceStatus::Stopped);

    world.reconcile(&obj).await.unwrap();

    assert_eq!(
        world.log(),
        ["view", &format!("describe [\"{ID}\"]"), "write status"],
        "the start the view asked for was checked against ECS first, and was not needed"
    );
    assert_eq!(condition(&world.status(), "Ready").status, "True");
}

#[tokio::test]
async fn a_new_reboot_token_and_a_new_generation_are_decided_on_a_fresh_reading() {
    let running = Some(instance(InstanceStatus::Running));
    let world = World::viewing(running.clone(), running.clone());
    let obj = with_reboot(
        looked_at(object(PowerState::Running), InstanceStatus::Running),
        "t1",
    );
    world.reconcile(&obj).await.unwrap();
    assert_eq!(world.log()[0], format!("describe [\"{ID}\"]"));
    assert!(!world.log().contains(&"view".to_string()));

    let world = World::viewing(running.clone(), running);
    let mut obj = looked_at(object(PowerState::Running), InstanceStatus::Running);
    obj.metadata.generation = Some(2);
    world.reconcile(&obj).await.unwrap();
    assert_eq!(world.log()[0], format!("describe [\"{ID}\"]"));
}

// Drift: an instance started or stopped behind the controller's back after it was Ready.

/// One more look at `obj`, as the cache would then hold it (with the status just written, at
/// the version that write left).
async fn look_again(world: &World, obj: &mut EcsInstance) {
    obj.status = Some(world.status());
    let version = *world.cluster.version.lock().unwrap();
    obj.metadata.resource_version = version.map(|v| v.to_string());
    world.reconcile(obj).await.unwrap();
}

fn calls(world: &World, action: &str) -> usize {
    world.log().iter().filter(|l| l.starts_with(action)).count()
}

/// `driftPolicy: Report`: a VM started outside its stopped state is reported (Ready=False,
/// reason Drifted, neither Reconciling nor Stalled; one DriftDetected event, counted once) and
/// left running; stopped again by someone, the object is Ready again; a spec change then acts.
#[tokio::test]
async fn under_report_a_vm_started_behind_our_back_is_reported_once_and_left_running() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-s"));
    let mut obj = object(PowerState::Stopped);
    obj.spec.drift_policy = DriftPolicy::Report;
    world.reconcile(&obj).await.unwrap();
    assert_eq!(condition(&world.status(), "Ready").status, "True");

    world.ecs.put(instance(InstanceStatus::Running));
    look_again(&world, &mut obj).await;
    let status = world.status();
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Drifted")
    );
    assert!(
        ready.message.contains("driftPolicy is Report"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&status, "Reconciling").status, "False");
    assert_eq!(condition(&status, "Stalled").status, "False");
    let drift = status.drift.as_ref().expect("drift recorded");
    assert_eq!(
        (drift.instance_status, drift.seen_at.0),
        (InstanceStatus::Running, now())
    );
    assert_eq!(world.event_reasons(), ["DriftDetected"]);
    let metrics = &world.reconciler.metrics;
    assert_eq!(metrics.drift_count("default", "started"), 1);

    // The next looks report the same, quietly.
    look_again(&world, &mut obj).await;
    look_again(&world, &mut obj).await;
    assert_eq!(world.event_reasons(), ["DriftDetected"]);
    assert_eq!(metrics.drift_count("default", "started"), 1);
    assert_eq!(calls(&world, "StopInstance"), 0, "{:?}", world.log());

    // Someone stops it again: Ready, drift over.
    world.ecs.put(instance(InstanceStatus::Stopped));
    look_again(&world, &mut obj).await;
    let status = world.status();
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(status.drift, None);

    // Drift again, then a spec change: acted on as usual.
    world.ecs.put(instance(InstanceStatus::Running));
    look_again(&world, &mut obj).await;
    assert_eq!(world.event_reasons(), ["DriftDetected", "DriftDetected"]);
    obj.metadata.generation = Some(2);
    obj.spec.stop = Some(crate::api::StopSpec::default());
    look_again(&world, &mut obj).await;
    assert_eq!(calls(&world, "StopInstance"), 1, "{:?}", world.log());
    assert_eq!(world.status().drift, None);
    assert_eq!(metrics.drift_count("default", "started"), 2);
}

/// `driftPolicy: Correct` (the default): a VM stopped behind our back is started again, with
/// one DriftCorrected Warning naming what was seen and when, counted by direction.
#[tokio::test]
async fn under_correct_a_vm_stopped_behind_our_back_is_started_with_a_drift_corrected_event() {
    let world = World::new(Some(instance(InstanceStatus::Running)), accepted("req-s"));
    let mut obj = object(PowerState::Running);
    world.reconcile(&obj).await.unwrap();
    assert_eq!(condition(&world.status(), "Ready").status, "True");

    world.ecs.put(instance(InstanceStatus::Stopped));
    look_again(&world, &mut obj).await;
    assert_eq!(calls(&world, "StartInstance"), 1);
    assert_eq!(world.event_reasons(), ["DriftCorrected", "Starting"]);
    let notes = world.cluster.notes.lock().unwrap().clone();
    assert!(
        notes[0].contains(&format!("seen Stopped at {}", now())) && notes[0].contains("req-s"),
        "{}",
        notes[0]
    );
    let metrics = &world.reconciler.metrics;
    assert_eq!(metrics.drift_count("default", "stopped"), 1);
    assert_eq!(metrics.drift_count("default", "started"), 0);
    // The correction is the controller's own change: no drift any more.
    let status = world.status();
    assert_eq!(status.drift, None);
    assert_eq!(condition(&status, "Reconciling").reason, "Starting");
}

/// Out of stock on StartInstance (after a StopCharging stop): Reconciling with reason
/// InsufficientCapacity, a message that says why and what to do, a Warning event saying the
/// same, and a window of at least a minute before the next StartInstance.
#[tokio::test]
async fn no_stock_on_start_is_insufficient_capacity_retried_after_a_minute() {
    let world = World::new(
        Some(instance(InstanceStatus::Stopped)),
        refused("OperationDenied.NoStock", 403),
    );
    let obj = object(PowerState::Running);

    let next = world.reconcile(&obj).await.unwrap();

    assert!(next >= seconds(60), "{next:?}");
    let status = world.status();
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InsufficientCapacity")
    );
    for words in ["no stock", "StopCharging", "KeepCharging", "req-err"] {
        assert!(
            ready.message.contains(words),
            "{words:?} in {}",
            ready.message
        );
    }
    assert_eq!(condition(&status, "Reconciling").status, "True");
    assert_eq!(condition(&status, "Stalled").status, "False");
    assert_eq!(world.event_reasons(), ["OperationDenied.NoStock"]);
    let notes = world.cluster.notes.lock().unwrap().clone();
    assert!(notes[0].contains("KeepCharging"), "{}", notes[0]);
    assert_eq!(
        status.retry.last_error_code.as_deref(),
        Some("OperationDenied.NoStock")
    );
}

/// The gates with the shared-credentials guard on (the multi-tenant overlay's selector):
/// `permitted` the namespaces it admits, `listed` whether their first list is in.
fn shared_credentials_on(
    permitted: kube::runtime::reflector::Store<
        kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>,
    >,
    listed: crate::controller::listed::Listed,
) -> crate::controller::admission::Gates {
    crate::controller::admission::Gates {
        shared_credentials: Some(crate::controller::admission::SharedCredentials {
            selector: "ecs.powerctl.io/shared-credentials=allowed".into(),
            permitted,
            listed,
        }),
        ..Default::default()
    }
}

/// Issue 24 item 6: with ECS slow to answer, the namespace lost the `shared-credentials`
/// label while the DescribeInstances was in flight. The gates are asked again right before the
/// call: no StartInstance goes out with the controller's credentials, and the object says why.
#[tokio::test]
async fn a_namespace_withdrawn_while_the_instance_is_read_makes_no_call() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::core::PartialObjectMeta;
    use kube::runtime::{reflector, watcher};

    /// Reads the instance, and meanwhile the administrator removes the label.
    struct WithdrawnWhileReading {
        writer: Mutex<reflector::store::Writer<PartialObjectMeta<Namespace>>>,
        namespace: PartialObjectMeta<Namespace>,
    }

    #[async_trait]
    impl Observer for WithdrawnWhileReading {
        async fn observe(&self, lookup: &Lookup) -> Result<Option<Instance>, EcsError> {
            let read = DirectObserver.observe(lookup).await;
            let gone = watcher::Event::Delete(self.namespace.clone());
            self.writer.lock().unwrap().apply_watcher_event(&gone);
            read
        }
    }

    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-s"));
    let (permitted, mut writer) = reflector::store();
    let mut namespace = PartialObjectMeta::<Namespace>::default();
    namespace.metadata.name = Some("default".into());
    // The namespace watch's first list: the namespace is selected.
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(namespace.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let (listed_sender, listed) = crate::controller::listed::Listed::new();
    listed_sender.send_replace(true);
    let gates = shared_credentials_on(permitted, listed);
    let observer = Arc::new(WithdrawnWhileReading {
        writer: Mutex::new(writer),
        namespace,
    });
    let reconciler = reconciler(
        &world.cluster,
        &world.ecs,
        &world.schedules,
        &world.clock,
        observer,
    );

    reconciler
        .reconcile(&object(PowerState::Running), &gates)
        .await
        .unwrap();

    assert_eq!(
        world.log(),
        [format!("describe [\"{ID}\"]"), "write status".into()]
    );
    let stalled = condition(&world.status(), "Stalled").clone();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "CredentialsNotPermitted")
    );
}

/// The run ends (a lost lease, a shutdown) before the namespaces allowed the shared credentials
/// were ever listed: a reconcile still waiting for them judges nothing, rather than refusing an
/// object whose namespace may well be allowed.
#[tokio::test]
async fn a_run_ending_before_the_namespaces_are_listed_judges_nothing() {
    let world = World::new(Some(instance(InstanceStatus::Stopped)), accepted("req-s"));
    let (permitted, _writer) = kube::runtime::reflector::store();
    let (listed_sender, listed) = crate::controller::listed::Listed::new();
    drop(listed_sender);
    let gates = shared_credentials_on(permitted, listed);

    world
        .reconciler
        .reconcile(&object(PowerState::Running), &gates)
        .await
        .unwrap();

    assert_eq!(world.log(), Vec::<String>::new(), "no ECS call, no write");
}

/// Issue 24 item 8: the fleet view lost the instance's row (one page's answer left it out).
/// The miss is checked with a DescribeInstances of that id alone before anything is
/// concluded: the instance is there, the object stays Ready, never Stalled.
#[tokio::test]
async fn a_row_missing_from_the_view_is_asked_for_alone_and_does_not_stall() {
    let world = World::viewing(Some(instance(InstanceStatus::Running)), None);
    let obj = looked_at(object(PowerState::Running), InstanceStatus::Running);

    world.reconcile(&obj).await.unwrap();

    assert_eq!(
        world.log(),
        ["view", &format!("describe [\"{ID}\"]"), "write status"]
    );
    let status = world.status();
    assert_eq!(condition(&status, "Stalled").status, "False");
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(status.instance_status, Some(InstanceStatus::Running));
}

/// An instance ECS does not know, asked for alone too: it is gone, the object is Stalled.
#[tokio::test]
async fn an_instance_missing_from_the_view_and_from_a_lookup_by_id_stalls() {
    let world = World::viewing(None, None);
    let obj = looked_at(object(PowerState::Running), InstanceStatus::Running);

    world.reconcile(&obj).await.unwrap();

    assert_eq!(
        world.log(),
        ["view", &format!("describe [\"{ID}\"]"), "write status"]
    );
    let stalled = condition(&world.status(), "Stalled").clone();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "InstanceNotFound")
    );
}
