//! Structural-schema handling for custom resources: defaulting, pruning of unknown fields and
//! validation against `openAPIV3Schema` (plus `x-kubernetes-validations`, by [`super::cel`]), producing the
//! same field causes the real API server returns in a 422.

use super::cel;
use super::error::Cause;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

/// A compiled schema node.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    ty: Option<String>,
    nullable: bool,
    enum_values: Option<Vec<Value>>,
    pattern: Option<(String, Regex)>,
    required: Vec<String>,
    properties: BTreeMap<String, Schema>,
    additional: Option<Box<Schema>>,
    additional_any: bool,
    items: Option<Box<Schema>>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    min_items: Option<u64>,
    max_items: Option<u64>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    preserve_unknown: bool,
    int_or_string: bool,
    embedded_resource: bool,
    default: Option<Value>,
    any_of: Vec<Schema>,
    one_of: Vec<Schema>,
    all_of: Vec<Schema>,
    not: Option<Box<Schema>>,
    /// The node's `x-kubernetes-validations`, compiled by kube-cel.
    rules: Option<cel::Rules>,
}

impl Schema {
    /// Compiles a schema; problems (bad regex, a CEL rule that does not compile) come back as
    /// causes under `base_path` so the CRD create can be rejected.
    pub(crate) fn compile(v: &Value, base_path: &str, errors: &mut Vec<Cause>) -> Schema {
        let mut s = Schema::default();
        let Some(m) = v.as_object() else {
            errors.push(Cause::new(
                "FieldValueInvalid",
                base_path,
                "Invalid value: schema must be an object".into(),
            ));
            return s;
        };
        let str_of = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let u = |k: &str| m.get(k).and_then(Value::as_u64);
        let f = |k: &str| m.get(k).and_then(Value::as_f64);
        let b = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
        s.ty = str_of("type");
        s.nullable = b("nullable");
        s.enum_values = m.get("enum").and_then(Value::as_array).cloned();
        if let Some(p) = str_of("pattern") {
            match Regex::new(&p) {
                Ok(re) => s.pattern = Some((p, re)),
                Err(e) => errors.push(Cause::new(
                    "FieldValueInvalid",
                    &format!("{base_path}.pattern"),
                    format!("Invalid value: {p:?}: {e}"),
                )),
            }
        }
        s.required = crate::json::strings(m.get("required"));
        if let Some(props) = m.get("properties").and_then(Value::as_object) {
            for (k, pv) in props {
                let sub = Schema::compile(pv, &format!("{base_path}.properties[{k}]"), errors);
                s.properties.insert(k.clone(), sub);
            }
        }
        match m.get("additionalProperties") {
            Some(Value::Bool(true)) => s.additional_any = true,
            Some(ap @ Value::Object(_)) => {
                s.additional = Some(Box::new(Schema::compile(
                    ap,
                    &format!("{base_path}.additionalProperties"),
                    errors,
                )))
            }
            _ => {}
        }
        if let Some(items) = m.get("items") {
            s.items = Some(Box::new(Schema::compile(
                items,
                &format!("{base_path}.items"),
                errors,
            )));
        }
        s.min_length = u("minLength");
        s.max_length = u("maxLength");
        s.minimum = f("minimum");
        s.maximum = f("maximum");
        s.exclusive_minimum = b("exclusiveMinimum");
        s.exclusive_maximum = b("exclusiveMaximum");
        s.min_items = u("minItems");
        s.max_items = u("maxItems");
        s.min_properties = u("minProperties");
        s.max_properties = u("maxProperties");
        s.preserve_unknown = b("x-kubernetes-preserve-unknown-fields");
        s.int_or_string = b("x-kubernetes-int-or-string");
        s.embedded_resource = b("x-kubernetes-embedded-resource");
        s.default = m.get("default").cloned();
        for (key, target) in [("anyOf", 0), ("oneOf", 1), ("allOf", 2)] {
            if let Some(list) = m.get(key).and_then(Value::as_array) {
                let compiled: Vec<Schema> = list
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Schema::compile(x, &format!("{base_path}.{key}[{i}]"), errors))
                    .collect();
                match target {
                    0 => s.any_of = compiled,
                    1 => s.one_of = compiled,
                    _ => s.all_of = compiled,
                }
            }
        }
        if let Some(n) = m.get("not") {
            s.not = Some(Box::new(Schema::compile(
                n,
                &format!("{base_path}.not"),
                errors,
            )));
        }
        s.rules = cel::Rules::compile(v, base_path, errors);
        s
    }

    /// Applies `default`s and drops unknown fields (unless preserved) and nulls of non-nullable
    /// fields. Returns the paths of dropped unknown fields (for `fieldValidation=Strict`).
    pub(crate) fn default_and_prune(&self, v: &mut Value, path: &str, pruned: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                let root = path.is_empty();
                let mut unknown = Vec::new();
                for (k, child) in m.iter_mut() {
                    if root && (k == "apiVersion" || k == "kind" || k == "metadata") {
                        continue;
                    }
                    if self.embedded_resource
                        && (k == "apiVersion" || k == "kind" || k == "metadata")
                    {
                        continue;
                    }
                    let child_path = join(path, k);
                    if let Some(ps) = self.properties.get(k) {
                        ps.default_and_prune(child, &child_path, pruned);
                    } else if let Some(ap) = &self.additional {
                        ap.default_and_prune(child, &child_path, pruned);
                    } else if !(self.preserve_unknown || self.additional_any) {
                        unknown.push(k.clone());
                    }
                }
                for k in unknown {
                    m.remove(&k);
                    pruned.push(join(path, &k));
                }
                let null_keys: Vec<String> = m
                    .iter()
                    .filter(|(k, c)| {
                        c.is_null() && self.properties.get(*k).is_some_and(|p| !p.nullable)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in null_keys {
                    m.remove(&k);
                }
                for (k, ps) in &self.properties {
                    if !m.contains_key(k)
                        && let Some(d) = &ps.default
                    {
                        let mut d = d.clone();
                        ps.default_and_prune(&mut d, &join(path, k), &mut Vec::new());
                        m.insert(k.clone(), d);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(is) = &self.items {
                    for (i, item) in items.iter_mut().enumerate() {
                        is.default_and_prune(item, &format!("{path}[{i}]"), pruned);
                    }
                }
            }
            _ => {}
        }
    }

    /// Validates `v` (and, for transition rules, against `old`), appending causes.
    pub(crate) fn validate(
        &self,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        out: &mut Vec<Cause>,
    ) {
        let shown = if path.is_empty() { "<root>" } else { path };
        if v.is_null() {
            if !self.nullable && self.ty.is_some() {
                out.push(Cause::new(
                    "FieldValueTypeInvalid",
                    path,
                    format!(
                        "Invalid value: \"null\": {shown} in body must be of type {}: \"null\"",
                        self.ty.as_deref().unwrap_or("object")
                    ),
                ));
            }
            return;
        }
        if !self.type_matches(v) {
            out.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"{}\": {shown} in body must be of type {}: \"{}\"",
                    json_type(v),
                    self.ty.as_deref().unwrap_or("?"),
                    json_type(v)
                ),
            ));
            return;
        }
        if let Some(allowed) = &self.enum_values
            && !allowed.contains(v)
        {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            out.push(Cause::new(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    v,
                    listed.join(", ")
                ),
            ));
        }
        match v {
            Value::String(s) => self.validate_string(s, path, shown, out),
            Value::Number(n) => {
                self.validate_number(v, n.as_f64().unwrap_or(0.0), path, shown, out)
            }
            Value::Array(items) => {
                if let Some(max) = self.max_items
                    && items.len() as u64 > max
                {
                    out.push(Cause::new(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {}: must have at most {max} items", items.len()),
                    ));
                }
                if let Some(min) = self.min_items
                    && (items.len() as u64) < min
                {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {}: {shown} in body should have at least {min} items",
                            items.len()
                        ),
                    ));
                }
                if let Some(is) = &self.items {
                    let old_items = old.and_then(Value::as_array);
                    for (i, item) in items.iter().enumerate() {
                        // Old list items are correlated by index only for transition rules.
                        let oi = old_items.and_then(|o| o.get(i));
                        is.validate(item, oi, &format!("{path}[{i}]"), out);
                    }
                }
            }
            Value::Object(m) => {
                let root = path.is_empty();
                for req in &self.required {
                    if !m.contains_key(req) {
                        out.push(Cause::new(
                            "FieldValueRequired",
                            &join(path, req),
                            "Required value".into(),
                        ));
                    }
                }
                if let Some(max) = self.max_properties
                    && m.len() as u64 > max
                {
                    out.push(Cause::new(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {}: must have at most {max} items", m.len()),
                    ));
                }
                if let Some(min) = self.min_properties
                    && (m.len() as u64) < min
                {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {}: {shown} in body should have at least {min} properties", m.len()),
                    ));
                }
                for (k, child) in m {
                    if root && (k == "metadata" || k == "apiVersion" || k == "kind") {
                        continue;
                    }
                    let old_child = old.and_then(|o| o.get(k));
                    if let Some(ps) = self.properties.get(k) {
                        ps.validate(child, old_child, &join(path, k), out);
                    } else if let Some(ap) = &self.additional {
                        ap.validate(child, old_child, &join(path, k), out);
                    }
                }
            }
            _ => {}
        }
        self.validate_combinators(v, old, path, out);
        self.validate_rules(v, old, path, out);
    }

    fn type_matches(&self, v: &Value) -> bool {
        if self.int_or_string {
            return v.is_string() || v.is_i64() || v.is_u64();
        }
        match self.ty.as_deref() {
            None => true,
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("boolean") => v.is_boolean(),
            Some(_) => true,
        }
    }

    fn validate_string(&self, s: &str, path: &str, shown: &str, out: &mut Vec<Cause>) {
        let len = s.chars().count() as u64;
        if let Some(max) = self.max_length
            && len > max
        {
            out.push(Cause::new(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
        if let Some(min) = self.min_length
            && len < min
        {
            out.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {s:?}: {shown} in body should be at least {min} chars long"
                ),
            ));
        }
        if let Some((src, re)) = &self.pattern
            && !re.is_match(s)
        {
            out.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {s:?}: {shown} in body should match '{src}'"),
            ));
        }
    }

    fn validate_number(&self, v: &Value, n: f64, path: &str, shown: &str, out: &mut Vec<Cause>) {
        if let Some(min) = self.minimum {
            let bad = if self.exclusive_minimum {
                n <= min
            } else {
                n < min
            };
            if bad {
                let rel = if self.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                out.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {v}: {shown} in body should be {rel} {}",
                        fmt_num(min)
                    ),
                ));
            }
        }
        if let Some(max) = self.maximum {
            let bad = if self.exclusive_maximum {
                n >= max
            } else {
                n > max
            };
            if bad {
                let rel = if self.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                out.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {v}: {shown} in body should be {rel} {}",
                        fmt_num(max)
                    ),
                ));
            }
        }
    }

    fn validate_combinators(
        &self,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        out: &mut Vec<Cause>,
    ) {
        let passes = |s: &Schema| {
            let mut c = Vec::new();
            s.validate(v, old, path, &mut c);
            c.is_empty()
        };
        for s in &self.all_of {
            s.validate(v, old, path, out);
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(passes) {
            out.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {}: {} in body must match at least one schema (anyOf)",
                    short(v),
                    shown(path)
                ),
            ));
        }
        if !self.one_of.is_empty() {
            let n = self.one_of.iter().filter(|s| passes(s)).count();
            if n != 1 {
                out.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {}: {} in body must validate one and only one schema (oneOf), matched {n}", short(v), shown(path)),
                ));
            }
        }
        if let Some(n) = &self.not
            && passes(n)
        {
            out.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {}: {} in body must not match the schema (not)",
                    short(v),
                    shown(path)
                ),
            ));
        }
    }

    fn validate_rules(&self, v: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
        let Some(rules) = &self.rules else { return };
        for f in rules.check(v, old) {
            let field = match f.field_path.as_str() {
                "" => path.to_string(),
                fp if path.is_empty() => fp.trim_start_matches('.').to_string(),
                fp if fp.starts_with('.') => format!("{path}{fp}"),
                fp => join(path, fp),
            };
            if f.evaluation_error {
                out.push(Cause::new(
                    "FieldValueInvalid",
                    &field,
                    format!(
                        "Invalid value: \"{}\": rule evaluation error: {}: {}",
                        json_type(v),
                        f.rule,
                        f.message
                    ),
                ));
                continue;
            }
            let reason = f.reason.as_deref().unwrap_or("FieldValueInvalid");
            let prefix = match reason {
                "FieldValueForbidden" => "Forbidden".to_string(),
                "FieldValueRequired" => "Required value".to_string(),
                "FieldValueDuplicate" => "Duplicate value".to_string(),
                _ => invalid_value(v),
            };
            out.push(Cause::new(
                reason,
                &field,
                format!("{prefix}: {}", f.message),
            ));
        }
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}

fn short(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// `Invalid value: <value>` as the API server words a failed rule: a scalar is shown (strings
/// quoted), an object or array is not (field.OmitValueType).
fn invalid_value(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => "Invalid value".to_string(),
        Value::String(s) => format!("Invalid value: {s:?}"),
        other => format!("Invalid value: {other}"),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Convenience for tests: compile from a JSON value, panicking on schema errors.
#[cfg(test)]
fn compiled(v: Value) -> Schema {
    let mut errs = Vec::new();
    let s = Schema::compile(&v, "schema", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        compiled(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["instanceId", "powerState"],
                    "properties": {
                        "instanceId": {"type": "string", "pattern": "^i-[a-z0-9]+$", "maxLength": 12},
                        "powerState": {"type": "string", "enum": ["Running", "Stopped"]},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 5, "default": 1},
                        "note": {"type": "string", "nullable": true},
                        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    },
                    "x-kubernetes-validations": [
                        {"rule": "self.instanceId == oldSelf.instanceId", "message": "instanceId is immutable"}
                    ]
                }
            }
        }))
    }

    fn causes(obj: Value, old: Option<Value>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        schema().validate(&obj, old.as_ref(), "", &mut out);
        out.into_iter().map(|c| (c.reason, c.field)).collect()
    }

    #[test]
    fn each_violation_becomes_a_cause_with_its_field_path() {
        let got = causes(
            json!({"spec": {"instanceId": "bad", "powerState": "Paused", "replicas": 9}}),
            None,
        );
        assert!(
            got.contains(&("FieldValueInvalid".into(), "spec.instanceId".into())),
            "{got:?}"
        );
        assert!(got.contains(&("FieldValueNotSupported".into(), "spec.powerState".into())));
        assert!(got.contains(&("FieldValueInvalid".into(), "spec.replicas".into())));
        let got = causes(json!({"spec": {"instanceId": "i-1"}}), None);
        assert_eq!(
            got,
            vec![("FieldValueRequired".into(), "spec.powerState".into())]
        );
        let got = causes(
            json!({"spec": {"instanceId": 5, "powerState": "Running"}}),
            None,
        );
        assert_eq!(
            got,
            vec![("FieldValueTypeInvalid".into(), "spec.instanceId".into())]
        );
    }

    #[test]
    fn transition_rules_run_only_on_update() {
        let new = json!({"spec": {"instanceId": "i-2", "powerState": "Running"}});
        assert!(causes(new.clone(), None).is_empty());
        let old = json!({"spec": {"instanceId": "i-1", "powerState": "Running"}});
        assert_eq!(
            causes(new, Some(old)),
            vec![("FieldValueInvalid".into(), "spec".into())]
        );
    }

    #[test]
    fn pruning_drops_unknown_fields_keeps_preserved_ones_and_applies_defaults() {
        let mut v = json!({"metadata": {"x": 1}, "spec": {"instanceId": "i-1", "bogus": 1, "note": null,
            "tags": {"a": "b"}, "free": {"anything": [1]}}, "extra": true});
        let mut pruned = Vec::new();
        schema().default_and_prune(&mut v, "", &mut pruned);
        assert_eq!(
            v,
            json!({"metadata": {"x": 1}, "spec": {"instanceId": "i-1", "note": null, "replicas": 1,
            "tags": {"a": "b"}, "free": {"anything": [1]}}})
        );
        pruned.sort();
        assert_eq!(pruned, vec!["extra".to_string(), "spec.bogus".to_string()]);
    }

    #[test]
    fn unsupported_cel_is_reported_at_compile_time() {
        let mut errs = Vec::new();
        Schema::compile(
            &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.x.quantity() > 1"}]}),
            "s",
            &mut errs,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "s.x-kubernetes-validations[0].rule");
    }
}
