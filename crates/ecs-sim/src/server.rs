//! The HTTP server: the ECS endpoint at `/`, the admin API under `/_sim`, and the in-process
//! handle tests drive the simulator with.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, Params};
use crate::auth::{Caller, Incoming, Verifier, decode_form};
use crate::calls::{Action, CallLog, CallRecord, Outcome};
use crate::codes::SimError;
use crate::config::{
    ConfigError, ErrorRates, FaultSpec, InstanceSpec, KeySpec, Latency, SimConfig, TransitionTimes,
};
use crate::faults::{FaultState, Faults, Rng, WireAnswer, WireFault};
use crate::fleet::{Clock, Flags, Fleet, InstanceView};
use ecs_client::types::InstanceStatus;

/// The API version every request must name.
pub const API_VERSION: &str = "2014-05-26";

/// State shared by the HTTP handlers and the in-process handle.
pub struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) fleet: Mutex<Fleet>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) calls: CallLog,
    pub(crate) verifier: Verifier,
    pub(crate) clock: Clock,
    pub(crate) rng: Rng,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new(config: SimConfig) -> Self {
        let fleet = build_fleet(&config, Timestamp::now());
        Self {
            fleet: Mutex::new(fleet),
            faults: Mutex::new(Faults::from_config(&config)),
            calls: CallLog::new(config.log_capacity),
            verifier: Verifier::new(config.effective_keys()),
            clock: Clock::default(),
            rng: Rng::new(config.seed),
            config,
        }
    }

    /// An upper-case UUID-shaped id, as ECS's RequestIds look.
    fn request_id(&self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            0x4000 | (a & 0x0FFF),
            0x8000 | ((b >> 48) & 0x3FFF),
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

fn build_fleet(config: &SimConfig, now: Timestamp) -> Fleet {
    let mut fleet = Fleet::new(config.transitions);
    for spec in &config.instances {
        fleet.insert(spec, now);
    }
    fleet
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a handle operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("no instance {0:?} in the simulator")]
    NoSuchInstance(String),
    #[error("{0}")]
    Invalid(String),
}

/// A running simulator. Dereferences to [`SimHandle`] for inspection and control.
pub struct Simulator {
    handle: SimHandle,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Simulator {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl Simulator {
    /// Validates `config`, loads the fleet and serves on `config.listen` (an ephemeral
    /// loopback port by default).
    pub async fn start(config: SimConfig) -> Result<Self, StartError> {
        config.validate()?;
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let shared = Arc::new(Shared::new(config));
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        Ok(Self {
            handle: SimHandle { shared },
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoint to point an ECS client at.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that outlives borrows of the simulator (clone it into tasks).
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting requests and waits for the server task to end.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until `shutdown` resolves (the `simulate` command).
    pub async fn serve_until(mut self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// In-process inspection and control of a simulator (what the admin API offers over HTTP).
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl SimHandle {
    /// The first configured access key (the default key when none was configured).
    pub fn access_key(&self) -> (String, String) {
        let key = self
            .shared
            .config
            .effective_keys()
            .into_iter()
            .next()
            .unwrap_or_else(|| KeySpec {
                id: crate::config::DEFAULT_ACCESS_KEY_ID.into(),
                secret: crate::config::DEFAULT_ACCESS_KEY_SECRET.into(),
                security_token: None,
            });
        (key.id, key.secret)
    }

    /// One instance as DescribeInstances would show it now.
    pub fn instance(&self, id: &str) -> Option<InstanceView> {
        let now = self.shared.clock.now();
        lock(&self.shared.fleet).get(id).map(|r| r.view(now))
    }

    /// Every instance, in id order.
    pub fn instances(&self) -> Vec<InstanceView> {
        let now = self.shared.clock.now();
        lock(&self.shared.fleet).views(now)
    }

    pub fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.instance(id).map(|v| v.status)
    }

    pub fn instance_count(&self) -> usize {
        lock(&self.shared.fleet).len()
    }

    /// Adds (or replaces) an instance.
    pub fn add_instance(&self, spec: InstanceSpec) -> Result<(), HandleError> {
        spec.validate("instance")
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        let now = self.shared.clock.now();
        let mut faults = lock(&self.shared.faults);
        for fault in &spec.faults {
            let mut fault = fault.clone();
            fault.instance = Some(spec.id.clone());
            faults.add(fault);
        }
        drop(faults);
        lock(&self.shared.fleet).insert(&spec, now);
        Ok(())
    }

    /// Adds many instances at once (one lock; for large fleets).
    pub fn add_instances(
        &self,
        specs: impl IntoIterator<Item = InstanceSpec>,
    ) -> Result<(), HandleError> {
        let now = self.shared.clock.now();
        let mut faults = lock(&self.shared.faults);
        let mut fleet = lock(&self.shared.fleet);
        for spec in specs {
            spec.validate("instance")
                .map_err(|e| HandleError::Invalid(e.to_string()))?;
            for fault in &spec.faults {
                let mut fault = fault.clone();
                fault.instance = Some(spec.id.clone());
                faults.add(fault);
            }
            fleet.insert(&spec, now);
        }
        Ok(())
    }

    fn with_instance<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut crate::fleet::InstanceRecord, Timestamp) -> T,
    ) -> Result<T, HandleError> {
        let now = self.shared.clock.now();
        let mut fleet = lock(&self.shared.fleet);
        let record = fleet
            .get_mut(id)
            .ok_or_else(|| HandleError::NoSuchInstance(id.to_string()))?;
        Ok(f(record, now))
    }

    /// Puts an instance in a stable status now, cancelling any transition.
    pub fn set_status(&self, id: &str, status: InstanceStatus) -> Result<(), HandleError> {
        if status == InstanceStatus::Unknown {
            return Err(HandleError::Invalid("status Unknown cannot be set".into()));
        }
        self.with_instance(id, |r, now| r.force_status(now, status))
    }

    /// Sets the instance's StartTime, e.g. to make it look started long ago.
    pub fn set_start_time(&self, id: &str, at: jiff::Timestamp) -> Result<(), HandleError> {
        self.with_instance(id, |r, now| r.force_start_time(now, at))
    }

    /// Replaces the instance's `OperationLocks` reasons.
    pub fn set_locks(&self, id: &str, reasons: &[&str]) -> Result<(), HandleError> {
        self.with_instance(id, |r, _| {
            r.locks = reasons.iter().map(|s| s.to_string()).collect();
        })
    }

    pub fn add_lock(&self, id: &str, reason: &str) -> Result<(), HandleError> {
        self.with_instance(id, |r, _| {
            if !r.locks.iter().any(|l| l == reason) {
                r.locks.push(reason.to_string());
            }
        })
    }

    pub fn clear_locks(&self, id: &str) -> Result<(), HandleError> {
        self.set_locks(id, &[])
    }

    pub fn set_flags(&self, id: &str, flags: Flags) -> Result<(), HandleError> {
        self.with_instance(id, |r, _| r.flags = flags)
    }

    pub fn flags(&self, id: &str) -> Result<Flags, HandleError> {
        self.with_instance(id, |r, _| r.flags)
    }

    /// Adds a scripted fault (see [`FaultSpec`]).
    pub fn inject(&self, fault: FaultSpec) -> Result<(), HandleError> {
        fault
            .validate("fault")
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        lock(&self.shared.faults).add(fault);
        Ok(())
    }

    /// Adds a fault of the HTTP answer itself (see [`WireFault`]).
    pub fn inject_wire(&self, fault: WireFault) {
        lock(&self.shared.faults).add_wire(fault);
    }

    /// Removes every scripted fault still pending.
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.shared.faults);
        faults.state.scripted.clear();
        faults.state.wire.clear();
    }

    pub fn faults(&self) -> FaultState {
        lock(&self.shared.faults).state.clone()
    }

    pub fn set_error_rates(&self, rates: ErrorRates) -> Result<(), HandleError> {
        rates
            .validate()
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        lock(&self.shared.faults).state.error_rates = rates;
        Ok(())
    }

    /// Requests per second for `action`; `None` removes the quota.
    pub fn set_quota(&self, action: Action, per_second: Option<u32>) {
        let mut faults = lock(&self.shared.faults);
        match per_second {
            Some(q) => faults.state.quotas.insert(action, q),
            None => faults.state.quotas.remove(&action),
        };
    }

    pub fn set_latency(&self, latency: Latency) {
        lock(&self.shared.faults).state.latency = latency;
    }

    /// Transition times for actions accepted from now on.
    pub fn set_transitions(&self, times: TransitionTimes) {
        lock(&self.shared.fleet).transitions = times;
    }

    pub fn transitions(&self) -> TransitionTimes {
        lock(&self.shared.fleet).transitions
    }

    /// Moves the simulator's clock forward: transitions in progress progress by `by`.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    pub fn add_key(&self, key: KeySpec) {
        self.shared.verifier.add_key(key);
    }

    /// Counters and request log.
    pub fn calls(&self) -> &CallLog {
        &self.shared.calls
    }

    /// Back to the start-up configuration: fleet, keys, faults, clock; counters and log cleared.
    pub fn reset(&self) {
        let config = &self.shared.config;
        self.shared.clock.reset();
        *lock(&self.shared.fleet) = build_fleet(config, Timestamp::now());
        *lock(&self.shared.faults) = Faults::from_config(config);
        self.shared.verifier.replace_keys(config.effective_keys());
        self.shared.calls.clear();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", any(ecs_endpoint))
        .nest("/_sim", crate::admin::router())
        .fallback(not_found)
        .with_state(shared)
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    let request_id = shared.request_id();
    error_response(
        &SimError::known("InvalidAction.NotFound"),
        &request_id,
        None,
    )
}

/// The ECS RPC endpoint: every action, both signatures, GET or POST.
async fn ecs_endpoint(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = shared.request_id();
    let delay = lock(&shared.faults).latency(shared.rng.unit());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let query = decode_form(uri.query().unwrap_or_default().as_bytes());
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        decode_form(&body)
    } else {
        Vec::new()
    };
    let incoming = Incoming {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        form: &form,
        headers: &headers,
        body: &body,
    };
    let params = Params::new(query.iter().chain(form.iter()));
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let action_name = header_str("x-acs-action").or(params.get("Action"));
    let action = action_name.and_then(|a| a.parse::<Action>().ok());
    let region = params.get("RegionId");

    let wire = action.and_then(|a| lock(&shared.faults).take_wire(a));
    if let Some(answer) = wire {
        return wire_response(&answer, &request_id);
    }

    let mut caller = Caller::default();
    let mut instances = Vec::new();
    let result = (|| {
        shared
            .verifier
            .verify(&incoming, Timestamp::now(), &mut caller)?;
        let version = header_str("x-acs-version").or(params.get("Version"));
        if version != Some(API_VERSION) {
            return Err(SimError::known("InvalidVersion"));
        }
        let action = action.ok_or_else(|| SimError::known("InvalidAction.NotFound"))?;
        {
            let mut faults = lock(&shared.faults);
            if faults.over_quota(action, Timestamp::now().as_second()) {
                return Err(SimError::known("Throttling.User"));
            }
            if let Some(e) = faults.random_error(shared.rng.unit()) {
                return Err(e);
            }
        }
        let answer = api::dispatch(&shared, action, &params);
        instances = answer.instances;
        answer.result
    })();

    let (response, outcome, status) = match result {
        Ok(body) => (
            success_response(body, &request_id),
            Outcome::Ok,
            StatusCode::OK.as_u16(),
        ),
        Err(e) => (
            error_response(&e, &request_id, region),
            Outcome::Error(e.code.clone()),
            e.http_status,
        ),
    };
    shared.calls.record(CallRecord {
        seq: 0,
        request_id,
        time: Timestamp::now().to_string(),
        action,
        instances,
        outcome,
        http_status: status,
        signature: caller.signature,
        access_key_id: caller.access_key_id,
    });
    response
}

fn json_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", v);
    }
    response
}

/// A [`WireFault`]'s answer. The bodies are a DescribeInstances-shaped answer with no
/// instances, so a client that reads them whole sees a valid, empty answer.
fn wire_response(answer: &WireAnswer, request_id: &str) -> Response {
    const CHUNK: usize = 64 * 1024;
    let head = format!(r#"{{"RequestId":"{request_id}","TotalCount":0,"Padding":""#);
    let tail = r#"","Instances":{"Instance":[]}}"#;
    let chunks: Box<dyn Iterator<Item = Bytes> + Send> = match answer {
        WireAnswer::Redirect { location } => {
            let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            return response;
        }
        WireAnswer::HugeBody { bytes } => {
            let pad = Bytes::from(vec![b'x'; CHUNK]);
            let n = usize::try_from(*bytes / CHUNK as u64).unwrap_or(usize::MAX);
            Box::new(std::iter::repeat_n(pad, n))
        }
        WireAnswer::Drip { chunks, .. } => Box::new(std::iter::repeat_n(
            Bytes::from_static(b"x"),
            *chunks as usize,
        )),
    };
    let interval = match answer {
        WireAnswer::Drip { interval_ms, .. } => Duration::from_millis(*interval_ms),
        _ => Duration::ZERO,
    };
    let pieces = std::iter::once(Bytes::from(head))
        .chain(chunks)
        .chain(std::iter::once(Bytes::from_static(tail.as_bytes())));
    let stream = futures::stream::iter(pieces).then(move |piece| async move {
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        Ok::<_, std::convert::Infallible>(piece)
    });
    let mut response = (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    response
}

fn success_response(body: Value, request_id: &str) -> Response {
    let mut map = match body {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert("RequestId".into(), Value::String(request_id.to_string()));
    json_response(StatusCode::OK, Value::Object(map).to_string(), request_id)
}

/// `{"RequestId","HostId","Code","Message","Recommend"}` with the error's HTTP status.
pub(crate) fn error_response(error: &SimError, request_id: &str, region: Option<&str>) -> Response {
    let host = match region {
        Some(r) if r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            format!("ecs.{r}.aliyuncs.com")
        }
        _ => "ecs.aliyuncs.com".to_string(),
    };
    let body = serde_json::json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": error.code,
        "Message": error.message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}",
            error.code
        ),
    });
    let status = StatusCode::from_u16(error.http_status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, body.to_string(), request_id);
    for (name, value) in &error.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
