//! HTTP routing: parses Kubernetes API paths by hand (one fallback handler) because the path
//! shape depends on whether the resource is namespaced, which only the registry knows.

use super::discovery;
use super::error::ApiError;
use super::events;
use super::faults::{Faults, Injected, Verb};
use super::openapi;
use super::protobuf;
use super::registry::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, Deleted, EventType, PatchKind, State, WriteCtx, parse_apply_body};
use super::table::{self, IncludeObject};
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub(crate) struct Shared {
    pub state: Arc<Mutex<State>>,
    pub faults: Faults,
    pub addr: String,
    pub bookmark_interval: Duration,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // State is only mutated through complete operations; a panicking request cannot
        // leave it half-written in a way that matters more than losing the simulator.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn json_response(code: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ok_json(code: StatusCode, v: &Value) -> Response {
    json_response(code, v.to_string().into_bytes(), "application/json")
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if e.plain_text {
        return json_response(
            code,
            b"404 page not found\n".to_vec(),
            "text/plain; charset=utf-8",
        );
    }
    let mut r = ok_json(code, &e.to_status());
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// How the client wants objects rendered.
#[derive(Clone, Copy)]
enum Rendering {
    Full,
    /// `Accept: ...;as=PartialObjectMetadata[List]` (kube's metadata API).
    MetadataOnly,
    /// `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` (`kubectl get`).
    Table(IncludeObject),
}

/// Presents a stored object as the requested version (storage is version-agnostic).
fn present(def: &ResourceDef, obj: &Arc<Value>, r: Rendering) -> Value {
    match r {
        Rendering::MetadataOnly => json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
        Rendering::Full | Rendering::Table(_) => {
            if let Some(converted) = events::from_storage(def, obj) {
                return converted;
            }
            let want = def.api_version();
            if obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
                (**obj).clone()
            } else {
                let mut o = (**obj).clone();
                o["apiVersion"] = Value::String(want);
                o
            }
        }
    }
}

fn write_present(out: &mut Vec<u8>, def: &ResourceDef, obj: &Arc<Value>, r: Rendering) {
    let want = def.api_version();
    let direct = matches!(r, Rendering::Full | Rendering::Table(_))
        && !def.is_new_events()
        && obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str());
    let res = if direct {
        serde_json::to_writer(&mut *out, &**obj)
    } else {
        serde_json::to_writer(&mut *out, &present(def, obj, r))
    };
    // Serialising an in-memory Value into a Vec cannot fail.
    debug_assert!(res.is_ok());
}

struct ResourcePath {
    def: Arc<ResourceDef>,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_resource_path(
    state: &State,
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> Result<ResourcePath, ApiError> {
    let lookup = |plural: &str| state.registry.get(group, version, plural);
    // An unknown group also gets the mux's plain-text 404 from a real server; kubesim answers it
    // with a `Status` because the reboot command and `kubectl ecsi` recognise a missing CRD by
    // that Status's message (docs/kubesim.md, "Compared with a real API server").
    let no_route = || {
        if state
            .registry
            .resources_in(group, version)
            .iter()
            .any(|d| d.custom)
        {
            ApiError::no_route_in_custom_group(path)
        } else {
            ApiError::no_route(path)
        }
    };
    let (namespace, rest) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && lookup(rest[2]).is_some_and(|d| d.namespaced)
    {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return Err(no_route());
    }
    let def = lookup(rest[0]).ok_or_else(no_route)?;
    let name = rest.get(1).map(|s| s.to_string());
    let status = match rest.get(2) {
        None => false,
        Some(&"status") if def.status_subresource => true,
        Some(_) => return Err(no_route()),
    };
    if !def.namespaced && namespace.is_some() {
        return Err(no_route());
    }
    if def.namespaced && namespace.is_none() && name.is_some() {
        return Err(no_route());
    }
    Ok(ResourcePath {
        def,
        namespace,
        name,
        status,
    })
}

fn verb_for(method: &Method, has_name: bool, watch: bool) -> Verb {
    match (method.as_str(), has_name) {
        ("GET", true) => Verb::Get,
        ("GET", false) if watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => Verb::Other,
    }
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// The single entry point for every request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let q: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if segs.first() == Some(&"kubesim") {
        return admin(&shared, &method, &segs[1..]);
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (group, version, rest): (String, String, Vec<&str>) = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("".into(), "v1".into(), rest.to_vec()),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => {
            (g.to_string(), v.to_string(), rest.to_vec())
        }
        _ => {
            let d = shared.faults.on_request(Verb::Other, "");
            if let Some(delay) = d.delay {
                tokio::time::sleep(delay).await;
            }
            return discovery_response(&shared, &segs, &accept, &path);
        }
    };
    let parsed = {
        let st = shared.lock();
        parse_resource_path(&st, &group, &version, &rest, &path)
    };
    let rp = match parsed {
        Ok(rp) => rp,
        Err(e) => {
            shared.faults.on_request(Verb::Other, "");
            return error_response(&e);
        }
    };
    let watch = truthy(&q, "watch");
    let verb = verb_for(&method, rp.name.is_some(), watch);
    let resource_label = if rp.status {
        format!("{}/status", rp.def.plural)
    } else {
        rp.def.plural.clone()
    };
    let mut decision = shared.faults.on_request_from(&super::faults::Request {
        verb,
        resource: &resource_label,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    });
    decision.wait().await;
    match decision.fail {
        Some(Injected::ServerError) => {
            return error_response(&ApiError::internal(
                "kubesim: injected fault: internal error",
            ));
        }
        Some(Injected::TooManyRequests { retry_after_secs }) => {
            return error_response(&ApiError::too_many_requests(retry_after_secs));
        }
        Some(Injected::Forbidden) => {
            let scope = match &rp.namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            return error_response(&ApiError::plain(
                403,
                "Forbidden",
                format!(
                    "{} is forbidden: kubesim: injected fault: cannot {} resource \"{}\" in API group \"{}\" {scope}",
                    rp.def.qualified_plural(),
                    verb.as_str(),
                    resource_label,
                    rp.def.group
                ),
            ));
        }
        Some(Injected::Conflict) => {
            return error_response(&ApiError::plain(
                409,
                "Conflict",
                "kubesim: injected fault: the object has been modified; please apply your changes to the latest version and try again".into(),
            ));
        }
        None => {}
    }
    let rendering = if table::wanted(&accept) {
        Rendering::Table(IncludeObject::from_query(
            q.get("includeObject").map(String::as_str),
        ))
    } else if accept.contains("as=PartialObjectMetadata") {
        Rendering::MetadataOnly
    } else {
        Rendering::Full
    };
    match serve_resource(&shared, rp, verb, &q, &headers, &body, rendering).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn discovery_response(shared: &Shared, segs: &[&str], accept: &str, path: &str) -> Response {
    let st = shared.lock();
    let aggregated = accept.contains("as=APIGroupDiscoveryList");
    let doc = match segs {
        ["version"] => Some(discovery::version()),
        ["healthz"] | ["readyz"] | ["livez"] => {
            return json_response(StatusCode::OK, b"ok".to_vec(), "text/plain");
        }
        ["api"] if aggregated => {
            return json_response(
                StatusCode::OK,
                discovery::aggregated(&st.registry, true)
                    .to_string()
                    .into_bytes(),
                discovery::AGGREGATED_CONTENT_TYPE,
            );
        }
        ["apis"] if aggregated => {
            return json_response(
                StatusCode::OK,
                discovery::aggregated(&st.registry, false)
                    .to_string()
                    .into_bytes(),
                discovery::AGGREGATED_CONTENT_TYPE,
            );
        }
        ["openapi", "v3"] => Some(openapi::v3_index(&st.registry)),
        ["openapi", "v3", "api", v] => openapi::v3_group_version(&st.registry, "", v),
        ["openapi", "v3", "apis", g, v] => openapi::v3_group_version(&st.registry, g, v),
        ["openapi", "v2"] if accepts_json(accept) => Some(openapi::v2(&st.registry)),
        ["openapi", "v2"] => {
            return error_response(&ApiError::plain(
                406,
                "NotAcceptable",
                "kubesim serves /openapi/v2 as application/json only".into(),
            ));
        }
        ["api"] => Some(discovery::core_versions(&shared.addr)),
        ["api", v] => discovery::resource_list(&st.registry, "", v),
        ["apis"] => Some(discovery::group_list(&st.registry)),
        ["apis", g] => discovery::group(&st.registry, g),
        ["apis", g, v] => discovery::resource_list(&st.registry, g, v),
        _ => None,
    };
    match doc {
        Some(d) => ok_json(StatusCode::OK, &d),
        None => error_response(&ApiError::no_route(path)),
    }
}

fn admin(shared: &Shared, method: &Method, segs: &[&str]) -> Response {
    match (method.as_str(), segs) {
        ("GET", ["requests"]) => {
            let counts: Vec<Value> = shared
                .faults
                .requests()
                .0
                .iter()
                .map(|((v, r), n)| json!({"verb": v.as_str(), "resource": r, "count": n}))
                .collect();
            ok_json(StatusCode::OK, &Value::Array(counts))
        }
        ("POST", ["drop-watches"]) => {
            shared.faults.drop_watches();
            ok_json(StatusCode::OK, &json!({"dropped": true}))
        }
        ("POST", ["compact"]) => {
            shared.faults.compact_history();
            ok_json(StatusCode::OK, &json!({"compacted": true}))
        }
        _ => error_response(&ApiError::no_route("/kubesim")),
    }
}

/// Whether an Accept header allows a JSON answer.
fn accepts_json(accept: &str) -> bool {
    accept.is_empty()
        || accept.split(',').any(|m| {
            let media = m.split(';').next().unwrap_or("").trim();
            matches!(media, "application/json" | "*/*" | "application/*")
        })
}

/// A create or update body: JSON, or the protobuf kubectl sends for built-in kinds.
fn parse_object_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) == Some(protobuf::CONTENT_TYPE) {
        return protobuf::decode(body);
    }
    parse_body(body)
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

fn selectors(
    def: &ResourceDef,
    q: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = match q.get("labelSelector") {
        Some(s) => LabelSelector::parse(s).map_err(ApiError::bad_request)?,
        None => LabelSelector::default(),
    };
    let fields = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(
            &events::field_selector_to_storage(def, s),
            def.field_selectors,
        )
        .map_err(ApiError::bad_request)?,
        None => FieldSelector::default(),
    };
    Ok((labels, fields))
}

async fn serve_resource(
    shared: &Arc<Shared>,
    rp: ResourcePath,
    verb: Verb,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    rendering: Rendering,
) -> Result<Response, ApiError> {
    let def = rp.def.clone();
    // The store works in storage terms: events.k8s.io/v1 events are kept as core v1 events.
    let store_def = if def.is_new_events() {
        shared
            .lock()
            .registry
            .get("", "v1", "events")
            .unwrap_or(def.clone())
    } else {
        def.clone()
    };
    let ns = rp.namespace.clone().unwrap_or_default();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let ctx = WriteCtx {
        def: store_def.clone(),
        namespace: ns.clone(),
        status: rp.status,
        manager: q.get("fieldManager").filter(|m| !m.is_empty()).cloned(),
        default_manager: user_agent
            .split('/')
            .next()
            .unwrap_or("unknown")
            .to_string(),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        strict: q.get("fieldValidation").is_some_and(|v| v == "Strict"),
        warn: q.get("fieldValidation").is_none_or(|v| v == "Warn"),
        warnings: Default::default(),
    };
    let name = rp.name.clone().unwrap_or_default();
    let one = |code: StatusCode, obj: &Arc<Value>| {
        let mut out = Vec::new();
        write_present(&mut out, &def, obj, rendering);
        json_response(code, out, "application/json")
    };
    let answer = match verb {
        Verb::Get => {
            let obj = shared.lock().get(&store_def, &ns, &name)?;
            if let Rendering::Table(include) = rendering {
                let t = table::table(
                    &def,
                    &[present(&def, &obj, rendering)],
                    object_rv(&obj),
                    None,
                    include,
                );
                return Ok(ok_json(StatusCode::OK, &t));
            }
            Ok(one(StatusCode::OK, &obj))
        }
        Verb::List => {
            let (labels, fields) = selectors(&def, q)?;
            let limit = match q.get("limit") {
                Some(l) => Some(l.parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "limit must be a non-negative integer, got {l:?}"
                    ))
                })?)
                .filter(|l| *l > 0),
                None => None,
            };
            let res = shared.lock().list(
                &store_def,
                rp.namespace.as_deref(),
                &labels,
                &fields,
                limit,
                q.get("continue")
                    .map(String::as_str)
                    .filter(|c| !c.is_empty()),
            )?;
            Ok(list_response(
                &def,
                res.items,
                res.resource_version,
                res.continue_token,
                rendering,
            ))
        }
        Verb::Watch => {
            let (labels, fields) = selectors(&def, q)?;
            Ok(start_watch(
                shared,
                def.clone(),
                rp.namespace,
                labels,
                fields,
                q,
                rendering,
            ))
        }
        Verb::Create => {
            if rp.status {
                return Err(ApiError::method_not_allowed(
                    "create is not supported on the status subresource",
                ));
            }
            let v = events::to_storage(&def, parse_object_body(headers, body)?);
            let obj = shared.lock().create(&ctx, v)?;
            Ok(one(StatusCode::CREATED, &obj))
        }
        Verb::Update => {
            let v = events::to_storage(&def, parse_object_body(headers, body)?);
            let obj = shared.lock().update(&ctx, &name, v)?;
            Ok(one(StatusCode::OK, &obj))
        }
        Verb::Patch => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let media = ct.split(';').next().unwrap_or("").trim();
            let force = truthy(q, "force");
            let kind = match media {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" if def.custom => {
                    return Err(ApiError::unsupported_patch_type(true));
                }
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    PatchKind::Apply { force }
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            if force && !matches!(kind, PatchKind::Apply { .. }) {
                return Err(ApiError::bad_request(
                    "force may only be specified with apply patches",
                ));
            }
            let body = events_patch_to_storage(&def, &kind, body)?;
            let (obj, created) = shared.lock().patch(&ctx, &name, kind, &body)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(one(code, &obj))
        }
        Verb::Delete => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_body(body)?
            };
            if options
                .pointer("/dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                let mut ctx = ctx;
                ctx.dry_run = true;
                return delete_response(
                    &def,
                    shared.lock().delete(&ctx, &name, &options)?,
                    rendering,
                );
            }
            let res = shared.lock().delete(&ctx, &name, &options)?;
            delete_response(&def, res, rendering)
        }
        Verb::DeleteCollection => {
            let (labels, fields) = selectors(&def, q)?;
            let mut st = shared.lock();
            let names = st.matching_names(&def, rp.namespace.as_deref(), &labels, &fields);
            let mut items = Vec::new();
            for (ons, n) in names {
                let c = WriteCtx {
                    def: def.clone(),
                    namespace: ons,
                    status: false,
                    manager: ctx.manager.clone(),
                    default_manager: ctx.default_manager.clone(),
                    dry_run: ctx.dry_run,
                    strict: false,
                    warn: false,
                    warnings: Default::default(),
                };
                match st.delete(&c, &n, &Value::Null)? {
                    Deleted::Gone(o) | Deleted::Pending(o) => items.push(o),
                }
            }
            let rv = st.rv;
            drop(st);
            Ok(list_response(&def, items, rv, None, rendering))
        }
        Verb::Other => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            def.qualified_plural()
        ))),
    };
    // Unknown fields dropped under `fieldValidation=Warn`, one `Warning` header each, as the API
    // server sends them (`299 - "unknown field \"spec.x\""`).
    let warnings = std::mem::take(&mut *ctx.warnings.lock().unwrap_or_else(|p| p.into_inner()));
    answer.map(|mut response| {
        for w in warnings {
            let quoted = format!("299 - {}", Value::String(w));
            if let Ok(v) = HeaderValue::from_str(&quoted) {
                response.headers_mut().append(header::WARNING, v);
            }
        }
        response
    })
}

fn delete_response(
    def: &ResourceDef,
    res: Deleted,
    rendering: Rendering,
) -> Result<Response, ApiError> {
    Ok(match res {
        Deleted::Pending(obj) => {
            let mut out = Vec::new();
            write_present(&mut out, def, &obj, rendering);
            // The API server answers 200 with the object, now carrying its deletionTimestamp.
            json_response(StatusCode::OK, out, "application/json")
        }
        Deleted::Gone(obj) => ok_json(
            StatusCode::OK,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                    "group": def.group,
                    "kind": def.plural,
                    "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                },
            }),
        ),
    })
}

/// A patch to `events.k8s.io/v1` events, rewritten to the stored (core) field names.
fn events_patch_to_storage(
    def: &ResourceDef,
    kind: &PatchKind,
    body: &Bytes,
) -> Result<Bytes, ApiError> {
    if !def.is_new_events() {
        return Ok(body.clone());
    }
    let converted = match kind {
        PatchKind::Json => events::json_patch_to_storage(def, parse_body(body)?),
        PatchKind::Apply { .. } => events::to_storage(def, parse_apply_body(body)?),
        PatchKind::Merge | PatchKind::Strategic => events::to_storage(def, parse_body(body)?),
    };
    Ok(Bytes::from(converted.to_string()))
}

fn list_response(
    def: &ResourceDef,
    items: Vec<Arc<Value>>,
    rv: u64,
    continue_token: Option<String>,
    rendering: Rendering,
) -> Response {
    if let Rendering::Table(include) = rendering {
        let objects: Vec<Value> = items.iter().map(|o| present(def, o, rendering)).collect();
        let t = table::table(def, &objects, Some(rv), continue_token.as_deref(), include);
        return ok_json(StatusCode::OK, &t);
    }
    let (kind, api_version) = match rendering {
        Rendering::Full | Rendering::Table(_) => (def.list_kind.clone(), def.api_version()),
        Rendering::MetadataOnly => ("PartialObjectMetadataList".into(), "meta.k8s.io/v1".into()),
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = continue_token {
        metadata["continue"] = Value::String(c);
    }
    let mut out = Vec::with_capacity(256 + items.len() * 512);
    out.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
            Value::String(kind),
            Value::String(api_version),
            metadata
        )
        .as_bytes(),
    );
    for (i, obj) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_present(&mut out, def, obj, rendering);
    }
    out.extend_from_slice(b"]}");
    json_response(StatusCode::OK, out, "application/json")
}

struct WatchFilter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event type this watch should see for a change, if any.
    fn translate(&self, c: &Change) -> Option<EventType> {
        if self.namespace.as_deref().is_some_and(|n| n != c.namespace) {
            return None;
        }
        let now = self.selects(&c.object);
        let before = c.old.as_ref().is_some_and(|o| self.selects(o));
        match c.kind {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || before).then_some(EventType::Deleted),
            EventType::Modified => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (true, false) => Some(EventType::Deleted),
                (false, true) => Some(EventType::Added),
                (false, false) => None,
            },
        }
    }
}

/// A one-object Table carries that object's resourceVersion, as the API server's does.
fn object_rv(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
}

fn event_line(def: &ResourceDef, kind: &str, obj: &Arc<Value>, rendering: Rendering) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    if let Rendering::Table(include) = rendering {
        let t = table::table(
            def,
            &[present(def, obj, rendering)],
            object_rv(obj),
            None,
            include,
        );
        // Serialising an in-memory Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &t);
    } else {
        write_present(&mut out, def, obj, rendering);
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn bookmark_line(def: &ResourceDef, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let ev = json!({
        "type": "BOOKMARK",
        "object": {"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta},
    });
    Bytes::from(format!("{ev}\n"))
}

fn error_line(e: &ApiError) -> Bytes {
    Bytes::from(format!(
        "{}\n",
        json!({"type": "ERROR", "object": e.to_status()})
    ))
}

fn start_watch(
    shared: &Arc<Shared>,
    def: Arc<ResourceDef>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &HashMap<String, String>,
    rendering: Rendering,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let send_initial = truthy(q, "sendInitialEvents");
    let bookmarks = truthy(q, "allowWatchBookmarks");
    let since = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(_) if send_initial => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resource version: {rv:?}"
                )));
            }
        },
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let filter = WatchFilter {
        namespace: namespace.clone(),
        labels,
        fields,
    };
    let started = shared.lock().watch_from(&def, namespace.as_deref(), since);
    let mut drops = shared.faults.watch_drops();
    drops.mark_unchanged();
    let faults = shared.faults.clone();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let (replay, mut live, mut progress) = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(error_line(&e)).await;
                return;
            }
        };
        for c in &replay {
            if let Some(kind) = filter.translate(c)
                && tx
                    .send(event_line(&def, kind.as_str(), &c.object, rendering))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if send_initial && tx.send(bookmark_line(&def, progress, true)).await.is_err() {
            return;
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = live.recv() => match msg {
                    Ok(c) => {
                        progress = progress.max(c.rv);
                        if c.gr != def.group_resource() {
                            continue;
                        }
                        if let Some(kind) = filter.translate(&c) {
                            if let Some(lag) = faults.watch_lag(&def.plural) {
                                tokio::time::sleep(lag).await;
                            }
                            if tx.send(event_line(&def, kind.as_str(), &c.object, rendering)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(error_line(&ApiError::gone(
                            "watch fell too far behind; re-list and watch again",
                        ))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = drops.changed() => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(bookmark_line(&def, progress, false)).await.is_err() {
                        return;
                    }
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.into_response()
}
