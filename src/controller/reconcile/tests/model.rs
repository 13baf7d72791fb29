//! The reboot-token rules against a reference model, on long random walks (issue 24).
//!
//! Each outside audit found a new way to reboot twice, and each fix came with one example. This
//! drives seeded random sequences of what happens to an EcsInstance — created with or without a
//! token, a new token set (plain, or a time as `reboot` writes), a revert to an earlier token,
//! delete and re-create, a controller restart or leader change, status writes failing, a
//! reconcile on a lagging cache, time passing, with the ECS clock ahead or behind — through the real
//! reconciler (tokens, decide, next status) on an in-memory API server and a one-instance ECS
//! whose StartTime has minute precision, and checks after every step that the RebootInstance
//! calls ECS received are the ones the model allows.
//!
//! The model, small enough to read: **a RebootInstance is sent at most once for a token, and
//! only while it is the spec's token, having been set on the object as a value the controller
//! had not seen on it before; never for a token adopted (present when the controller first saw
//! the object as created, unless it is a time written as the object was created), carried
//! out, superseded or reverted to.** And once the controller has had time, the last token asked
//! for is carried out (or, a time, satisfied by a boot after it).
//!
//! "Seen" is what the controller can know: a token it reconciled (a pass on the current object
//! that ended well, or a reboot it recorded) on this object. A value set and replaced before
//! any reconcile saw it is new to the controller, as is, after a delete, any token but the one
//! the object is created again with; the README says the same.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::api::{EcsInstanceSpec, EcsInstanceStatus, PowerState, RebootInFlight, RebootRequest};
use crate::controller::ecs::observe::{DirectObserver, EcsConnector};
use crate::controller::k8s::cluster::SecretData;
use crate::testing::FixedClock;
use ecs_client::{
    Accepted, BatchAccepted, EcsError, Instance, InstanceStatus, PowerAction, PowerRequest,
};

const ID: &str = "i-model";
const START: &str = "2026-12-07T15:00:00Z";

/// The API server's copy of the object, and what it refuses.
#[derive(Default)]
struct Server {
    object: Option<EcsInstance>,
    revision: u64,
    /// Status writes answer 500 while set.
    failing: bool,
}

/// An in-memory API server holding one EcsInstance: conditional status writes (409 on another
/// resourceVersion or another incarnation), spec edits bump the generation.
#[derive(Default)]
struct ModelCluster(Mutex<Server>);

impl ModelCluster {
    fn server(&self) -> std::sync::MutexGuard<'_, Server> {
        self.0.lock().unwrap()
    }

    /// Writes `change` into the status of the object `obj` was read from, if it is still at
    /// `version`.
    fn write(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        change: impl FnOnce(&mut EcsInstanceStatus),
    ) -> Result<Written, kube::Error> {
        let mut server = self.server();
        if server.failing {
            let status = kube::core::Status::failure("etcd is sulking", "InternalError");
            return Err(kube::Error::Api(Box::new(status.with_code(500))));
        }
        server.revision += 1;
        let revision = server.revision;
        let Some(live) = server.object.as_mut() else {
            return Ok(Written::Conflict);
        };
        if live.metadata.uid != obj.metadata.uid
            || live.metadata.resource_version.as_deref() != version
        {
            return Ok(Written::Conflict);
        }
        change(live.status.get_or_insert_with(Default::default));
        live.metadata.resource_version = Some(revision.to_string());
        Ok(Written::At(Some(revision.to_string())))
    }

    /// The spec edited: a new generation and resourceVersion.
    fn edit(&self, edit: impl FnOnce(&mut EcsInstanceSpec)) {
        let mut server = self.server();
        server.revision += 1;
        let revision = server.revision;
        let live = server.object.as_mut().expect("an object to edit");
        edit(&mut live.spec);
        live.metadata.generation = live.metadata.generation.map(|g| g + 1);
        live.metadata.resource_version = Some(revision.to_string());
    }

    /// A new incarnation of the object (a create after a delete): generation 1, no status.
    fn create(&self, spec: EcsInstanceSpec, now: Timestamp) {
        let mut server = self.server();
        server.revision += 1;
        let mut obj = EcsInstance::new("web", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.generation = Some(1);
        obj.metadata.uid = Some(format!("uid-{}", server.revision));
        obj.metadata.resource_version = Some(server.revision.to_string());
        obj.metadata.creation_timestamp = Some(Time(now));
        server.object = Some(obj);
    }

    fn current(&self) -> Option<EcsInstance> {
        self.server().object.clone()
    }
}

#[async_trait]
impl Cluster for ModelCluster {
    async fn secret(&self, _: &str, _: &str) -> Result<Option<SecretData>, kube::Error> {
        Ok(None)
    }

    async fn write_intent(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        intent: &RebootInFlight,
    ) -> Result<Written, kube::Error> {
        self.write(obj, version, |s| s.reboot_in_flight = Some(intent.clone()))
    }

    async fn write_claim(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        at: &MicroTime,
    ) -> Result<Written, kube::Error> {
        self.write(obj, version, |s| s.claimed_at = Some(at.clone()))
    }

    async fn write_status(
        &self,
        obj: &EcsInstance,
        version: Option<&str>,
        status: &EcsInstanceStatus,
    ) -> Result<Written, kube::Error> {
        self.write(obj, version, |s| *s = status.clone())
    }

    async fn publish(&self, _: &EcsInstance, _: &kube::runtime::events::Event) {}
}

/// One running instance. A reboot boots it now, as ECS's clock (the controller's, shifted by
/// `skew`) reads it, to the minute; each reboot is attributed to the token of the intent the
/// reconcile recorded just before it.
struct ModelEcs {
    clock: Arc<FixedClock>,
    cluster: Arc<ModelCluster>,
    state: Mutex<EcsState>,
}

struct EcsState {
    skew: SignedDuration,
    start_time: String,
    /// `(token, controller time)` of every RebootInstance.
    reboots: Vec<(String, Timestamp)>,
}

/// `t` as ECS writes StartTime: to the minute, UTC.
fn ecs_minute(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%MZ").to_string()
}

#[async_trait]
impl EcsApi for ModelEcs {
    async fn describe_instances(&self, _: &str, _: &[String]) -> Result<Vec<Instance>, EcsError> {
        let state = self.state.lock().unwrap();
        Ok(vec![Instance {
            start_time: Some(state.start_time.clone()),
            ..crate::testing::instance(ID, InstanceStatus::Running)
        }])
    }

    async fn power(&self, _: &str, _: &str, request: PowerRequest) -> Result<Accepted, EcsError> {
        assert_eq!(
            request.action(),
            PowerAction::Reboot,
            "the instance is always Running"
        );
        let token = self
            .cluster
            .current()
            .and_then(|o| o.status?.reboot_in_flight)
            .map(|f| f.token)
            .expect("a reboot is sent only after its intent is recorded");
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap();
        state.start_time = ecs_minute(now.checked_add(state.skew).unwrap());
        state.reboots.push((token, now));
        Ok(Accepted {
            request_id: format!("req-{}", state.reboots.len()),
            dry_run: false,
        })
    }

    async fn power_batch(
        &self,
        _: &str,
        _: &[String],
        _: PowerRequest,
    ) -> Result<BatchAccepted, EcsError> {
        unreachable!("reconcile calls one instance at a time")
    }
}

struct Connector(Arc<ModelEcs>);

impl EcsConnector for Connector {
    fn connect(&self, _: Option<&Credentials>) -> Arc<dyn EcsApi> {
        self.0.clone()
    }
}

/// What the model knows of the object (one incarnation: a delete starts afresh).
#[derive(Default)]
struct Model {
    /// Tokens set on the object as values the controller had not seen on it: requests.
    requests: BTreeSet<String>,
    /// Tokens the controller has seen on this object (see the module docs).
    seen: BTreeSet<String>,
    /// The spec's token at the controller's last good look, and whether that look was its
    /// first of the object as created (what it then finds is adopted).
    last_look: Option<Option<String>>,
    /// Requests that can no longer be carried out: the controller saw the spec move on from
    /// them (superseded, reverted away from), or adopted them.
    retired: BTreeSet<String>,
    /// Tokens a RebootInstance carried out on this object.
    rebooted: BTreeSet<String>,
    /// Tokens seen on any incarnation: the walk reverts to these.
    ever_seen: BTreeSet<String>,
}

impl Model {
    /// The token a RebootInstance may carry out now, with `spec` the spec's token.
    fn open(&self, spec: Option<&String>) -> Option<String> {
        spec.filter(|t| {
            self.requests.contains(*t) && !self.retired.contains(*t) && !self.rebooted.contains(*t)
        })
        .cloned()
    }

    /// The controller looked at the object well (a pass on the current copy that ended well)
    /// while the spec said `token`, at `generation`.
    fn looked(&mut self, token: Option<String>, generation: Option<i64>) {
        match &self.last_look {
            // The first look at the object as created: its token is adopted (a time written as
            // the object was created stays a request).
            None if generation == Some(1) => {
                if let Some(t) = token.as_ref().filter(|t| !self.requests.contains(*t)) {
                    self.retired.insert(t.clone());
                }
            }
            Some(Some(previous)) if token.as_ref() != Some(previous) => {
                self.retired.insert(previous.clone());
            }
            _ => {}
        }
        if let Some(t) = &token {
            self.seen.insert(t.clone());
            self.ever_seen.insert(t.clone());
        }
        self.last_look = Some(token);
    }
}

/// The world of one walk.
struct World {
    clock: Arc<FixedClock>,
    cluster: Arc<ModelCluster>,
    ecs: Arc<ModelEcs>,
    reconciler: Reconciler,
    model: Model,
    /// Versions of the object the cache may still hold (a lagging watch).
    cache: Vec<EcsInstance>,
    tokens: u32,
    trace: Vec<String>,
}

impl World {
    fn new() -> Self {
        let clock = Arc::new(FixedClock::new(START.parse().unwrap(), 0.5));
        let cluster = Arc::new(ModelCluster::default());
        let ecs = Arc::new(ModelEcs {
            clock: clock.clone(),
            cluster: cluster.clone(),
            state: Mutex::new(EcsState {
                skew: SignedDuration::ZERO,
                start_time: "2026-12-07T14:00Z".into(),
                reboots: Vec::new(),
            }),
        });
        let reconciler = Self::controller(&clock, &cluster, &ecs);
        Self {
            clock,
            cluster,
            ecs,
            reconciler,
            model: Model::default(),
            cache: Vec::new(),
            tokens: 0,
            trace: Vec::new(),
        }
    }

    /// A controller process: a new one after a restart or a change of leader.
    fn controller(
        clock: &Arc<FixedClock>,
        cluster: &Arc<ModelCluster>,
        ecs: &Arc<ModelEcs>,
    ) -> Reconciler {
        Reconciler::with_clock(
            cluster.clone(),
            EcsSide {
                connector: Arc::new(Connector(ecs.clone())),
                observer: Arc::new(DirectObserver),
            },
            Arc::new(crate::testing::FakeSchedules::default()),
            &Config::default(),
            clock.clone(),
        )
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn advance(&mut self, by: SignedDuration) {
        self.clock.set(self.now().checked_add(by).unwrap());
    }

    fn spec_token(&self) -> Option<String> {
        self.cluster
            .current()
            .and_then(|o| o.spec.reboot.map(|r| r.token))
    }

    /// A token never used before: the time of the request, as `reboot` writes it, or a name.
    fn fresh_token(&mut self, time: bool) -> String {
        self.tokens += 1;
        if time {
            // As `reboot` writes it: the time of the request, with nanoseconds.
            let now = self
                .now()
                .checked_add(SignedDuration::from_millis(125))
                .unwrap();
            self.advance(SignedDuration::from_millis(250));
            now.to_string()
        } else {
            format!("tok-{}", self.tokens)
        }
    }

    fn spec_with(token: Option<String>) -> EcsInstanceSpec {
        let mut spec = EcsInstanceSpec::new(ID, crate::testing::REGION, PowerState::Running);
        spec.reboot = token.map(|token| RebootRequest {
            token,
            mode: crate::api::RebootMode::Soft,
        });
        spec
    }

    fn remember_version(&mut self) {
        if let Some(obj) = self.cluster.current() {
            self.cache.push(obj);
            if self.cache.len() > 4 {
                self.cache.remove(0);
            }
        }
    }

    /// One reconcile, on the current object or (`stale`) on an older copy the cache still has.
    async fn reconcile(&mut self, stale: bool) {
        let obj = match stale {
            true if !self.cache.is_empty() => self.cache[0].clone(),
            _ => match self.cluster.current() {
                Some(obj) => obj,
                None => return,
            },
        };
        let fresh = self
            .cluster
            .current()
            .is_some_and(|c| c.metadata.resource_version == obj.metadata.resource_version);
        let result = self.reconciler.reconcile(&obj, &Gates::default()).await;
        if fresh && result.is_ok() {
            let token = obj.spec.reboot.as_ref().map(|r| r.token.clone());
            self.model.looked(token, obj.metadata.generation);
        }
        self.remember_version();
    }

    /// One random event.
    fn pick(&mut self, rng: &mut StdRng) -> Option<Event> {
        if self.cluster.current().is_none() {
            // Created with no token, a plain token (adopted), or a time written now (a new
            // object asking for a reboot).
            return Some(Event::Create(match rng.random_range(0..3) {
                0 => None,
                1 => Some(format!("created-{}", rng.random_range(0..1000))),
                _ => Some(self.fresh_token(true)),
            }));
        }
        Some(match rng.random_range(0..100) {
            0..10 => Event::Set(self.fresh_token(rng.random_bool(0.5))),
            10..14 => {
                let current = self.spec_token();
                let earlier: Vec<_> = self
                    .model
                    .ever_seen
                    .iter()
                    .filter(|t| Some(*t) != current.as_ref())
                    .cloned()
                    .collect();
                if earlier.is_empty() {
                    return None;
                }
                Event::Revert(earlier[rng.random_range(0..earlier.len())].clone())
            }
            14..17 => Event::Recreate {
                after: SignedDuration::from_secs(rng.random_range(61..600)),
            },
            17..20 => Event::Restart,
            20..26 => Event::StatusWritesFail(!self.cluster.server().failing),
            26..45 => Event::Pass(SignedDuration::from_millis(rng.random_range(300..150_000))),
            45..55 => Event::Reconcile { stale: true },
            _ => Event::Reconcile { stale: false },
        })
    }

    /// Applies one event, and what the model learns of it.
    async fn apply(&mut self, event: Event) {
        self.trace.push(format!("{event:?}"));
        match event {
            Event::Create(token) => {
                self.cluster
                    .create(Self::spec_with(token.clone()), self.now());
                self.model
                    .requests
                    .extend(token.filter(|t| t.parse::<Timestamp>().is_ok()));
            }
            Event::Set(token) => {
                self.cluster
                    .edit(|s| *s = Self::spec_with(Some(token.clone())));
                self.model.requests.insert(token);
            }
            Event::Revert(token) => {
                self.cluster
                    .edit(|s| *s = Self::spec_with(Some(token.clone())));
                // Not seen on this object (it was, on an earlier one): new to the controller.
                if !self.model.seen.contains(&token) {
                    self.model.requests.insert(token);
                }
            }
            Event::Recreate { after } => {
                // Deleted and created again with the same spec (a restore, a GitOps re-create),
                // a while later.
                self.advance(after);
                let token = self.spec_token();
                self.cluster.create(Self::spec_with(token), self.now());
                let ever_seen = std::mem::take(&mut self.model.ever_seen);
                self.model = Model {
                    ever_seen,
                    ..Model::default()
                };
            }
            Event::Restart => {
                self.reconciler = Self::controller(&self.clock, &self.cluster, &self.ecs);
            }
            Event::StatusWritesFail(failing) => self.cluster.server().failing = failing,
            Event::Pass(by) => self.advance(by),
            Event::Reconcile { stale } => self.reconcile(stale).await,
        }
    }

    /// Applies `event` and checks the RebootInstance calls it made against the model.
    async fn step(&mut self, event: Event) -> Result<(), String> {
        let before = self.ecs.state.lock().unwrap().reboots.len();
        let open = self.model.open(self.spec_token().as_ref());
        self.apply(event).await;
        self.check(before, open)
            .map_err(|e| format!("{e}\nafter:\n  {}", self.trace.join("\n  ")))
    }

    /// The model's verdict on the RebootInstance calls made in the last step (`before` calls
    /// had been made before it), given what was open then.
    fn check(&mut self, before: usize, open: Option<String>) -> Result<(), String> {
        let reboots = self.ecs.state.lock().unwrap().reboots.clone();
        for (token, at) in &reboots[before..] {
            if open.as_deref() != Some(token.as_str()) {
                return Err(format!(
                    "RebootInstance for {token:?} at {at}: the model allows {open:?}"
                ));
            }
            if self.model.rebooted.contains(token) {
                return Err(format!("a second RebootInstance for {token:?}"));
            }
            self.model.rebooted.insert(token.clone());
            self.model.seen.insert(token.clone());
            self.model.ever_seen.insert(token.clone());
        }
        Ok(())
    }

    /// Once writes succeed and the controller has had time, the last request is carried out,
    /// once.
    async fn settle(&mut self) -> Result<(), String> {
        self.cluster.server().failing = false;
        let open = self.model.open(self.spec_token().as_ref());
        // Up to 12 minutes: with ECS's clock five minutes ahead, a reboot right after another
        // waits out the StartTime minute as ECS dates it, on the controller's clock.
        for _ in 0..8 {
            let before = self.ecs.state.lock().unwrap().reboots.len();
            let allowed = self.model.open(self.spec_token().as_ref());
            self.advance(SignedDuration::from_secs(90));
            self.reconcile(false).await;
            self.check(before, allowed)?;
        }
        if let Some(token) = open {
            let reboots = self.ecs.state.lock().unwrap().reboots.clone();
            let requested_at = token.parse::<Timestamp>().ok();
            let satisfied = reboots.iter().any(|(t, at)| {
                *t == token || requested_at.is_some_and(|requested| *at > requested)
            });
            if !satisfied {
                let status = self.cluster.current().and_then(|o| o.status);
                return Err(format!(
                    "the request {token:?} was never carried out (reboots {reboots:?}; status {status:?})"
                ));
            }
        }
        Ok(())
    }
}

/// What happens to the object, one thing at a time.
#[derive(Debug)]
enum Event {
    /// Created (it did not exist) with this token.
    Create(Option<String>),
    /// A new token set on the object.
    Set(String),
    /// The spec put back to an earlier token.
    Revert(String),
    /// Deleted and created again with the same spec, `after` later.
    Recreate { after: SignedDuration },
    /// The controller restarted, or another replica took the lease over.
    Restart,
    /// From now on status writes fail (or succeed again).
    StatusWritesFail(bool),
    /// Time passes.
    Pass(SignedDuration),
    /// One reconcile, on the current object or on an older copy a lagging cache still has.
    Reconcile { stale: bool },
}

/// A world whose ECS clock is `skew` off the controller's.
fn world_with_skew(skew: SignedDuration) -> World {
    let mut world = World::new();
    world.ecs.state.lock().unwrap().skew = skew;
    world.trace.push(format!("ECS clock {skew:#} off"));
    world
}

/// One walk of `steps` events from `seed`; the trace on failure. ECS's clock is off by the
/// same amount for the whole walk (up to five minutes ahead or behind), as a real one is.
async fn walk(seed: u64, steps: usize) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let skew = match rng.random_range(0..4) {
        0 | 1 => 0,
        _ => rng.random_range(-300..=300),
    };
    let mut world = world_with_skew(SignedDuration::from_secs(skew));
    for _ in 0..steps {
        if let Some(event) = world.pick(&mut rng) {
            world.step(event).await?;
        }
    }
    world
        .settle()
        .await
        .map_err(|e| format!("{e}\nafter:\n  {}", world.trace.join("\n  ")))
}

/// The audit's reproductions (issue 24 items 1 to 3), each as a scripted walk the model judges.
async fn scripted(skew: SignedDuration, events: Vec<Event>) -> Result<(), String> {
    let mut world = world_with_skew(skew);
    for event in events {
        world.step(event).await?;
    }
    Ok(())
}

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

/// Item 1: `reboot` wrote a time token and it was carried out; ECS's StartTime reads that
/// minute. Deleted and created again with the same spec 75 s later (and a week later): no
/// second reboot.
#[tokio::test]
async fn the_audits_re_create_of_a_carried_out_time_token() {
    use super::model::Event::*;
    for later in [75, 7 * 24 * 3600] {
        let token = "2026-12-07T15:00:14.125Z".to_string();
        let events = vec![
            Create(None),
            Reconcile { stale: false },
            Pass(secs(14)),
            Set(token.clone()),
            Reconcile { stale: false },
            Pass(secs(30)),
            Reconcile { stale: false },
            Recreate { after: secs(later) },
            Reconcile { stale: false },
            Pass(secs(120)),
            Reconcile { stale: false },
        ];
        scripted(SignedDuration::ZERO, events).await.unwrap();
    }
}

/// Item 2: tokens set one after another while the controller waits out a recent start; it
/// carries out the first and the last, and a GitOps revert to one in between is no request.
#[tokio::test]
async fn the_audits_revert_to_a_superseded_token() {
    use super::model::Event::*;
    let mut events = vec![Create(None), Reconcile { stale: false }, Set("r1".into())];
    events.push(Reconcile { stale: false });
    for n in 2..=20 {
        events.push(Pass(SignedDuration::from_millis(300)));
        events.push(Set(format!("r{n}")));
        events.push(Reconcile { stale: false });
    }
    events.extend([
        Pass(secs(90)),
        Reconcile { stale: false },
        Pass(secs(30)),
        Reconcile { stale: false },
        Revert("r5".into()),
        Reconcile { stale: false },
        Pass(secs(120)),
        Reconcile { stale: false },
    ]);
    scripted(SignedDuration::ZERO, events).await.unwrap();
}

/// Item 3: created without a token, given one in generation 2 while every status write failed:
/// the token is a request (carried out once), not adopted at first sight.
#[tokio::test]
async fn the_audits_token_set_while_status_writes_failed() {
    use super::model::Event::*;
    let events = vec![
        StatusWritesFail(true),
        Create(None),
        Reconcile { stale: false },
        Set("sf-tok-1".into()),
        Reconcile { stale: false },
        StatusWritesFail(false),
        Pass(secs(30)),
        Reconcile { stale: false },
    ];
    let mut world = world_with_skew(SignedDuration::ZERO);
    for event in events {
        world.step(event).await.unwrap();
    }
    world.settle().await.unwrap();
}

/// 300 walks of 120 events each: a few seconds. `MODEL_WALKS=N` walks more (the seeds are
/// `0..N`, so a failure is replayed by its seed).
#[tokio::test]
async fn reboots_follow_the_model_on_random_walks() {
    let walks = std::env::var("MODEL_WALKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut failures = BTreeMap::new();
    for seed in 0..walks {
        if let Err(e) = walk(seed, 120).await {
            failures.insert(seed, e);
        }
    }
    if let Some((seed, first)) = failures.iter().next() {
        panic!(
            "{} of {walks} walks broke the model; the first, seed {seed}:\n{first}",
            failures.len()
        );
    }
}
