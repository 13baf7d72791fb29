//! What the unit tests share (like controller-rs's `fixtures.rs`): a fixed clock, one way to
//! build an instance as ECS shows it, one fake ECS, schedules in memory. Compiled for tests
//! only; integration tests have theirs in `tests/it/support`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::api::power_schedule::{EcsPowerScheduleSpec, RunningWindow, Weekday};
use crate::api::{
    EcsHolidayCalendar, EcsHolidayCalendarSpec, EcsInstanceSpec, EcsPowerSchedule, PowerState,
    ScheduleReference,
};
use crate::controller::clock::Clock;
use crate::controller::ecs::observe::{Freshness, Lookup};
use crate::controller::reconcile::desired::Schedules;
use ecs_client::ratelimit::{RateLimiter, RateLimits};
use ecs_client::{
    Accepted, ApiError, BatchAccepted, BatchItem, EcsApi, EcsError, Instance, InstanceStatus,
    PowerRequest,
};

/// The region every fixture lives in.
pub(crate) const REGION: &str = "cn-hangzhou";

/// A fixed time (set by the test); the jitter is fixed too.
pub(crate) struct FixedClock {
    now: Mutex<Timestamp>,
    jitter: f64,
}

impl FixedClock {
    pub(crate) fn new(now: Timestamp, jitter: f64) -> Self {
        Self {
            now: Mutex::new(now),
            jitter,
        }
    }

    pub(crate) fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap() = to;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }

    fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// An instance as DescribeInstances shows it, in [`REGION`]: no start time, locks or tags
/// (set the fields a test needs with struct update syntax).
pub(crate) fn instance(id: &str, status: InstanceStatus) -> Instance {
    Instance {
        instance_id: id.into(),
        region_id: REGION.into(),
        status,
        start_time: None,
        stopped_mode: None,
        instance_type_family: None,
        instance_charge_type: None,
        expired_time: None,
        locks: Vec::new(),
        tags: Default::default(),
    }
}

/// An ECS refusal with this code.
pub(crate) fn api_error(code: &str, http_status: u16) -> EcsError {
    EcsError::Api(ApiError {
        code: code.into(),
        message: format!("{code} happened"),
        request_id: "req-err".into(),
        http_status,
        recommend: None,
        retry_after: None,
    })
}

/// One call the fake saw.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub(crate) action: &'static str,
    pub(crate) region: String,
    pub(crate) ids: Vec<String>,
    pub(crate) at: Duration,
}

/// A log that ECS calls and a test's other fakes (a cluster's writes) share, in order.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// A fake ECS. It knows the instances put into it, and `i-0..i-999` (Running unless set
/// otherwise); answers power calls with a scripted answer, or item by item with scripted error
/// codes; can fail whole requests; takes a set latency (measure it on tokio's paused clock).
/// DescribeInstances answers the state when it is called (before its rate-limit wait and
/// latency).
pub(crate) struct FakeEcs {
    started: Instant,
    calls: Mutex<Vec<Call>>,
    /// Each call as a line (`describe [ids]`, `StartInstance i-1 (dry run)`), when logging.
    log: Option<Log>,
    instances: Mutex<HashMap<String, Instance>>,
    /// What every power call answers, when set (else per item, see `item_errors`).
    answer: Mutex<Option<Result<Accepted, EcsError>>>,
    item_errors: Mutex<HashMap<String, String>>,
    request_error: Mutex<Option<EcsError>>,
    statuses: Mutex<HashMap<String, InstanceStatus>>,
    latency: Mutex<Duration>,
    /// A client's rate limiter in front: a call waits for its token before it is sent.
    limiter: Option<RateLimiter>,
}

impl Default for FakeEcs {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            calls: Mutex::default(),
            log: None,
            instances: Mutex::default(),
            answer: Mutex::default(),
            item_errors: Mutex::default(),
            request_error: Mutex::default(),
            statuses: Mutex::default(),
            latency: Mutex::new(Duration::from_millis(2)),
            limiter: None,
        }
    }
}

impl FakeEcs {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Behind a client's rate limiter of `qps` calls a second per action.
    pub(crate) fn rate_limited(qps: f64) -> Arc<Self> {
        Arc::new(Self {
            limiter: Some(RateLimiter::new(RateLimits {
                default_qps: qps,
                ..RateLimits::default()
            })),
            ..Self::default()
        })
    }

    /// One instance (or none: ECS does not know it), every power call answered with
    /// `answer`, each call a line in `log`, no latency: the world of one reconcile.
    pub(crate) fn one(
        instance: Option<Instance>,
        answer: Result<Accepted, EcsError>,
        log: Log,
    ) -> Arc<Self> {
        let fake = Self {
            log: Some(log),
            answer: Mutex::new(Some(answer)),
            latency: Mutex::new(Duration::ZERO),
            ..Self::default()
        };
        fake.instances
            .lock()
            .unwrap()
            .extend(instance.map(|i| (i.instance_id.clone(), i)));
        Arc::new(fake)
    }

    /// Adds or replaces an instance (someone changed it in ECS).
    pub(crate) fn put(&self, instance: Instance) {
        self.instances
            .lock()
            .unwrap()
            .insert(instance.instance_id.clone(), instance);
    }

    /// When its clock started: call times are measured from here.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The instance's status from now on.
    pub(crate) fn set_status(&self, id: &str, status: InstanceStatus) {
        self.statuses.lock().unwrap().insert(id.into(), status);
    }

    /// How long every call takes from now on.
    pub(crate) fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap() = latency;
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub(crate) fn calls_of(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }

    /// Power calls on `id` fail with `code` (in a batch, that item only).
    pub(crate) fn fail_item(&self, id: &str, code: &str) {
        self.item_errors
            .lock()
            .unwrap()
            .insert(id.into(), code.into());
    }

    pub(crate) fn fail_requests(&self, error: EcsError) {
        *self.request_error.lock().unwrap() = Some(error);
    }

    fn known(&self, id: &str) -> Option<Instance> {
        if let Some(instance) = self.instances.lock().unwrap().get(id) {
            return Some(instance.clone());
        }
        let numbered = id
            .strip_prefix("i-")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n < 1000);
        numbered.then(|| {
            let status = self.statuses.lock().unwrap().get(id).copied();
            instance(id, status.unwrap_or(InstanceStatus::Running))
        })
    }

    async fn record(
        &self,
        action: &'static str,
        region: &str,
        ids: &[String],
    ) -> Result<(), EcsError> {
        if let Some(limiter) = &self.limiter {
            limiter.acquire(region, action, None).await;
        }
        self.calls.lock().unwrap().push(Call {
            action,
            region: region.into(),
            ids: ids.to_vec(),
            at: self.started.elapsed(),
        });
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match self.request_error.lock().unwrap().clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn log(&self, line: String) {
        if let Some(log) = &self.log {
            log.lock().unwrap().push(line);
        }
    }

    fn request_id(&self) -> String {
        format!("req-{}", self.calls.lock().unwrap().len())
    }
}

#[async_trait]
impl EcsApi for FakeEcs {
    async fn describe_instances(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        assert!(ids.len() <= 100, "DescribeInstances with {} ids", ids.len());
        self.log(format!("describe {ids:?}"));
        let known: Vec<Instance> = ids.iter().filter_map(|id| self.known(id)).collect();
        self.record("DescribeInstances", region, ids).await?;
        Ok(known)
    }

    async fn power(
        &self,
        region: &str,
        id: &str,
        request: PowerRequest,
    ) -> Result<Accepted, EcsError> {
        let action = request.action().single();
        let dry = if request.dry_run() { " (dry run)" } else { "" };
        self.log(format!("{action} {id}{dry}"));
        self.record(action, region, &[id.to_string()]).await?;
        if let Some(answer) = self.answer.lock().unwrap().clone() {
            return answer;
        }
        match self.item_errors.lock().unwrap().get(id) {
            Some(code) => Err(api_error(code, 403)),
            None => Ok(Accepted {
                request_id: self.request_id(),
                dry_run: false,
            }),
        }
    }

    async fn power_batch(
        &self,
        region: &str,
        ids: &[String],
        request: PowerRequest,
    ) -> Result<BatchAccepted, EcsError> {
        let action = request.action().batch();
        assert!(ids.len() <= 100, "{action} with {} ids", ids.len());
        self.log(format!("{action} {ids:?}"));
        self.record(action, region, ids).await?;
        let errors = self.item_errors.lock().unwrap().clone();
        let request_id = self.request_id();
        Ok(BatchAccepted {
            items: ids
                .iter()
                .map(|id| BatchItem {
                    instance_id: id.clone(),
                    result: match errors.get(id) {
                        Some(code) => Err(api_error(code, 0)),
                        None => Ok(()),
                    },
                    previous_status: None,
                    current_status: None,
                })
                .collect(),
            request_id,
        })
    }
}

/// A lookup of `id` with these credentials, for a fresh reading, by an object named after it.
pub(crate) fn target(ecs: &Arc<FakeEcs>, credentials: &str, region: &str, id: &str) -> Lookup {
    Lookup {
        ecs: ecs.clone(),
        credentials_key: credentials.into(),
        region: region.into(),
        instance_id: id.into(),
        object: ObjectRef::new(&format!("obj-{id}")).within("team-a"),
        freshness: Freshness::After(Instant::now()),
    }
}

/// The `n`th of the instances the fake knows.
pub(crate) fn id(n: usize) -> String {
    format!("i-{n}")
}

/// EcsPowerSchedules and EcsHolidayCalendars in memory, keyed by (namespace, name).
#[derive(Default)]
pub(crate) struct FakeSchedules {
    schedules: Mutex<HashMap<(String, String), EcsPowerSchedule>>,
    calendars: Mutex<HashMap<(String, String), EcsHolidayCalendar>>,
    /// The watch ended before its first list ([`FakeSchedules::never_listed`]).
    never_listed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Schedules for FakeSchedules {
    async fn ready(&self) -> bool {
        !self.never_listed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<EcsPowerSchedule>> {
        let map = self.schedules.lock().unwrap();
        map.get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .map(Arc::new)
    }

    fn calendar(&self, namespace: &str, name: &str) -> Option<Arc<EcsHolidayCalendar>> {
        let map = self.calendars.lock().unwrap();
        map.get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .map(Arc::new)
    }
}

impl FakeSchedules {
    /// As if the run ended before the schedules were listed: `ready` says they never will be.
    pub(crate) fn never_listed(&self) {
        self.never_listed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn put(&self, namespace: &str, name: &str, spec: EcsPowerScheduleSpec) {
        let mut obj = EcsPowerSchedule::new(name, spec);
        obj.metadata.namespace = Some(namespace.into());
        self.schedules
            .lock()
            .unwrap()
            .insert((namespace.into(), name.into()), obj);
    }

    /// Creates (or replaces) the calendar `name`.
    pub(crate) fn put_calendar(&self, namespace: &str, name: &str, spec: EcsHolidayCalendarSpec) {
        let mut obj = EcsHolidayCalendar::new(name, spec);
        obj.metadata.namespace = Some(namespace.into());
        self.calendars
            .lock()
            .unwrap()
            .insert((namespace.into(), name.into()), obj);
    }

    /// Deletes the calendar `name`.
    pub(crate) fn delete_calendar(&self, namespace: &str, name: &str) {
        self.calendars
            .lock()
            .unwrap()
            .remove(&(namespace.into(), name.into()));
    }
}

/// Weekdays 08:00 to 20:00 in Asia/Shanghai (UTC+8, no DST).
pub(crate) fn office_hours() -> EcsPowerScheduleSpec {
    EcsPowerScheduleSpec {
        time_zone: "Asia/Shanghai".into(),
        running: vec![RunningWindow {
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            from: "08:00".into(),
            to: "20:00".into(),
        }],
        exceptions: Vec::new(),
        calendars: Vec::new(),
    }
}

/// A spec that follows the EcsPowerSchedule `schedule`.
pub(crate) fn scheduled(instance_id: &str, schedule: &str) -> EcsInstanceSpec {
    EcsInstanceSpec {
        power_state: None,
        schedule_ref: Some(ScheduleReference {
            name: schedule.into(),
        }),
        ..EcsInstanceSpec::minimal(instance_id, PowerState::Running)
    }
}

/// Annotations from pairs.
pub(crate) fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
