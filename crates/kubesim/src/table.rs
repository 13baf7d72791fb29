//! `meta.k8s.io/v1` Table responses: what `kubectl get` asks for
//! (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) so the server decides the columns.
//!
//! Custom resources get Name plus the CRD's `additionalPrinterColumns` (Age by default), each
//! JSONPath evaluated as the apiextensions table convertor does: the first result only, a
//! `string` column printed the way kubectl's JSONPath printer prints, other types kept typed, a
//! `date` column as a human duration. Built-in kinds get the API server's default table.

use super::registry::ResourceDef;
use jsonpath_rust::JsonPath as _;
use serde_json::{Value, json};

/// Whether the Accept header asks for a `meta.k8s.io/v1` Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

/// What each row carries besides its cells (`?includeObject=`), `Metadata` by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub(crate) fn from_query(v: Option<&str>) -> IncludeObject {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Core v1 events get the API server's event printer (`kubectl get events`): last seen, type,
/// reason, object, message, and the wide columns.
fn is_core_event(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.kind == "Event"
}

const EVENT_COLUMNS: &[(&str, i64)] = &[
    ("Last Seen", 0),
    ("Type", 0),
    ("Reason", 0),
    ("Object", 0),
    ("Subobject", 1),
    ("Source", 1),
    ("Message", 0),
    ("First Seen", 1),
    ("Count", 1),
    ("Name", 1),
];

fn since(t: Option<&str>, now: jiff::Timestamp) -> Option<String> {
    let t = t
        .filter(|t| !t.is_empty())?
        .parse::<jiff::Timestamp>()
        .ok()?;
    Some(human_duration(now.duration_since(t)))
}

/// The cells of `printEvent` (k8s.io/kubernetes/pkg/printers/internalversion), wide.
fn event_cells(e: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let s = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let first_or = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let first = since(Some(s("/firstTimestamp")), now)
        .or_else(|| since(Some(s("/eventTime")), now))
        .unwrap_or_else(|| "<unknown>".into());
    let mut last = since(Some(s("/lastTimestamp")), now).unwrap_or_else(|| first.clone());
    let mut count = e.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = e.get("series").filter(|v| v.is_object()) {
        last = since(series.get("lastObservedTime").and_then(Value::as_str), now)
            .unwrap_or_else(|| "<unknown>".into());
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s("/involvedObject/kind").to_ascii_lowercase();
    let target = match s("/involvedObject/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_or(s("/source/component"), s("/reportingComponent"));
    let instance = first_or(s("/source/host"), s("/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s("/type")),
        json!(s("/reason")),
        json!(target),
        json!(s("/involvedObject/fieldPath")),
        json!(source),
        json!(s("/message").trim()),
        json!(first),
        json!(count),
        json!(s("/metadata/name")),
    ]
}

/// One column: its definition and how to fill it.
struct Column {
    definition: Value,
    kind: String,
    path: String,
}

fn columns(def: &ResourceDef) -> Vec<Column> {
    let name = Column {
        definition: json!({"name": "Name", "type": "string", "format": "name",
                           "description": NAME_DESCRIPTION, "priority": 0}),
        kind: "name".into(),
        path: String::new(),
    };
    let age = json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                     "description": CREATED_DESCRIPTION});
    let declared: Vec<Value> = if def.custom && !def.printer_columns.is_empty() {
        def.printer_columns.clone()
    } else {
        vec![age]
    };
    let mut out = vec![name];
    for c in declared {
        let s = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        // The API server's words for a printer column the CRD does not describe.
        let description = match s("description") {
            d if d.is_empty() && def.custom => format!(
                "Custom resource definition column (in JSONPath format): {}",
                s("jsonPath")
            ),
            d => d,
        };
        out.push(Column {
            definition: json!({
                "name": s("name"), "type": s("type"), "format": s("format"),
                "description": description,
                "priority": c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            }),
            kind: s("type"),
            path: s("jsonPath"),
        });
    }
    out
}

/// The first value a Kubernetes-style JSONPath (`.status.conditions[?(@.type=="Ready")].status`)
/// selects, if any.
fn first_result<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let full = format!("${path}");
    obj.query(&full).ok()?.into_iter().next()
}

fn cell(column: &Column, obj: &Value, now: jiff::Timestamp) -> Value {
    if column.kind == "name" {
        return obj
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
    }
    let Some(v) = first_result(obj, &column.path) else {
        return Value::Null;
    };
    match (column.kind.as_str(), v) {
        ("string", Value::String(s)) => Value::String(s.clone()),
        ("string", Value::Null) => Value::Null,
        ("string", other) => Value::String(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => Value::String(human_duration(now.duration_since(t))),
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, as `kubectl get` shows ages.
pub(crate) fn human_duration(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn row(def: &ResourceDef, cols: &[Column], obj: &Value, include: IncludeObject) -> Value {
    let now = jiff::Timestamp::now();
    let cells: Vec<Value> = if is_core_event(def) {
        event_cells(obj, now)
    } else {
        cols.iter().map(|c| cell(c, obj, now)).collect()
    };
    let mut r = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            });
        }
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// A Table of `objects` (as the client's version presents them).
pub(crate) fn table(
    def: &ResourceDef,
    objects: &[Value],
    resource_version: Option<u64>,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let cols = if is_core_event(def) {
        EVENT_COLUMNS
            .iter()
            .map(|(name, priority)| Column {
                definition: json!({"name": name, "type": "string",
                                   "format": if *name == "Name" { "name" } else { "" },
                                   "description": "", "priority": priority}),
                kind: "string".into(),
                path: String::new(),
            })
            .collect()
    } else {
        columns(def)
    };
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = Value::String(rv.to_string());
    }
    if let Some(c) = continue_token {
        metadata["continue"] = Value::String(c.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": cols.iter().map(|c| c.definition.clone()).collect::<Vec<_>>(),
        "rows": objects.iter().map(|o| row(def, &cols, o, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{builtins, defs_from_crd};

    fn ecsi_def() -> ResourceDef {
        let crd = json!({
            "metadata": {"name": "ecsinstances.ecs.powerctl.io"},
            "spec": {"group": "ecs.powerctl.io", "scope": "Namespaced",
                "names": {"plural": "ecsinstances", "kind": "EcsInstance"},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}},
                    "additionalPrinterColumns": [
                        {"name": "Desired", "type": "string", "jsonPath": ".spec.powerState"},
                        {"name": "Ready", "type": "string",
                         "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                        {"name": "Retries", "type": "integer", "jsonPath": ".status.retry.count",
                         "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}]}});
        defs_from_crd(&crd).unwrap().remove(0)
    }

    #[test]
    fn printer_columns_are_evaluated_like_the_api_server() {
        let created = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(20)).to_string();
        let obj = json!({"metadata": {"name": "app-1", "creationTimestamp": created},
            "spec": {"powerState": "Running"},
            "status": {"retry": {"count": 2},
                "conditions": [{"type": "Progressing", "status": "False"},
                               {"type": "Ready", "status": "True"}]}});
        let t = table(&ecsi_def(), &[obj], Some(7), None, IncludeObject::Metadata);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Desired", "Ready", "Retries", "Age"]);
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["app-1", "Running", "True", 2, "20m"])
        );
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "app-1");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn missing_values_are_empty_cells_and_builtins_get_name_and_age() {
        let t = table(
            &ecsi_def(),
            &[json!({"metadata": {"name": "new"}})],
            None,
            None,
            IncludeObject::None,
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["new", null, null, null, null])
        );
        assert!(t["rows"][0].get("object").is_none());
        let ns = builtins()
            .into_iter()
            .find(|d| d.kind == "Namespace")
            .unwrap();
        let t = table(
            &ns,
            &[json!({"metadata": {"name": "team-z"}})],
            None,
            None,
            IncludeObject::Metadata,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Age");
    }

    #[test]
    fn core_events_print_like_kubectl_get_events() {
        let ev = builtins()
            .into_iter()
            .find(|d| d.group.is_empty() && d.kind == "Event")
            .unwrap();
        let at = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(10)).to_string();
        let e = json!({"metadata": {"name": "app-1.1"}, "type": "Normal", "reason": "Rebooting",
            "involvedObject": {"kind": "EcsInstance", "name": "app-1"},
            "message": "RebootInstance accepted (RequestId R-2) ", "eventTime": at,
            "reportingComponent": "ecs-power-controller",
            "series": {"count": 3, "lastObservedTime": at}});
        let t = table(&ev, &[e], None, None, IncludeObject::Metadata);
        assert_eq!(t["columnDefinitions"][0]["name"], "Last Seen");
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "10h",
                "Normal",
                "Rebooting",
                "ecsinstance/app-1",
                "",
                "ecs-power-controller",
                "RebootInstance accepted (RequestId R-2)",
                "10h",
                3,
                "app-1.1"
            ])
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let d = jiff::SignedDuration::from_secs;
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600 + 120)), "3h2m");
        assert_eq!(human_duration(d(50 * 3600)), "2d2h");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }

    #[test]
    fn only_a_meta_v1_table_is_a_table_request() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
        assert!(!wanted("application/json;as=Table;v=v1beta1;g=meta.k8s.io"));
    }
}
