//! Protobuf request bodies. kubectl's typed clients send built-in kinds as
//! `application/vnd.kubernetes.protobuf` (`kubectl create namespace`, `create secret generic`,
//! `create configmap`); kubesim stores JSON, so those bodies are decoded here with the `k8s-pb`
//! message types and turned into the JSON the API server would have received. Responses stay
//! JSON: kubectl also accepts `application/json` and decodes by the response's content type.
//!
//! Only the kinds kubectl creates from its own generators are decoded; any other protobuf body
//! is answered `415 Unsupported Media Type` naming the kind, never silently misread.

use super::error::ApiError;
use base64::Engine as _;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message as _;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub(crate) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes that open every Kubernetes protobuf envelope (`k8s\0`).
const MAGIC: &[u8] = b"k8s\0";

/// Decodes an enveloped protobuf object into its JSON form (`apiVersion`/`kind` included).
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the body does not start with the Kubernetes protobuf prefix"))
        .and_then(|rest| Unknown::decode(rest).map_err(|e| bad(&e.to_string())))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = core::Namespace::decode(raw.as_slice()).map_err(|e| bad(&e.to_string()))?;
            let mut o = object(ns.metadata);
            let finalizers = ns.spec.map(|s| s.finalizers).unwrap_or_default();
            if !finalizers.is_empty() {
                o.insert("spec".into(), json!({"finalizers": finalizers}));
            }
            o
        }
        ("v1", "Secret") => {
            let s = core::Secret::decode(raw.as_slice()).map_err(|e| bad(&e.to_string()))?;
            let mut o = object(s.metadata);
            insert_map(&mut o, "data", base64_values(s.data));
            insert_map(&mut o, "stringData", s.string_data);
            if let Some(t) = s.r#type {
                o.insert("type".into(), Value::String(t));
            }
            if let Some(i) = s.immutable {
                o.insert("immutable".into(), Value::Bool(i));
            }
            o
        }
        ("v1", "ConfigMap") => {
            let c = core::ConfigMap::decode(raw.as_slice()).map_err(|e| bad(&e.to_string()))?;
            let mut o = object(c.metadata);
            insert_map(&mut o, "data", c.data);
            insert_map(&mut o, "binaryData", base64_values(c.binary_data));
            if let Some(i) = c.immutable {
                o.insert("immutable".into(), Value::Bool(i));
            }
            o
        }
        _ => {
            return Err(ApiError::unsupported_media_type(&format!(
                "{CONTENT_TYPE} (kubesim decodes protobuf only for v1 Namespace, Secret and ConfigMap, not {api_version} {kind}; send application/json)"
            )));
        }
    };
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(obj))
}

fn bad(reason: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the body of the request could not be decoded as protobuf: {reason}"
    ))
}

fn base64_values(m: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    m.into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect()
}

fn insert_map(o: &mut Map<String, Value>, key: &str, m: BTreeMap<String, String>) {
    if !m.is_empty() {
        o.insert(key.into(), json!(m));
    }
}

/// The object with its metadata: the fields a client may set on create.
fn object(m: Option<meta::ObjectMeta>) -> Map<String, Value> {
    let m = m.unwrap_or_default();
    let mut md = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            md.insert(k.into(), Value::String(v));
        }
    };
    put("name", m.name);
    put("generateName", m.generate_name);
    put("namespace", m.namespace);
    put("uid", m.uid);
    put("resourceVersion", m.resource_version);
    insert_map(&mut md, "labels", m.labels);
    insert_map(&mut md, "annotations", m.annotations);
    if !m.finalizers.is_empty() {
        md.insert("finalizers".into(), json!(m.finalizers));
    }
    if !m.owner_references.is_empty() {
        let refs: Vec<Value> = m
            .owner_references
            .into_iter()
            .map(|r| {
                json!({
                    "apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid,
                    "controller": r.controller, "blockOwnerDeletion": r.block_owner_deletion,
                })
            })
            .collect();
        md.insert("ownerReferences".into(), Value::Array(refs));
    }
    let mut o = Map::new();
    o.insert("metadata".into(), Value::Object(md));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn a_secret_as_kubectl_create_secret_generic_sends_it() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("creds".into()),
                labels: BTreeMap::from([("team".into(), "z".into())]),
                ..Default::default()
            }),
            data: BTreeMap::from([("key".into(), b"s3cr3t".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "creds", "labels": {"team": "z"}},
                   "data": {"key": "czNjcjN0"}})
        );
    }

    #[test]
    fn kinds_kubesim_does_not_decode_are_refused_by_name() {
        let e = decode(&envelope("Pod", Vec::new())).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("v1 Pod"), "{}", e.message);
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
    }
}
