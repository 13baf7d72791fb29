//! API errors rendered as `meta/v1 Status` objects, the way the real API server words them,
//! because kube-rs (and the controller) branch on `code` and `reason`.

use serde_json::{Value, json};

/// One entry of `Status.details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cause {
    /// Machine-readable reason, e.g. `FieldValueRequired`.
    pub reason: String,
    /// Human-readable message (without the field path).
    pub message: String,
    /// Field path such as `spec.powerState`.
    pub field: String,
}

impl Cause {
    pub(crate) fn new(reason: &str, field: &str, message: String) -> Self {
        Cause {
            reason: reason.to_string(),
            message,
            field: field.to_string(),
        }
    }
}

/// An error answered with a non-2xx HTTP status and a `Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
    /// Answered as the API server's mux answers an unknown path: `text/plain`
    /// `404 page not found`, not a `Status`.
    pub plain_text: bool,
}

/// Group and kind-or-plural naming the object in `Status.details`.
pub(crate) struct Target<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl ApiError {
    pub(crate) fn plain(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: None,
            retry_after: None,
            plain_text: false,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(400, "BadRequest", message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::plain(500, "InternalError", message.into())
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::plain(405, "MethodNotAllowed", message.into())
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::plain(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 415 for a patch type the resource does not take: custom resources have no strategic
    /// merge patch (no Go struct tags to drive it), so the API server refuses it.
    pub(crate) fn unsupported_patch_type(custom_resource: bool) -> Self {
        let strategic = if custom_resource {
            ""
        } else {
            ", application/strategic-merge-patch+json"
        };
        Self::plain(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{strategic}"
            ),
        )
    }

    pub(crate) fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::plain(
            429,
            "TooManyRequests",
            "kubesim: injected fault: too many requests, please try again later".into(),
        );
        e.details = Some(json!({ "retryAfterSeconds": retry_after }));
        e.retry_after = Some(retry_after);
        e
    }

    /// 404 for an object; `resource` is `plural.group` (or just `plural` for core).
    pub(crate) fn not_found(t: &Target<'_>) -> Self {
        let mut e = Self::plain(
            404,
            "NotFound",
            format!("{} \"{}\" not found", qualified(t.kind, t.group), t.name),
        );
        e.details = Some(details(t));
        e
    }

    /// 404 for an unknown URL or resource type.
    pub(crate) fn no_route(path: &str) -> Self {
        let mut e = Self::plain(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
        e.details = Some(
            json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": format!("404 page not found: {path}") }] }),
        );
        e
    }

    /// 404 for an unknown resource in a group served by CRDs: the API server's CRD handler
    /// passes it to the mux, which answers `text/plain` `404 page not found`, not a `Status`.
    pub(crate) fn no_route_in_custom_group(path: &str) -> Self {
        let mut e = Self::no_route(path);
        e.plain_text = true;
        e
    }

    pub(crate) fn already_exists(t: &Target<'_>) -> Self {
        let mut e = Self::plain(
            409,
            "AlreadyExists",
            format!(
                "{} \"{}\" already exists",
                qualified(t.kind, t.group),
                t.name
            ),
        );
        e.details = Some(details(t));
        e
    }

    /// 409 for a stale `resourceVersion` or a failed precondition.
    pub(crate) fn conflict(t: &Target<'_>, why: &str) -> Self {
        let mut e = Self::plain(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                qualified(t.kind, t.group),
                t.name
            ),
        );
        e.details = Some(details(t));
        e
    }

    /// 409 for server-side apply field manager conflicts.
    pub(crate) fn apply_conflict(conflicts: &[(String, String)]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{manager}\""),
                    "field": field,
                })
            })
            .collect();
        let listed: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
            .collect();
        let mut e = Self::plain(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                listed.join("\n")
            ),
        );
        // The API server names no object here, only the conflicting fields.
        e.details = Some(json!({ "causes": causes }));
        e
    }

    /// 422 `Invalid` with one cause per field problem, worded like the API server.
    pub(crate) fn invalid(t: &Target<'_>, kind: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let summary = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let kind_name = if t.group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{}", t.group)
        };
        let mut d = details(&Target {
            group: t.group,
            kind,
            name: t.name,
        });
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                .collect(),
        );
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind_name} \"{}\" is invalid: {summary}", t.name),
            details: Some(d),
            retry_after: None,
            plain_text: false,
        }
    }

    /// 410 `Expired`, for a watch or continue token older than the kept history.
    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self::plain(410, "Expired", message.into())
    }

    pub(crate) fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn qualified(kind_or_plural: &str, group: &str) -> String {
    if group.is_empty() {
        kind_or_plural.to_string()
    } else {
        format!("{kind_or_plural}.{group}")
    }
}

/// `Status.details` naming the object; an empty group is left out, as Go's `omitempty` does.
fn details(t: &Target<'_>) -> Value {
    let mut d = json!({ "name": t.name, "group": t.group, "kind": t.kind });
    if let Some(m) = d.as_object_mut() {
        if t.group.is_empty() {
            m.remove("group");
        }
        if t.name.is_empty() {
            m.remove("name");
        }
    }
    d
}
