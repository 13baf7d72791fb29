//! The admin API under `/_sim` (JSON, unsigned): inspect and steer a running simulator from
//! outside the process. Each route mirrors a [`SimHandle`] method; see `docs/simulator.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::calls::{Action, Outcome};
use crate::config::{ErrorRates, FaultSpec, InstanceSpec, KeySpec, Latency, TransitionTimes};
use crate::faults::WireFault;
use crate::fleet::Flags;
use crate::handle::{HandleError, SimHandle};
use crate::state::Shared;
use ecs_client::types::InstanceStatus;

type AppState = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/instances", get(list_instances).post(add_instances))
        .route("/instances/{id}", get(get_instance))
        .route("/instances/{id}/status", put(set_status))
        .route("/instances/{id}/locks", put(set_locks).delete(clear_locks))
        .route("/instances/{id}/flags", put(set_flags))
        .route("/instances/{id}/tags", put(set_tags))
        .route(
            "/faults",
            get(get_faults).post(add_fault).delete(clear_faults),
        )
        .route("/wire-faults", post(add_wire_fault))
        .route("/error-rates", put(set_error_rates))
        .route("/quotas", put(set_quotas))
        .route("/latency", put(set_latency))
        .route("/transitions", get(get_transitions).put(set_transitions))
        .route("/clock/advance", post(advance_clock))
        .route("/keys", post(add_key))
        .route("/calls", get(calls))
        .route("/log", get(log))
        .route("/reset", post(reset))
}

fn handle(state: &Arc<Shared>) -> SimHandle {
    SimHandle {
        shared: state.clone(),
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The JSON body, or the reason it could not be read (serde's message names the field).
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, String> {
    payload.map(|Json(v)| v).map_err(|e| e.body_text())
}

fn done(result: Result<(), HandleError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ HandleError::NoSuchInstance(_)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => problem(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn list_instances(State(s): AppState) -> Response {
    Json(handle(&s).instances()).into_response()
}

async fn get_instance(State(s): AppState, Path(id): Path<String>) -> Response {
    match handle(&s).instance(&id) {
        Some(view) => Json(view).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no instance {id:?}")),
    }
}

/// One instance (file format) or a list of them; serde's message names a bad field.
async fn add_instances(
    State(s): AppState,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let value = match body(payload) {
        Ok(v) => v,
        Err(m) => return problem(StatusCode::BAD_REQUEST, m),
    };
    let specs = if value.is_array() {
        serde_json::from_value::<Vec<InstanceSpec>>(value)
    } else {
        serde_json::from_value::<InstanceSpec>(value).map(|one| vec![one])
    };
    let specs = match specs {
        Ok(specs) => specs,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("instance: {e}")),
    };
    let h = handle(&s);
    for spec in specs {
        if let Err(e) = h.add_instance(spec) {
            return done(Err(e));
        }
    }
    StatusCode::CREATED.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: InstanceStatus,
}

async fn set_status(
    State(s): AppState,
    Path(id): Path<String>,
    payload: Result<Json<StatusBody>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(b) => done(handle(&s).set_status(&id, b.status)),
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocksBody {
    locks: Vec<String>,
}

async fn set_locks(
    State(s): AppState,
    Path(id): Path<String>,
    payload: Result<Json<LocksBody>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(b) => {
            let reasons: Vec<&str> = b.locks.iter().map(String::as_str).collect();
            done(handle(&s).set_locks(&id, &reasons))
        }
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    tags: BTreeMap<String, String>,
}

async fn set_tags(
    State(s): AppState,
    Path(id): Path<String>,
    payload: Result<Json<TagsBody>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(b) => done(handle(&s).set_tags(&id, b.tags)),
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn clear_locks(State(s): AppState, Path(id): Path<String>) -> Response {
    done(handle(&s).clear_locks(&id))
}

async fn set_flags(
    State(s): AppState,
    Path(id): Path<String>,
    payload: Result<Json<Flags>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(flags) => done(handle(&s).set_flags(&id, flags)),
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn get_faults(State(s): AppState) -> Response {
    Json(handle(&s).faults()).into_response()
}

async fn add_fault(
    State(s): AppState,
    payload: Result<Json<FaultSpec>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(fault) => match handle(&s).inject(fault) {
            Ok(()) => StatusCode::CREATED.into_response(),
            Err(e) => done(Err(e)),
        },
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn add_wire_fault(
    State(s): AppState,
    payload: Result<Json<WireFault>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(fault) => {
            handle(&s).inject_wire(fault);
            StatusCode::CREATED.into_response()
        }
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn clear_faults(State(s): AppState) -> Response {
    handle(&s).clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn set_error_rates(
    State(s): AppState,
    payload: Result<Json<ErrorRates>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(rates) => done(handle(&s).set_error_rates(rates)),
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn set_quotas(
    State(s): AppState,
    payload: Result<Json<BTreeMap<Action, u32>>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(quotas) => {
            let h = handle(&s);
            for action in Action::ALL {
                h.set_quota(action, quotas.get(&action).copied());
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn set_latency(
    State(s): AppState,
    payload: Result<Json<Latency>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(latency) => {
            handle(&s).set_latency(latency);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn get_transitions(State(s): AppState) -> Response {
    Json(handle(&s).transitions()).into_response()
}

async fn set_transitions(
    State(s): AppState,
    payload: Result<Json<TransitionTimes>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(times) => {
            handle(&s).set_transitions(times);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    seconds: f64,
}

async fn advance_clock(
    State(s): AppState,
    payload: Result<Json<AdvanceBody>, JsonRejection>,
) -> Response {
    match body(payload) {
        Ok(b) => match Duration::try_from_secs_f64(b.seconds) {
            Ok(by) => {
                handle(&s).advance(by);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(_) => problem(StatusCode::BAD_REQUEST, "seconds must be a number ≥ 0"),
        },
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

async fn add_key(State(s): AppState, payload: Result<Json<KeySpec>, JsonRejection>) -> Response {
    match body(payload) {
        Ok(key) if key.id.is_empty() || key.secret.is_empty() => problem(
            StatusCode::BAD_REQUEST,
            "id and secret must both be non-empty",
        ),
        Ok(key) => {
            handle(&s).add_key(key);
            StatusCode::CREATED.into_response()
        }
        Err(m) => problem(StatusCode::BAD_REQUEST, m),
    }
}

#[derive(Deserialize)]
struct CallsQuery {
    action: Option<String>,
    instance: Option<String>,
    outcome: Option<String>,
}

async fn calls(State(s): AppState, Query(q): Query<CallsQuery>) -> Response {
    let action = match q.action.as_deref().map(str::parse::<Action>).transpose() {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let outcome = q.outcome.as_deref().map(|o| match o {
        "Ok" => Outcome::Ok,
        code => Outcome::error(code),
    });
    let counters = s
        .calls
        .counters(action, q.instance.as_deref(), outcome.as_ref());
    let total: u64 = counters.iter().map(|c| c.count).sum();
    Json(json!({ "total": total, "counters": counters })).into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    limit: Option<usize>,
}

async fn log(State(s): AppState, Query(q): Query<LogQuery>) -> Response {
    let mut entries = s.calls.log();
    if let Some(limit) = q.limit {
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
    }
    Json(entries).into_response()
}

async fn reset(State(s): AppState) -> Response {
    handle(&s).reset();
    StatusCode::NO_CONTENT.into_response()
}
