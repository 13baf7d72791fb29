//! The HTTP server: the ECS endpoint at `/` and the admin API under `/_sim`; [`Simulator`]
//! starts and stops it.

use std::net::SocketAddr;
use std::sync::Arc;
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

use crate::actions::{self, Params};
use crate::admin;
use crate::auth::{Caller, Incoming, decode_form};
use crate::calls::{Action, CallRecord, Outcome};
use crate::codes::SimError;
use crate::config::{ConfigError, SimConfig};
use crate::faults::WireAnswer;
use crate::handle::SimHandle;
use crate::state::{Shared, lock};

/// The API version every request must name.
pub(crate) const API_VERSION: &str = "2014-05-26";

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    /// The configuration was refused.
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    /// The address could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it could not be bound.
        source: std::io::Error,
    },
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

    /// The address the simulator listens on.
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

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", any(ecs_endpoint))
        .nest("/_sim", admin::router())
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
        let answer = actions::dispatch(&shared, action, &params);
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

/// A [`WireFault`](crate::faults::WireFault)'s answer. The bodies are a DescribeInstances-shaped answer with no
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
