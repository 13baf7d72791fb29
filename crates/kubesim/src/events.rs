//! One event store behind two APIs. A real API server keeps events once (in the core shape)
//! and serves them through both core `v1` `events` and `events.k8s.io/v1` `events`, converting
//! field names on the way in and out. kube's `Recorder` writes `events.k8s.io/v1`; `kubectl
//! describe` and `kubectl events` read core `v1` with `involvedObject.*` field selectors, so
//! without the shared store neither sees what the controller recorded.
//!
//! Storage is core v1; `events.k8s.io/v1` requests are converted here: bodies and patches in,
//! objects out, field selectors to their storage names. The renames are the ones of
//! `k8s.io/kubernetes/pkg/apis/events/v1/conversion.go`.

use super::registry::ResourceDef;
use serde_json::{Map, Value};

/// `events.k8s.io/v1` name → core `v1` name, for the fields that differ.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename_keys(obj: &mut Value, from_new: bool, api_version: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in std::mem::take(map) {
        let renamed = RENAMES.iter().find_map(|(new, core)| {
            let (from, to) = if from_new { (new, core) } else { (core, new) };
            (k == *from).then_some(*to)
        });
        out.insert(renamed.map(str::to_string).unwrap_or(k), v);
    }
    if out.contains_key("apiVersion") {
        out.insert("apiVersion".into(), Value::String(api_version.into()));
    }
    *map = out;
}

/// An `events.k8s.io/v1` body (object, merge patch or apply configuration) in storage terms.
pub(crate) fn to_storage(def: &ResourceDef, mut body: Value) -> Value {
    if def.is_new_events() {
        rename_keys(&mut body, true, "v1");
    }
    body
}

/// A stored (core) event as `events.k8s.io/v1` presents it.
pub(crate) fn from_storage(def: &ResourceDef, obj: &Value) -> Option<Value> {
    if !def.is_new_events() {
        return None;
    }
    let mut o = obj.clone();
    rename_keys(&mut o, false, &def.api_version());
    Some(o)
}

/// A JSON patch against `events.k8s.io/v1` names, rewritten to storage names.
pub(crate) fn json_patch_to_storage(def: &ResourceDef, mut patch: Value) -> Value {
    if !def.is_new_events() {
        return patch;
    }
    let rewrite = |p: &str| -> Option<String> {
        let rest = p.strip_prefix('/')?;
        let (head, tail) = rest.split_once('/').map_or((rest, ""), |(h, t)| (h, t));
        let (_, core) = RENAMES.iter().find(|(new, _)| *new == head)?;
        Some(if tail.is_empty() {
            format!("/{core}")
        } else {
            format!("/{core}/{tail}")
        })
    };
    if let Some(ops) = patch.as_array_mut() {
        for op in ops {
            for key in ["path", "from"] {
                if let Some(new) = op.get(key).and_then(Value::as_str).and_then(rewrite) {
                    op[key] = Value::String(new);
                }
            }
        }
    }
    patch
}

/// A `fieldSelector` in `events.k8s.io/v1` terms (`regarding.name=...`) in storage terms.
pub(crate) fn field_selector_to_storage(def: &ResourceDef, selector: &str) -> String {
    if !def.is_new_events() {
        return selector.to_string();
    }
    selector
        .split(',')
        .map(|term| {
            let path_end = term.find(['=', '!']).unwrap_or(term.len());
            let (path, rest) = term.split_at(path_end);
            let path = path.trim();
            let (head, tail) = path
                .split_once('.')
                .map_or((path, None), |(h, t)| (h, Some(t)));
            match RENAMES.iter().find(|(new, _)| *new == head) {
                Some((_, core)) => match tail {
                    Some(t) => format!("{core}.{t}{rest}"),
                    None => format!("{core}{rest}"),
                },
                None => term.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtins;
    use serde_json::json;

    fn new_events() -> ResourceDef {
        builtins()
            .into_iter()
            .find(|d| d.is_new_events())
            .expect("events.k8s.io is built in")
    }

    #[test]
    fn an_event_recorded_through_events_k8s_io_reads_back_the_same_and_as_core() {
        let def = new_events();
        let recorded = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "app-1.1", "namespace": "default"},
            "regarding": {"kind": "EcsInstance", "name": "app-1"},
            "note": "rebooted (RequestId 42)", "reason": "Rebooted", "type": "Normal",
            "reportingController": "ecs-power-controller", "reportingInstance": "pod-a",
            "eventTime": "2026-01-01T00:00:00.000000Z", "action": "Reboot",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
        });
        let stored = to_storage(&def, recorded.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "app-1");
        assert_eq!(stored["message"], "rebooted (RequestId 42)");
        assert_eq!(stored["reportingComponent"], "ecs-power-controller");
        assert_eq!(stored["series"]["count"], 2);
        assert_eq!(from_storage(&def, &stored), Some(recorded));
    }

    #[test]
    fn selectors_and_json_patches_use_storage_names() {
        let def = new_events();
        assert_eq!(
            field_selector_to_storage(
                &def,
                "regarding.name=app-1,reportingController!=x,type=Normal"
            ),
            "involvedObject.name=app-1,reportingComponent!=x,type=Normal"
        );
        let patch = json!([{"op": "replace", "path": "/note", "value": "n"},
                           {"op": "replace", "path": "/series/count", "value": 3}]);
        assert_eq!(
            json_patch_to_storage(&def, patch),
            json!([{"op": "replace", "path": "/message", "value": "n"},
                   {"op": "replace", "path": "/series/count", "value": 3}])
        );
    }
}
