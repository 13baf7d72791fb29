//! The object store: every write path (create, update, patch, apply, delete) with the API
//! server's semantics, a global resourceVersion counter, and the bounded event history that
//! watches replay from.

use super::error::{ApiError, Cause, Target};
use super::managed::{self, ManagerEntry};
use super::registry::{self, GroupResource, Registry, ResourceDef};
use super::selector::{FieldSelector, LabelSelector};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in history and broadcast to watches.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub gr: GroupResource,
    pub namespace: String,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The previous state, so selector-filtered watches can turn a change that leaves the
    /// selection into DELETED (as the API server's watch cache does).
    pub old: Option<Arc<Value>>,
}

type Key = (String, String);

/// Per-request context for writes.
pub(crate) struct WriteCtx {
    pub def: Arc<ResourceDef>,
    pub namespace: String,
    pub status: bool,
    pub manager: Option<String>,
    pub default_manager: String,
    pub dry_run: bool,
    pub strict: bool,
    /// `fieldValidation` is `Warn` (the API server's default when it is not given): unknown
    /// fields are dropped and named in `Warning` headers, collected here.
    pub warn: bool,
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl WriteCtx {
    fn manager(&self) -> String {
        self.manager
            .clone()
            .unwrap_or_else(|| self.default_manager.clone())
    }
    fn subresource(&self) -> &'static str {
        if self.status { "status" } else { "" }
    }
}

pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

pub(crate) enum Deleted {
    /// Removed from storage; the final object state.
    Gone(Arc<Value>),
    /// Finalizers pending: marked with deletionTimestamp.
    Pending(Arc<Value>),
}

pub(crate) struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

pub(crate) struct State {
    pub rv: u64,
    pub registry: Registry,
    objects: HashMap<GroupResource, BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Events with rv <= this may have been evicted from history.
    pub compacted_rv: u64,
    pub tx: broadcast::Sender<Arc<Change>>,
    auto_create_namespaces: bool,
}

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect()
}

/// DNS-1123 subdomain (max 253) or, with `label`, a DNS-1123 label (max 63).
fn name_problem(name: &str, label: bool) -> Option<String> {
    let max = if label { 63 } else { 253 };
    if name.len() > max {
        return Some(format!("must be no more than {max} characters"));
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    let ok = if label {
        part_ok(name)
    } else {
        name.split('.').all(part_ok)
    };
    if ok {
        None
    } else if label {
        Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
    } else {
        Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
    }
}

fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(root) = v else {
        unreachable!("just made an object")
    };
    let m = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

fn meta_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    meta(v).and_then(|m| m.get(key)).and_then(Value::as_str)
}

fn finalizers(v: &Value) -> Vec<String> {
    crate::json::strings(meta(v).and_then(|m| m.get("finalizers")))
}

/// The object minus metadata and status: what `metadata.generation` tracks.
fn generation_view(v: &Value) -> Value {
    let mut c = v.clone();
    if let Value::Object(m) = &mut c {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    c
}

/// For no-op detection: ignore the fields a no-op write would still change.
fn comparable(v: &Value) -> Value {
    let mut c = v.clone();
    let m = meta_mut(&mut c);
    m.remove("resourceVersion");
    m.remove("managedFields");
    c
}

fn decode_continue(token: &str) -> Result<(u64, Key), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let ns = v.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

fn encode_continue(rv: u64, key: &Key) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn target<'a>(def: &'a ResourceDef, name: &'a str) -> Target<'a> {
    Target {
        group: &def.group,
        kind: &def.plural,
        name,
    }
}

fn invalid(def: &ResourceDef, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(
        &Target {
            group: &def.group,
            kind: &def.kind,
            name,
        },
        &def.kind,
        causes,
    )
}

fn is_crd(def: &ResourceDef) -> bool {
    def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions"
}

impl State {
    pub(crate) fn new(history_limit: usize, auto_create_namespaces: bool) -> Self {
        let (tx, _) = broadcast::channel(1 << 16);
        let mut s = State {
            rv: 1,
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            tx,
            auto_create_namespaces,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.insert_namespace(ns);
        }
        s
    }

    fn insert_namespace(&mut self, name: &str) {
        self.rv += 1;
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": new_uid(),
                "resourceVersion": self.rv.to_string(),
                "creationTimestamp": now_rfc3339(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        let obj = Arc::new(obj);
        self.objects
            .entry((String::new(), "namespaces".into()))
            .or_default()
            .insert((String::new(), name.to_string()), obj.clone());
        self.emit(
            ("".into(), "namespaces".into()),
            String::new(),
            EventType::Added,
            obj,
            None,
        );
    }

    fn emit(
        &mut self,
        gr: GroupResource,
        namespace: String,
        kind: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            gr,
            namespace,
            kind,
            object,
            old,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted_rv = evicted.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Forgets all history, so any watch resuming from an older resourceVersion gets 410.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    pub(crate) fn get(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&def.group_resource())
            .and_then(|c| c.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&target(def, name)))
    }

    pub(crate) fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListResult, ApiError> {
        let (rv, start) = match continue_token {
            Some(t) => {
                let (rv, key) = decode_continue(t)?;
                if rv < self.compacted_rv {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Bound::Excluded(key))
            }
            None => (
                self.rv,
                match ns {
                    Some(n) => Bound::Included((n.to_string(), String::new())),
                    None => Bound::Unbounded,
                },
            ),
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        if let Some(coll) = self.objects.get(&def.group_resource()) {
            let mut last: Option<&Key> = None;
            for (key, obj) in coll.range((start, Bound::Unbounded)) {
                if let Some(n) = ns
                    && key.0 != n
                {
                    break;
                }
                if !(labels.matches(obj) && fields.matches(obj)) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    // There is at least one more match: hand out a continue token.
                    if let Some(k) = last {
                        continue_token = Some(encode_continue(rv, k));
                    }
                    break;
                }
                items.push(obj.clone());
                last = Some(key);
            }
        }
        Ok(ListResult {
            items,
            resource_version: rv,
            continue_token,
        })
    }

    /// Events after `since` for one resource (and namespace), or 410 if history no longer
    /// covers them; also subscribes, under the same lock, so nothing falls in between.
    #[allow(clippy::type_complexity)]
    pub(crate) fn watch_from(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        since: Option<u64>,
    ) -> Result<(Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>, u64), ApiError> {
        let gr = def.group_resource();
        let rx = self.tx.subscribe();
        let mut replay = Vec::new();
        match since {
            None => {
                // Synthetic ADDED for current state (rv unset or "0").
                if let Some(coll) = self.objects.get(&gr) {
                    for ((ons, _), obj) in coll {
                        if ns.is_some_and(|n| n != ons) {
                            continue;
                        }
                        replay.push(Arc::new(Change {
                            rv: 0,
                            gr: gr.clone(),
                            namespace: ons.clone(),
                            kind: EventType::Added,
                            object: obj.clone(),
                            old: None,
                        }));
                    }
                }
            }
            Some(rv) => {
                if rv < self.compacted_rv {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        self.compacted_rv + 1
                    )));
                }
                for c in self.history.iter().filter(|c| c.rv > rv) {
                    if c.gr == gr && ns.is_none_or(|n| n == c.namespace) {
                        replay.push(c.clone());
                    }
                }
            }
        }
        Ok((replay, rx, self.rv))
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&("".to_string(), "namespaces".to_string()))
            .is_some_and(|c| c.contains_key(&(String::new(), ns.to_string())))
    }

    fn check_kind(def: &ResourceDef, body: &Value) -> Result<(), ApiError> {
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind.is_empty() || api_version.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' or 'apiVersion' is missing in the body (expected apiVersion {:?}, kind {:?})",
                def.api_version(),
                def.kind
            )));
        }
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if kind != def.kind || group != def.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind:?} is not {:?}",
                def.api_version(),
                def.kind
            )));
        }
        Ok(())
    }

    /// Defaulting, pruning and schema validation for custom resources; CRD checks for CRDs.
    fn admit(
        &self,
        ctx: &WriteCtx,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let def = &ctx.def;
        let mut causes = Vec::new();
        if def.group.is_empty() && def.kind == "Secret" {
            fold_string_data(obj);
            // The API server's default for a Secret without a type.
            if obj.get("type").is_none_or(Value::is_null) {
                obj["type"] = json!("Opaque");
            }
        }
        if let Some(schema) = &def.schema {
            let mut pruned = Vec::new();
            schema.default_and_prune(obj, "", &mut pruned);
            if ctx.warn && !pruned.is_empty() {
                let mut warnings = ctx.warnings.lock().unwrap_or_else(|p| p.into_inner());
                warnings.extend(pruned.iter().map(|p| format!("unknown field \"{p}\"")));
            }
            if ctx.strict && !pruned.is_empty() {
                let listed: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field \"{p}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                    listed.join(", "),
                    kind = def.kind,
                    version = def.version,
                )));
            }
            schema.validate(obj, old, "", &mut causes);
        }
        if let Some(labels) = meta(obj).and_then(|m| m.get("labels")) {
            match labels.as_object() {
                Some(l) => {
                    for (k, v) in l {
                        if !v.is_string() {
                            causes.push(Cause::new(
                                "FieldValueTypeInvalid",
                                &format!("metadata.labels.{k}"),
                                "Invalid value: label values must be strings".into(),
                            ));
                        }
                    }
                }
                None => causes.push(Cause::new(
                    "FieldValueTypeInvalid",
                    "metadata.labels",
                    "Invalid value: must be a map of strings".into(),
                )),
            }
        }
        if is_crd(def)
            && let Err(mut c) = registry::defs_from_crd(obj)
        {
            causes.append(&mut c);
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(invalid(def, name, causes))
        }
    }

    fn crd_established(obj: &mut Value) {
        let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let stored: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let now = now_rfc3339();
        obj["status"] = json!({
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        });
    }

    /// Registers (or re-registers) the resources a stored CRD serves.
    fn crd_changed(&mut self, old: Option<&Value>, new: Option<&Value>) {
        let gr_of = |v: &Value| {
            (
                v.pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                v.pointer("/spec/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        if let Some(o) = old {
            let (g, p) = gr_of(o);
            self.registry.remove_custom(&g, &p);
        }
        match new {
            Some(n) => {
                if let Ok(defs) = registry::defs_from_crd(n) {
                    for d in defs {
                        self.registry.insert(d);
                    }
                }
            }
            None => {
                // CRD gone: its objects go too, each with a DELETED event.
                if let Some(o) = old {
                    let gr = gr_of(o);
                    if let Some(coll) = self.objects.remove(&gr) {
                        for ((ns, _), obj) in coll {
                            self.rv += 1;
                            let mut gone = (*obj).clone();
                            meta_mut(&mut gone)
                                .insert("resourceVersion".into(), self.rv.to_string().into());
                            self.emit(
                                gr.clone(),
                                ns,
                                EventType::Deleted,
                                Arc::new(gone),
                                Some(obj),
                            );
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn create(&mut self, ctx: &WriteCtx, body: Value) -> Result<Arc<Value>, ApiError> {
        self.create_inner(ctx, body, None)
    }

    /// `apply_entries` carries server-side apply ownership when apply creates the object.
    fn create_inner(
        &mut self,
        ctx: &WriteCtx,
        mut body: Value,
        apply_entries: Option<Vec<ManagerEntry>>,
    ) -> Result<Arc<Value>, ApiError> {
        let def = ctx.def.clone();
        Self::check_kind(&def, &body)?;
        let api_version = def.api_version();
        let m = meta_mut(&mut body);
        if let Some(ns) = m.get("namespace").and_then(Value::as_str)
            && def.namespaced
            && !ns.is_empty()
            && ns != ctx.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let prefix = m
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if prefix.is_empty() {
                return Err(invalid(
                    &def,
                    "",
                    vec![Cause::new(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
            name = format!("{prefix}{}", random_suffix());
        }
        let is_ns = def.group.is_empty() && def.plural == "namespaces";
        if let Some(problem) = name_problem(&name, is_ns) {
            return Err(invalid(
                &def,
                &name,
                vec![Cause::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: {name:?}: {problem}"),
                )],
            ));
        }
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
            "managedFields",
            "resourceVersion",
        ] {
            m.remove(k);
        }
        m.insert("name".into(), Value::String(name.clone()));
        if def.namespaced {
            m.insert("namespace".into(), Value::String(ctx.namespace.clone()));
        } else {
            m.remove("namespace");
        }
        if def.namespaced && !self.namespace_exists(&ctx.namespace) {
            if self.auto_create_namespaces && name_problem(&ctx.namespace, true).is_none() {
                if !ctx.dry_run {
                    self.insert_namespace(&ctx.namespace);
                }
            } else {
                return Err(ApiError::not_found(&Target {
                    group: "",
                    kind: "namespaces",
                    name: &ctx.namespace,
                }));
            }
        }
        let key = (
            if def.namespaced {
                ctx.namespace.clone()
            } else {
                String::new()
            },
            name.clone(),
        );
        if self
            .objects
            .get(&def.group_resource())
            .is_some_and(|c| c.contains_key(&key))
        {
            return Err(ApiError::already_exists(&target(&def, &name)));
        }
        if def.status_subresource
            && let Value::Object(root) = &mut body
        {
            root.remove("status");
        }
        body["apiVersion"] = Value::String(api_version.clone());
        body["kind"] = Value::String(def.kind.clone());
        self.admit(ctx, &name, &mut body, None)?;
        if is_crd(&def) {
            Self::crd_established(&mut body);
        }
        if is_ns {
            body["status"] = json!({"phase": "Active"});
            // What the API server's namespace strategy and admission add to every namespace.
            body["metadata"]["labels"]["kubernetes.io/metadata.name"] = Value::String(name.clone());
            if body.pointer("/spec/finalizers").is_none() {
                body["spec"]["finalizers"] = json!(["kubernetes"]);
            }
        }
        let entries = match apply_entries {
            Some(e) => e,
            None => {
                let mut e = Vec::new();
                managed::record_update(
                    &mut e,
                    &managed::Writer {
                        manager: &ctx.manager(),
                        subresource: ctx.subresource(),
                        api_version: &api_version,
                        now: &now_rfc3339(),
                    },
                    None,
                    &body,
                );
                e
            }
        };
        self.finish_create(ctx, key, body, entries)
    }

    fn finish_create(
        &mut self,
        ctx: &WriteCtx,
        key: Key,
        mut body: Value,
        entries: Vec<ManagerEntry>,
    ) -> Result<Arc<Value>, ApiError> {
        let def = ctx.def.clone();
        let m = meta_mut(&mut body);
        m.insert("uid".into(), new_uid().into());
        m.insert("creationTimestamp".into(), now_rfc3339().into());
        if def.tracks_generation {
            m.insert("generation".into(), 1.into());
        }
        if !entries.is_empty() {
            m.insert("managedFields".into(), managed::render(&entries));
        }
        if ctx.dry_run {
            return Ok(Arc::new(body));
        }
        self.rv += 1;
        meta_mut(&mut body).insert("resourceVersion".into(), self.rv.to_string().into());
        let obj = Arc::new(body);
        self.objects
            .entry(def.group_resource())
            .or_default()
            .insert(key.clone(), obj.clone());
        self.emit(
            def.group_resource(),
            key.0,
            EventType::Added,
            obj.clone(),
            None,
        );
        if is_crd(&def) {
            self.crd_changed(None, Some(&obj));
        }
        Ok(obj)
    }

    /// PUT: full replacement with optimistic concurrency.
    pub(crate) fn update(
        &mut self,
        ctx: &WriteCtx,
        name: &str,
        body: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let def = ctx.def.clone();
        // The body is checked before the object is looked up, as the API server does.
        Self::check_kind(&def, &body)?;
        let body_name = meta_str(&body, "name").unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let old = self.get(&def, &ctx.namespace, name)?;
        let rv = meta_str(&body, "resourceVersion").unwrap_or_default();
        if rv.is_empty() && !def.allow_unconditional_update {
            // Worded with the resource (plural), as the API server's update strategy does.
            return Err(ApiError::invalid(
                &Target {
                    group: &def.group,
                    kind: &def.plural,
                    name,
                },
                &def.plural,
                vec![Cause::new(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0: must be specified for an update".into(),
                )],
            ));
        }
        self.commit_update(ctx, name, old, body, None)
    }

    pub(crate) fn patch(
        &mut self,
        ctx: &WriteCtx,
        name: &str,
        kind: PatchKind,
        body: &[u8],
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let def = ctx.def.clone();
        let existing = self.get(&def, &ctx.namespace, name);
        let patch_err = |e: String| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        };
        match kind {
            PatchKind::Apply { force } => {
                let applied = parse_apply_body(body)?;
                let manager = ctx.manager.clone().ok_or_else(|| {
                    ApiError::invalid(
                        &Target {
                            group: "meta.k8s.io",
                            kind: "PatchOptions",
                            name: "",
                        },
                        "PatchOptions",
                        vec![Cause::new(
                            "FieldValueRequired",
                            "fieldManager",
                            "Required value: is required for apply patch".into(),
                        )],
                    )
                })?;
                Self::check_kind(&def, &applied)?;
                if let Some(n) = meta_str(&applied, "name")
                    && n != name
                {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
                let status_sub = def.status_subresource;
                let on_status = ctx.status;
                let in_scope = move |p: &managed::FieldPath| {
                    let is_status = p.first().map(String::as_str) == Some("status");
                    if !status_sub {
                        true
                    } else if on_status {
                        is_status
                    } else {
                        !is_status
                    }
                };
                let now = now_rfc3339();
                let api_version = def.api_version();
                match existing {
                    Ok(old) => {
                        let mut entries = managed::parse(&old);
                        let writer = managed::Writer {
                            manager: &manager,
                            subresource: ctx.subresource(),
                            api_version: &api_version,
                            now: &now,
                        };
                        let merged =
                            managed::apply(&old, &applied, &mut entries, &writer, force, &in_scope)
                                .map_err(|c| ApiError::apply_conflict(&c))?;
                        let obj = self.commit_update(ctx, name, old, merged, Some(entries))?;
                        Ok((obj, false))
                    }
                    Err(e) if ctx.status => Err(e),
                    Err(_) => {
                        // Apply creates a missing object.
                        let mut entries = Vec::new();
                        let mut fresh = json!({"apiVersion": api_version, "kind": def.kind,
                            "metadata": {"name": name}});
                        if def.namespaced {
                            fresh["metadata"]["namespace"] = Value::String(ctx.namespace.clone());
                        }
                        let writer = managed::Writer {
                            manager: &manager,
                            subresource: "",
                            api_version: &api_version,
                            now: &now,
                        };
                        let merged = managed::apply(
                            &fresh,
                            &applied,
                            &mut entries,
                            &writer,
                            force,
                            &in_scope,
                        )
                        .map_err(|c| ApiError::apply_conflict(&c))?;
                        let obj = self.create_inner(ctx, merged, Some(entries))?;
                        Ok((obj, true))
                    }
                }
            }
            other => {
                let old = existing?;
                let mut doc = (*old).clone();
                match other {
                    PatchKind::Merge | PatchKind::Strategic => {
                        let p: Value =
                            serde_json::from_slice(body).map_err(|e| patch_err(e.to_string()))?;
                        if !p.is_object() {
                            return Err(patch_err("a merge patch must be a JSON object".into()));
                        }
                        json_patch::merge(&mut doc, &p);
                    }
                    _ => {
                        let p: json_patch::Patch =
                            serde_json::from_slice(body).map_err(|e| patch_err(e.to_string()))?;
                        apply_json_patch(&mut doc, p).map_err(|e| {
                            tracing::debug!(error = %e, "JSON patch failed");
                            // The API server says no more than this (the reason is only logged).
                            let mut e = ApiError::plain(
                                422,
                                "Invalid",
                                "the server rejected our request due to an error in our request"
                                    .into(),
                            );
                            e.details = Some(json!({}));
                            e
                        })?;
                    }
                }
                let obj = self.commit_update(ctx, name, old, doc, None)?;
                Ok((obj, false))
            }
        }
    }

    /// The shared tail of PUT, PATCH and apply.
    fn commit_update(
        &mut self,
        ctx: &WriteCtx,
        name: &str,
        old: Arc<Value>,
        mut new: Value,
        apply_entries: Option<Vec<ManagerEntry>>,
    ) -> Result<Arc<Value>, ApiError> {
        let def = ctx.def.clone();
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or_default();
        if let Some(rv) = meta_str(&new, "resourceVersion")
            && !rv.is_empty()
            && rv != old_rv
        {
            return Err(ApiError::conflict(
                &target(&def, name),
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if let Some(n) = meta_str(&new, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if ctx.status {
            let status = new.get("status").cloned();
            new = (*old).clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        } else if def.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        }
        new["apiVersion"] = Value::String(def.api_version());
        new["kind"] = Value::String(def.kind.clone());
        let old_meta = meta(&old).cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        m.remove("selfLink");
        m.remove("managedFields");
        if old_meta.contains_key("deletionTimestamp") {
            let before = finalizers(&old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(invalid(
                    &def,
                    name,
                    vec![Cause::new(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        self.admit(ctx, name, &mut new, Some(&old))?;
        if is_crd(&def) {
            // Server-maintained status.
            Self::crd_established(&mut new);
        }
        let old_entries = managed::parse(&old);
        let entries = match apply_entries {
            Some(e) => e,
            None => {
                let mut e = old_entries.clone();
                let mut old_plain = (*old).clone();
                meta_mut(&mut old_plain).remove("managedFields");
                managed::record_update(
                    &mut e,
                    &managed::Writer {
                        manager: &ctx.manager(),
                        subresource: ctx.subresource(),
                        api_version: &def.api_version(),
                        now: &now_rfc3339(),
                    },
                    Some(&old_plain),
                    &new,
                );
                e
            }
        };
        if comparable(&old) == comparable(&new) && managed::same_ownership(&old_entries, &entries) {
            return Ok(old);
        }
        if def.tracks_generation && generation_view(&old) != generation_view(&new) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), (g + 1).into());
        }
        if !entries.is_empty() {
            meta_mut(&mut new).insert("managedFields".into(), managed::render(&entries));
        }
        if ctx.dry_run {
            return Ok(Arc::new(new));
        }
        let key = (
            if def.namespaced {
                ctx.namespace.clone()
            } else {
                String::new()
            },
            name.to_string(),
        );
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
        let obj = Arc::new(new);
        let finished =
            obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&obj).is_empty();
        if finished {
            if let Some(c) = self.objects.get_mut(&def.group_resource()) {
                c.remove(&key);
            }
            self.emit(
                def.group_resource(),
                key.0,
                EventType::Deleted,
                obj.clone(),
                Some(old.clone()),
            );
            if is_crd(&def) {
                self.crd_changed(Some(&old), None);
            }
        } else {
            self.objects
                .entry(def.group_resource())
                .or_default()
                .insert(key.clone(), obj.clone());
            self.emit(
                def.group_resource(),
                key.0,
                EventType::Modified,
                obj.clone(),
                Some(old.clone()),
            );
            if is_crd(&def) {
                self.crd_changed(Some(&old), Some(&obj));
            }
        }
        Ok(obj)
    }

    /// DELETE: immediate without finalizers; otherwise marks deletionTimestamp.
    pub(crate) fn delete(
        &mut self,
        ctx: &WriteCtx,
        name: &str,
        options: &Value,
    ) -> Result<Deleted, ApiError> {
        let def = ctx.def.clone();
        let old = self.get(&def, &ctx.namespace, name)?;
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
        {
            let actual = meta_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict(
                    &Target {
                        group: &def.group,
                        kind: &def.kind,
                        name,
                    },
                    &format!(
                        "the UID in the precondition ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
                    ),
                ));
            }
        }
        if let Some(rv) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            let actual = meta_str(&old, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(ApiError::conflict(
                    &Target {
                        group: &def.group,
                        kind: &def.kind,
                        name,
                    },
                    &format!(
                        "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({actual}). The object might have been modified"
                    ),
                ));
            }
        }
        let key = (
            if def.namespaced {
                ctx.namespace.clone()
            } else {
                String::new()
            },
            name.to_string(),
        );
        if !finalizers(&old).is_empty() {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Deleted::Pending(old));
            }
            let mut new = (*old).clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), now_rfc3339().into());
            m.insert("deletionGracePeriodSeconds".into(), 0.into());
            if def.tracks_generation {
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(1);
                m.insert("generation".into(), (g + 1).into());
            }
            if ctx.dry_run {
                return Ok(Deleted::Pending(Arc::new(new)));
            }
            self.rv += 1;
            meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
            let obj = Arc::new(new);
            self.objects
                .entry(def.group_resource())
                .or_default()
                .insert(key.clone(), obj.clone());
            self.emit(
                def.group_resource(),
                key.0,
                EventType::Modified,
                obj.clone(),
                Some(old),
            );
            return Ok(Deleted::Pending(obj));
        }
        if ctx.dry_run {
            return Ok(Deleted::Gone(old));
        }
        self.rv += 1;
        let mut gone = (*old).clone();
        meta_mut(&mut gone).insert("resourceVersion".into(), self.rv.to_string().into());
        let gone = Arc::new(gone);
        if let Some(c) = self.objects.get_mut(&def.group_resource()) {
            c.remove(&key);
        }
        self.emit(
            def.group_resource(),
            key.0.clone(),
            EventType::Deleted,
            gone.clone(),
            Some(old.clone()),
        );
        if is_crd(&def) {
            self.crd_changed(Some(&old), None);
        }
        if def.group.is_empty() && def.plural == "namespaces" {
            self.delete_namespace_contents(name);
        }
        Ok(Deleted::Gone(gone))
    }

    /// No namespace controller here: contents go at once (objects with finalizers are marked).
    fn delete_namespace_contents(&mut self, ns: &str) {
        let targets: Vec<(Arc<ResourceDef>, String)> = {
            let mut out = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for d in self.registry.defs.values() {
                if !d.namespaced || !seen.insert(d.group_resource()) {
                    continue;
                }
                if let Some(coll) = self.objects.get(&d.group_resource()) {
                    for ((ons, name), _) in coll.range((ns.to_string(), String::new())..) {
                        if ons != ns {
                            break;
                        }
                        out.push((d.clone(), name.clone()));
                    }
                }
            }
            out
        };
        for (def, name) in targets {
            let ctx = WriteCtx {
                def,
                namespace: ns.to_string(),
                status: false,
                manager: None,
                default_manager: "namespace-controller".into(),
                dry_run: false,
                strict: false,
                warn: false,
                warnings: Default::default(),
            };
            let _ = self.delete(&ctx, &name, &Value::Null);
        }
    }

    /// Names in a namespace (or cluster scope) matching selectors, for deletecollection.
    pub(crate) fn matching_names(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<(String, String)> {
        self.objects
            .get(&def.group_resource())
            .map(|c| {
                c.iter()
                    .filter(|((n, _), o)| {
                        ns.is_none_or(|x| x == n) && labels.matches(o) && fields.matches(o)
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }
}

/// Apply bodies are YAML (JSON is YAML too).
pub(crate) fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("apply patch body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// RFC 6902 with the API server's (evanphx/json-patch) leniency: a `test` for `null` passes
/// when the path is absent. kube's finalizer helper relies on this when adding the first
/// finalizer.
fn apply_json_patch(doc: &mut Value, p: json_patch::Patch) -> Result<(), String> {
    let mut work = doc.clone();
    for op in p.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && work.pointer(t.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        json_patch::patch(&mut work, &[op]).map_err(|e| e.to_string())?;
    }
    *doc = work;
    Ok(())
}

/// As the real API server does: a Secret's `stringData` is merged into `data` (base64), and
/// never stored or returned.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if !data.is_object() {
        *data = Value::Object(Default::default());
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(
                key,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut secret = json!({
            "kind": "Secret",
            "data": {"kept": "a2VwdA=="},
            "stringData": {"accessKeyId": "LTAI", "kept": "over"},
        });
        fold_string_data(&mut secret);
        assert_eq!(
            secret,
            json!({"kind": "Secret", "data": {"accessKeyId": "TFRBSQ==", "kept": "b3Zlcg=="}})
        );
    }
}
