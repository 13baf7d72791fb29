//! OpenAPI documents: `/openapi/v3` (the index), `/openapi/v3/api/v1`,
//! `/openapi/v3/apis/{group}/{version}` and `/openapi/v2`.
//!
//! kubectl needs them for three things: `kubectl apply`/`create`/`replace` check (through the
//! PATCH operations' `fieldValidation` parameter) that the server validates fields itself and
//! then send `fieldValidation=Strict`; `kubectl explain` walks the component schemas found by
//! their `x-kubernetes-group-version-kind`; and `kubectl apply` builds strategic merge patches
//! for built-in kinds from them (a kind whose PATCH operation lists no strategic merge patch, a
//! custom resource, gets a JSON merge patch).
//!
//! The schemas of built-in kinds come from `k8s-openapi`'s `JsonSchema` implementations (the
//! upstream descriptions included); custom resources use the CRD's `openAPIV3Schema` as
//! written, with `metadata` pointing at `ObjectMeta` as a real API server publishes it.

use super::registry::{Registry, ResourceDef};
use k8s_openapi::api::{coordination, core, events};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use std::hash::{Hash, Hasher};

const COMPONENTS: &str = "#/components/schemas/";
const DEFINITIONS: &str = "#/definitions/";

/// `/openapi/v3`: one entry per group/version, each URL carrying a hash of its document (kubectl
/// caches documents by that URL, so the hash changes when a CRD does).
pub(crate) fn v3_index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in reg.groups() {
        for version in versions {
            let key = gv_path(&group, &version);
            let hash = v3_group_version(reg, &group, &version)
                .map(|d| content_hash(&d))
                .unwrap_or_default();
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `api/v1` or `apis/{group}/{version}`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn content_hash(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The OpenAPI v3 document of one group/version, or `None` if nothing is served there.
pub(crate) fn v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = reg.resources_in(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut custom = Map::new();
    for def in &defs {
        let Some(name) = kind_schema(&mut generator, def, &mut custom) else {
            continue;
        };
        for (path, item) in operations(def, &format!("{COMPONENTS}{name}")) {
            paths.insert(path, item);
        }
    }
    let mut schemas = generator.take_definitions(true);
    schemas.extend(custom);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-kubesim"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v2`: every served kind in one Swagger 2.0 document.
pub(crate) fn v2(reg: &Registry) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, versions) in reg.groups() {
        for version in versions {
            let Some(doc) = v3_group_version(reg, &group, &version) else {
                continue;
            };
            if let Some(p) = doc["paths"].as_object() {
                paths.extend(p.clone());
            }
            if let Some(s) = doc
                .pointer("/components/schemas")
                .and_then(Value::as_object)
            {
                definitions.extend(s.clone());
            }
        }
    }
    let mut doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-kubesim"},
        "paths": paths,
        "definitions": definitions,
    });
    to_swagger2(&mut doc);
    doc
}

/// Rewrites the v3 shapes that differ in v2: `$ref` targets, parameter types and responses.
fn to_swagger2(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix(COMPONENTS)
            {
                *r = format!("{DEFINITIONS}{name}");
            }
            if m.get("in").is_some()
                && let Some(Value::Object(schema)) = m.remove("schema")
            {
                m.extend(schema);
            }
            if let Some(Value::Object(content)) = m.remove("content")
                && let Some(schema) = content
                    .get("application/json")
                    .and_then(|c| c.get("schema"))
                    .cloned()
            {
                m.insert("schema".into(), schema);
            }
            m.remove("requestBody");
            m.values_mut().for_each(to_swagger2);
        }
        Value::Array(a) => a.iter_mut().for_each(to_swagger2),
        _ => {}
    }
}

fn gvk(def: &ResourceDef) -> Value {
    json!({"group": def.group, "version": def.version, "kind": def.kind})
}

/// Registers the schema of `def`'s kind and returns its component name.
fn kind_schema(
    generator: &mut SchemaGenerator,
    def: &ResourceDef,
    custom: &mut Map<String, Value>,
) -> Option<String> {
    fn builtin<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
        generator.subschema_for::<T>();
        generator.subschema_for::<meta::Status>();
        Some(T::schema_name().into_owned())
    }
    let name = match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => builtin::<core::v1::Namespace>(generator),
        ("", "Secret") => builtin::<core::v1::Secret>(generator),
        ("", "ConfigMap") => builtin::<core::v1::ConfigMap>(generator),
        ("", "Event") => builtin::<core::v1::Event>(generator),
        ("events.k8s.io", "Event") => builtin::<events::v1::Event>(generator),
        ("coordination.k8s.io", "Lease") => builtin::<coordination::v1::Lease>(generator),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            builtin::<apiext::CustomResourceDefinition>(generator)
        }
        _ if def.custom => {
            let object_meta = builtin::<meta::ObjectMeta>(generator)?;
            let name = custom_schema_name(def);
            custom.insert(name.clone(), custom_schema(def, &object_meta));
            Some(name)
        }
        _ => None,
    }?;
    if !def.custom {
        // The generated definition lacks the extension kubectl looks kinds up by.
        let defs = generator.definitions_mut();
        if let Some(Value::Object(s)) = defs.get_mut(&name) {
            s.insert("x-kubernetes-group-version-kind".into(), json!([gvk(def)]));
        }
    }
    Some(name)
}

/// `io.powerctl.ecs.v1alpha1.EcsInstance` for `ecs.powerctl.io/v1alpha1` `EcsInstance`, as the
/// API server names CRD schemas (group reversed).
fn custom_schema_name(def: &ResourceDef) -> String {
    let reversed: Vec<&str> = def.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), def.version, def.kind)
}

fn custom_schema(def: &ResourceDef, object_meta: &str) -> Value {
    let mut s = def
        .openapi_schema
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    if let Some(m) = s.as_object_mut() {
        let props = m
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(props) = props {
            props.insert(
                "apiVersion".into(),
                json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}),
            );
            props.insert(
                "kind".into(),
                json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}),
            );
            props.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": format!("{COMPONENTS}{object_meta}")}],
                       "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
            );
        }
        m.insert("x-kubernetes-group-version-kind".into(), json!([gvk(def)]));
    }
    s
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        query_param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        ),
    ];
    if patch {
        p.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    p
}

fn op(def: &ResourceDef, action: &str, id: &str, schema_ref: &str, params: Vec<Value>) -> Value {
    let body = json!({"content": {"application/json": {"schema": {"$ref": schema_ref}}}});
    let mut o = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(def),
        "parameters": params,
        "responses": {"200": {"description": "OK",
            "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
    });
    if matches!(action, "post" | "put") {
        o["requestBody"] = body;
    }
    if action == "patch" {
        o["requestBody"] = json!({"content": {
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }});
        // Custom resources take no strategic merge patch (a 415); the API server leaves it out of
        // their PATCH operation, and that is what makes `kubectl apply` send a merge patch.
        if !def.custom {
            o["requestBody"]["content"]["application/strategic-merge-patch+json"] =
                json!({"schema": {"type": "object"}});
        }
    }
    o
}

/// The paths a resource is served at, with the operations kubectl inspects.
fn operations(def: &ResourceDef, schema_ref: &str) -> Vec<(String, Value)> {
    let base = format!("/{}", gv_path(&def.group, &def.version));
    let scoped = if def.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    };
    let id = format!("{}{}", def.kind, def.version);
    let mut params = vec![json!({"name": "name", "in": "path", "required": true,
                                  "description": format!("name of the {}", def.kind),
                                  "schema": {"type": "string", "uniqueItems": true}})];
    if def.namespaced {
        params.push(json!({"name": "namespace", "in": "path", "required": true,
                           "description": "object name and auth scope, such as for teams and projects",
                           "schema": {"type": "string", "uniqueItems": true}}));
    }
    let item = |sub: &str| -> Value {
        json!({
            "get": op(def, "get", &format!("read{sub}{id}"), schema_ref, Vec::new()),
            "put": op(def, "put", &format!("replace{sub}{id}"), schema_ref, write_params(false)),
            "patch": op(def, "patch", &format!("patch{sub}{id}"), schema_ref, write_params(true)),
            "parameters": params,
        })
    };
    let mut object = item("");
    object["delete"] = op(
        def,
        "delete",
        &format!("delete{id}"),
        &format!("{COMPONENTS}io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
        vec![query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        )],
    );
    let mut collection = json!({
        "get": op(def, "list", &format!("list{id}"), schema_ref, Vec::new()),
        "post": op(def, "post", &format!("create{id}"), schema_ref, write_params(false)),
    });
    if def.namespaced {
        collection["parameters"] = json!([params[1]]);
    }
    let mut out = vec![
        (format!("{scoped}/{{name}}"), object),
        (scoped.clone(), collection),
    ];
    if def.status_subresource {
        out.push((format!("{scoped}/{{name}}/status"), item("Status")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::defs_from_crd;

    fn registry_with_ecsi() -> Registry {
        let crd = json!({
            "metadata": {"name": "ecsinstances.ecs.powerctl.io"},
            "spec": {"group": "ecs.powerctl.io", "scope": "Namespaced",
                "names": {"plural": "ecsinstances", "kind": "EcsInstance"},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "description": "Declares the power state of one ECS instance.",
                        "properties": {"spec": {"type": "object",
                            "properties": {"reboot": {"type": "string",
                                "description": "Bump to reboot."}}}}}}}]}});
        let mut reg = Registry::with_builtins();
        for d in defs_from_crd(&crd).unwrap() {
            reg.insert(d);
        }
        reg
    }

    #[test]
    fn the_custom_resource_document_carries_the_crd_schema_and_field_validation() {
        let reg = registry_with_ecsi();
        let doc = v3_group_version(&reg, "ecs.powerctl.io", "v1alpha1").unwrap();
        let s = &doc["components"]["schemas"]["io.powerctl.ecs.v1alpha1.EcsInstance"];
        assert_eq!(
            s["properties"]["spec"]["properties"]["reboot"]["description"],
            "Bump to reboot."
        );
        assert_eq!(
            s["x-kubernetes-group-version-kind"][0]["kind"],
            "EcsInstance"
        );
        let meta_ref = s["properties"]["metadata"]["allOf"][0]["$ref"]
            .as_str()
            .unwrap();
        let meta_name = meta_ref.strip_prefix(COMPONENTS).unwrap();
        assert!(doc["components"]["schemas"][meta_name]["properties"]["labels"].is_object());
        let patch = &doc["paths"]["/apis/ecs.powerctl.io/v1alpha1/namespaces/{namespace}/ecsinstances/{name}"]
            ["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "EcsInstance"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }

    #[test]
    fn builtin_kinds_come_from_k8s_openapi_and_the_index_hash_follows_content() {
        let reg = registry_with_ecsi();
        let core = v3_group_version(&reg, "", "v1").unwrap();
        let secret = &core["components"]["schemas"]["io.k8s.api.core.v1.Secret"];
        assert_eq!(
            secret["x-kubernetes-group-version-kind"][0]["kind"],
            "Secret"
        );
        assert!(secret["properties"]["stringData"]["description"].is_string());
        let index = v3_index(&reg);
        let url = index["paths"]["apis/ecs.powerctl.io/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/ecs.powerctl.io/v1alpha1?hash="));
        assert_ne!(
            url,
            v3_index(&Registry::with_builtins())["paths"]["apis/ecs.powerctl.io/v1alpha1"]["serverRelativeURL"]
        );
    }

    #[test]
    fn the_v2_document_uses_swagger_2_references() {
        let doc = v2(&registry_with_ecsi());
        let text = doc.to_string();
        assert!(!text.contains(COMPONENTS), "v3 references left in v2");
        assert!(doc["definitions"]["io.powerctl.ecs.v1alpha1.EcsInstance"].is_object());
        let p =
            &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"]["parameters"];
        assert!(
            p.as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
        );
    }
}
