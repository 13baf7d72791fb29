//! Which resources are served: the built-in kinds the controller touches, plus whatever
//! CustomResourceDefinitions have been created.

use super::error::Cause;
use super::schema::Schema;
use crate::json;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Storage identity of a resource: objects are shared by all versions of a group/resource.
pub(crate) type GroupResource = (String, String);

/// One served group/version/resource.
#[derive(Debug)]
pub(crate) struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Custom resources bump `metadata.generation` on spec changes; most built-ins here don't.
    pub tracks_generation: bool,
    /// Whether a PUT without `metadata.resourceVersion` is allowed (false for custom resources).
    pub allow_unconditional_update: bool,
    pub schema: Option<Schema>,
    /// The CRD version's `openAPIV3Schema` as written, for the OpenAPI documents and `explain`.
    pub openapi_schema: Option<Value>,
    /// The CRD version's `additionalPrinterColumns`, for Table responses.
    pub printer_columns: Vec<Value>,
    /// Extra `fieldSelector` paths beyond metadata.name/namespace.
    pub field_selectors: &'static [&'static str],
    pub custom: bool,
}

impl ResourceDef {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this resource is `events.k8s.io/v1` `events`, stored in core `v1` `events`.
    pub(crate) fn is_new_events(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// Where the objects live: events.k8s.io/v1 events share core v1's store, as on a real
    /// API server (one store served through both groups, see `events.rs`).
    pub(crate) fn group_resource(&self) -> GroupResource {
        if self.is_new_events() {
            return (String::new(), self.plural.clone());
        }
        (self.group.clone(), self.plural.clone())
    }

    /// `plural.group` as used in error messages.
    pub(crate) fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    field_selectors: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        namespaced,
        status_subresource: false,
        tracks_generation: false,
        allow_unconditional_update: true,
        schema: None,
        openapi_schema: None,
        printer_columns: Vec::new(),
        field_selectors,
        custom: false,
    }
}

/// Built-in kinds: the ones the controller, kube's Recorder and leader election use.
pub(crate) fn builtins() -> Vec<ResourceDef> {
    const EVENT_FIELDS: &[&str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    let mut ns = builtin(
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        &["ns"],
        &["status.phase"],
    );
    ns.status_subresource = true;
    let mut crd = builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &[],
    );
    crd.status_subresource = true;
    crd.tracks_generation = true;
    vec![
        ns,
        builtin("", "v1", "secrets", "Secret", true, &[], &["type"]),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], &[]),
        builtin("", "v1", "events", "Event", true, &["ev"], EVENT_FIELDS),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            // Selectors arrive in storage terms (`events::field_selector_to_storage`).
            EVENT_FIELDS,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            &[],
        ),
        crd,
    ]
}

/// Reads a CRD object into the resource definitions it serves; schema problems (including CEL
/// rules outside kubesim's subset) come back as causes so the create is rejected with a 422.
pub(crate) fn defs_from_crd(crd: &Value) -> Result<Vec<ResourceDef>, Vec<Cause>> {
    let mut causes = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let s = |p: &str| spec.pointer(p).and_then(Value::as_str).map(str::to_string);
    let group = s("/group").unwrap_or_default();
    let plural = s("/names/plural").unwrap_or_default();
    let kind = s("/names/kind").unwrap_or_default();
    for (val, field) in [
        (&group, "spec.group"),
        (&plural, "spec.names.plural"),
        (&kind, "spec.names.kind"),
    ] {
        if val.is_empty() {
            causes.push(Cause::new(
                "FieldValueRequired",
                field,
                "Required value".into(),
            ));
        }
    }
    let expected_name = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !plural.is_empty() && name != expected_name {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = s("/scope").unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!("Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""),
        ));
    }
    let strings = |p: &str| json::strings(spec.pointer(p));
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.versions",
            "Required value".into(),
        ));
    }
    let mut defs = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if !v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            continue;
        }
        let schema = v.pointer("/schema/openAPIV3Schema").map(|sv| {
            Schema::compile(
                sv,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                &mut causes,
            )
        });
        if schema.is_none() {
            causes.push(Cause::new(
                "FieldValueRequired",
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            ));
        }
        defs.push(ResourceDef {
            group: group.clone(),
            version: vname.to_string(),
            plural: plural.clone(),
            singular: s("/names/singular").unwrap_or_else(|| kind.to_ascii_lowercase()),
            kind: kind.clone(),
            list_kind: s("/names/listKind").unwrap_or_else(|| format!("{kind}List")),
            short_names: strings("/names/shortNames"),
            categories: strings("/names/categories"),
            namespaced: scope == "Namespaced",
            status_subresource: v.pointer("/subresources/status").is_some(),
            tracks_generation: true,
            allow_unconditional_update: false,
            schema,
            openapi_schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            field_selectors: &[],
            custom: true,
        });
    }
    if causes.is_empty() {
        Ok(defs)
    } else {
        Err(causes)
    }
}

/// All served resources, by (group, version, plural).
#[derive(Default)]
pub(crate) struct Registry {
    pub defs: BTreeMap<(String, String, String), Arc<ResourceDef>>,
}

impl Registry {
    pub(crate) fn with_builtins() -> Self {
        let mut r = Registry::default();
        for d in builtins() {
            r.insert(d);
        }
        r
    }

    pub(crate) fn insert(&mut self, d: ResourceDef) {
        self.defs.insert(
            (d.group.clone(), d.version.clone(), d.plural.clone()),
            Arc::new(d),
        );
    }

    pub(crate) fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Removes every version of a custom group/resource (on CRD deletion or replacement).
    pub(crate) fn remove_custom(&mut self, group: &str, plural: &str) {
        self.defs
            .retain(|(g, _, p), d| !(d.custom && g == group && p == plural));
    }

    /// Group → versions (in insertion-independent, sorted order, preferred first).
    pub(crate) fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, v, _) in self.defs.keys() {
            let vs = out.entry(g.clone()).or_default();
            if !vs.contains(v) {
                vs.push(v.clone());
            }
        }
        for vs in out.values_mut() {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    pub(crate) fn resources_in(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.defs
            .iter()
            .filter(|((g, v, _), _)| g == group && v == version)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, n) = if tail.is_empty() {
        (3, 0)
    } else if let Some(b) = tail.strip_prefix("beta") {
        (2, b.parse().unwrap_or(0))
    } else if let Some(a) = tail.strip_prefix("alpha") {
        (1, a.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, n)
}
