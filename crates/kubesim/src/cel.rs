//! `x-kubernetes-validations` by kube-rs's CEL engine, `kube-cel` (the crate kube-core's `cel`
//! feature re-exports), instead of an interpreter of our own: the rule, `oldSelf` transition
//! rules, `optionalOldSelf`, `message`, `messageExpression`, `reason` and `fieldPath` all behave
//! as kube-rs's client-side validation does.
//!
//! The `schema` module keeps walking the object (it owns the field paths and the 422 wording);
//! each schema node that carries rules compiles *its own* rules here, over its own structure so
//! values convert with the node's formats, with the rules of the nodes below stripped (those
//! nodes compile theirs).

use super::error::Cause;
use kube_cel::cel::{Context, ExecutionError, Program};
use kube_cel::{CompilationError, CompiledSchema, ErrorKind, KubeCelExt, ValidationError};
use serde_json::Value;

const RULES: &str = "x-kubernetes-validations";

/// The keywords under which a schema node has child schemas.
const CHILD_MAPS: &[&str] = &["properties", "patternProperties", "definitions"];
const CHILD_NODES: &[&str] = &["items", "additionalProperties", "not"];
const CHILD_LISTS: &[&str] = &["allOf", "oneOf", "anyOf"];

/// The compiled rules of one schema node.
pub(crate) struct Rules(CompiledSchema);

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rules")
            .field(&self.0.validations.len())
            .finish()
    }
}

/// A rule that did not hold, relative to the node it sits on.
pub(crate) struct Failure {
    /// Empty for the node itself, else the rule's `fieldPath` (`.x` or `x`).
    pub(crate) field_path: String,
    /// The rule's `reason`, when it failed (rather than could not be evaluated).
    pub(crate) reason: Option<String>,
    /// `messageExpression`'s, `message`'s or the default message.
    pub(crate) message: String,
    /// The rule could not be evaluated (error, non-bool result, unknown function).
    pub(crate) evaluation_error: bool,
    pub(crate) rule: String,
}

impl Rules {
    /// Compiles the rules of schema node `node`, if it has any. A rule (or `messageExpression`)
    /// that does not parse, or calls a function this build does not provide, becomes a cause under
    /// `base_path`, so the CRD create is rejected instead of the rule failing on every object.
    pub(crate) fn compile(node: &Value, base_path: &str, errors: &mut Vec<Cause>) -> Option<Rules> {
        let raw = node.get(RULES)?.as_array()?;
        let compiled = kube_cel::compile_schema(&own_rules_only(node));
        let mut ok = true;
        for (i, (result, raw)) in compiled.validations.iter().zip(raw).enumerate() {
            let path = format!("{base_path}.{RULES}[{i}]");
            let problem = match result {
                Ok(c) => unknown_function(&c.program)
                    .or_else(|| c.message_program.as_ref().and_then(unknown_function))
                    .map(|f| {
                        let src = &c.rule.rule;
                        (
                            format!("{path}.rule"),
                            format!(
                                "Invalid value: {src:?}: undeclared reference to '{f}' (kubesim evaluates CEL with kube-cel's standard and strings functions)"
                            ),
                        )
                    }),
                Err(CompilationError::MessageExpressionParse { .. }) => Some((
                    format!("{path}.messageExpression"),
                    format!("Invalid value: {result_err}", result_err = err_text(result)),
                )),
                Err(_) if raw.get("rule").and_then(Value::as_str).is_none() => {
                    Some((format!("{path}.rule"), "Required value".to_string()))
                }
                Err(_) => Some((
                    format!("{path}.rule"),
                    format!("Invalid value: {}", err_text(result)),
                )),
            };
            if let Some((field, message)) = problem {
                let reason = if message == "Required value" {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                };
                errors.push(Cause::new(reason, &field, message));
                ok = false;
            }
        }
        ok.then_some(Rules(compiled))
    }

    /// Evaluates the rules against `value` (and `old`, on update: transition rules are skipped on
    /// create unless `optionalOldSelf`).
    pub(crate) fn check(&self, value: &Value, old: Option<&Value>) -> Vec<Failure> {
        match kube_cel::validate_compiled(&self.0, value, old) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_vec().into_iter().map(Failure::from).collect(),
        }
    }
}

impl From<ValidationError> for Failure {
    fn from(e: ValidationError) -> Self {
        let failed = e.kind == ErrorKind::ValidationFailure;
        Failure {
            field_path: e.field_path,
            reason: if failed { e.reason } else { None },
            message: e.message,
            evaluation_error: !failed,
            rule: e.rule,
        }
    }
}

fn err_text<T>(r: &Result<T, CompilationError>) -> String {
    r.as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A copy of `node` whose descendants carry no rules (they compile their own).
fn own_rules_only(node: &Value) -> Value {
    let mut copy = node.clone();
    if let Some(m) = copy.as_object_mut() {
        for key in CHILD_MAPS {
            if let Some(Value::Object(children)) = m.get_mut(*key) {
                children.values_mut().for_each(strip_rules);
            }
        }
        for key in CHILD_NODES {
            if let Some(child) = m.get_mut(*key) {
                strip_rules(child);
            }
        }
        for key in CHILD_LISTS {
            if let Some(Value::Array(children)) = m.get_mut(*key) {
                children.iter_mut().for_each(strip_rules);
            }
        }
    }
    copy
}

fn strip_rules(node: &mut Value) {
    if let Some(m) = node.as_object_mut() {
        m.remove(RULES);
    }
    *node = own_rules_only(node);
}

thread_local! {
    /// The functions rules may call: CEL's standard ones plus the kube-cel extensions compiled in.
    static FUNCTIONS: Context<'static> = Context::default().with_all();
}

/// The first function `program` calls that the evaluation context lacks. cel-rust has no type
/// checker (the API server type-checks at CRD create), so each named function is probed with an
/// empty call: only a missing one answers "undeclared reference".
fn unknown_function(program: &Program) -> Option<String> {
    let refs = program.references();
    let mut names: Vec<&str> = refs
        .functions()
        .into_iter()
        .filter(|f| f.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .collect();
    names.sort_unstable();
    names.into_iter().find_map(|f| {
        let probe = Program::compile(&format!("{f}()")).ok()?;
        FUNCTIONS.with(|ctx| match probe.execute(ctx) {
            Err(ExecutionError::UndeclaredReference(_)) => Some(f.to_string()),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Evaluates `rule` on `this` (and `old`) the way a schema node does; `Err` for a rule that
    /// does not compile or cannot be evaluated.
    fn run(rule: &str, this: Value, old: Option<Value>) -> Result<Value, String> {
        let mut errors = Vec::new();
        let rules = Rules::compile(&json!({ RULES: [{"rule": rule}] }), "s", &mut errors)
            .ok_or_else(|| format!("{errors:?}"))?;
        match rules.check(&this, old.as_ref()).pop() {
            None => Ok(json!(true)),
            Some(f) if f.evaluation_error => Err(f.message),
            Some(_) => Ok(json!(false)),
        }
    }

    fn parse(rule: &str) -> Result<(), String> {
        run(rule, json!({"x": "1"}), None).map(drop)
    }

    #[test]
    fn immutability_rule_compares_old_and_new() {
        let rule = "self.instanceId == oldSelf.instanceId";
        assert_eq!(
            run(
                rule,
                json!({"instanceId": "i-1"}),
                Some(json!({"instanceId": "i-1"}))
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                rule,
                json!({"instanceId": "i-2"}),
                Some(json!({"instanceId": "i-1"}))
            ),
            Ok(json!(false))
        );
        // A transition rule is not evaluated on create.
        assert_eq!(
            run(rule, json!({"instanceId": "i-2"}), None),
            Ok(json!(true))
        );
    }

    #[test]
    fn has_size_and_comparisons() {
        let obj = json!({"a": "xyz", "n": 3, "l": [1, 2]});
        assert_eq!(
            run("has(self.a) && !has(self.b)", obj.clone(), None),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                "size(self.a) == 3 && self.l.size() < self.n",
                obj.clone(),
                None
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                "self.n >= 3 ? self.a.startsWith('x') : false",
                obj.clone(),
                None
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                "self.l.all(x, x > 0) && self.l.exists(x, x == 2)",
                obj.clone(),
                None
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run("'xyz' in ['a', self.a]", obj.clone(), None),
            Ok(json!(true))
        );
        assert_eq!(
            run("!has(self.b) || self.b > 1", obj.clone(), None),
            Ok(json!(true))
        );
        assert_eq!(
            run("self.a.upperAscii() == 'XYZ'", obj, None),
            Ok(json!(true))
        );
    }

    #[test]
    fn missing_key_is_an_error_and_unknown_functions_do_not_parse() {
        assert!(run("self.b == 1", json!({}), None).is_err());
        assert!(parse("self.x.quantity() > 1").is_err());
        assert!(parse("self.x.noSuchFunction()").is_err());
        assert!(parse("self.x ==").is_err());
    }

    #[test]
    fn standard_functions_and_macros_compile_and_evaluate() {
        let obj = json!({"a": "xyz", "n": 3, "l": [1, 2]});
        for rule in [
            "self.a.matches('^x') && self.a.contains('y') && self.a.endsWith('z')",
            "int('3') == self.n && double(self.n) > 2.5 && string(self.n) == '3'",
            "self.l.filter(x, x > 1).size() == 1 && self.l.map(x, x * 2)[1] == 4",
            "self.l.exists_one(x, x == 1) && self.a.lowerAscii() == 'xyz'",
            "duration('1s') < duration('2s') && self.n % 2 == 1 && -self.n < 0",
        ] {
            assert_eq!(run(rule, obj.clone(), None), Ok(json!(true)), "{rule}");
        }
    }

    #[test]
    fn message_expression_and_reason_reach_the_failure() {
        let node = json!({ RULES: [{
            "rule": "self.n < 3",
            "messageExpression": "'n is ' + string(self.n) + ', at most 2'",
            "reason": "FieldValueForbidden",
            "fieldPath": ".n"
        }]});
        let rules = Rules::compile(&node, "s", &mut Vec::new()).expect("compiles");
        let failures = rules.check(&json!({"n": 5}), None);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].message, "n is 5, at most 2");
        assert_eq!(failures[0].reason.as_deref(), Some("FieldValueForbidden"));
        assert_eq!(failures[0].field_path, ".n");
    }

    #[test]
    fn rules_of_nodes_below_are_left_to_them() {
        let node = json!({"type": "object", RULES: [{"rule": "true"}],
            "properties": {"a": {"type": "string", RULES: [{"rule": "false"}]}}});
        let rules = Rules::compile(&node, "s", &mut Vec::new()).expect("compiles");
        assert!(rules.check(&json!({"a": "x"}), None).is_empty());
    }
}
