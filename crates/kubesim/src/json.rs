//! Small readers of untyped JSON objects, shared by the modules that work on them.

use serde_json::Value;

/// The strings of a JSON array (`finalizers`, `required`, a CRD's short names...); empty when
/// the value is missing or not an array, and non-strings are skipped.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_of_an_array_and_nothing_otherwise() {
        assert_eq!(strings(Some(&json!(["a", 1, "b"]))), ["a", "b"]);
        assert!(strings(Some(&json!("a"))).is_empty());
        assert!(strings(None).is_empty());
    }
}
