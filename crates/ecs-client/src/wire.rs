//! The JSON shapes ECS answers with, and their conversion into this crate's types.
//!
//! Every field is optional on the wire: ECS omits empty ones, and a missing field must never
//! turn a good answer into a decode error (only a missing `RequestId` on an error body, or a body
//! that is not JSON at all, is unreadable).

use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::types::{Instance, InstanceStatus, OperationLock};

/// An error body: `{"RequestId","HostId","Code","Message","Recommend"}`. Some gateways answer
/// with lower-case keys; the official SDK reads both, so do we.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "Code", alias = "code")]
    pub code: Option<String>,
    #[serde(rename = "Message", alias = "message", default)]
    pub message: Option<String>,
    #[serde(rename = "RequestId", alias = "requestId", default)]
    pub request_id: Option<String>,
    #[serde(rename = "Recommend", alias = "recommend", default)]
    pub recommend: Option<String>,
}

impl ErrorBody {
    /// Reads an error answer; `None` when the body is not an ECS error document.
    pub fn parse(body: &[u8], http_status: u16) -> Option<ApiError> {
        let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
        let code = parsed.code.filter(|c| !c.is_empty())?;
        Some(ApiError {
            code,
            message: parsed.message.unwrap_or_default(),
            request_id: parsed.request_id.unwrap_or_default(),
            http_status,
            recommend: parsed.recommend.filter(|r| !r.is_empty()),
            retry_after: None,
        })
    }
}

/// Any success body: every one carries `RequestId`.
#[derive(Debug, Default, Deserialize)]
pub struct Acknowledgement {
    #[serde(rename = "RequestId", default)]
    pub request_id: String,
}

/// `DescribeInstances` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeInstancesResponse {
    pub request_id: String,
    pub next_token: Option<String>,
    pub total_count: Option<u64>,
    pub instances: InstanceList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InstanceList {
    pub instance: Vec<WireInstance>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WireInstance {
    pub instance_id: String,
    pub region_id: String,
    pub status: String,
    pub start_time: Option<String>,
    pub stopped_mode: Option<String>,
    pub instance_type_family: Option<String>,
    pub instance_charge_type: Option<String>,
    pub expired_time: Option<String>,
    pub operation_locks: LockList,
    pub tags: TagList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagList {
    pub tag: Vec<WireTag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WireTag {
    pub tag_key: String,
    pub tag_value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LockList {
    pub lock_reason: Vec<WireLock>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WireLock {
    pub lock_reason: String,
    pub lock_msg: Option<String>,
}

/// ECS sends empty strings for unset fields; they mean "absent".
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl From<WireInstance> for Instance {
    fn from(wire: WireInstance) -> Self {
        Instance {
            status: wire.status.parse().unwrap_or(InstanceStatus::Unknown),
            instance_id: wire.instance_id,
            region_id: wire.region_id,
            start_time: non_empty(wire.start_time),
            stopped_mode: non_empty(wire.stopped_mode),
            instance_type_family: non_empty(wire.instance_type_family),
            instance_charge_type: non_empty(wire.instance_charge_type),
            expired_time: non_empty(wire.expired_time),
            locks: wire
                .operation_locks
                .lock_reason
                .into_iter()
                .filter(|l| !l.lock_reason.is_empty())
                .map(|l| OperationLock {
                    reason: l.lock_reason,
                    message: non_empty(l.lock_msg),
                })
                .collect(),
            tags: wire
                .tags
                .tag
                .into_iter()
                .map(|t| (t.tag_key, t.tag_value))
                .collect(),
        }
    }
}

/// `StartInstances` / `StopInstances` / `RebootInstances` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchResponse {
    pub request_id: String,
    pub instance_responses: BatchList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchList {
    pub instance_response: Vec<WireBatchItem>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WireBatchItem {
    pub instance_id: String,
    /// `"200"` or `200` on success (both have been seen), an error code otherwise.
    pub code: Value,
    pub message: Option<String>,
    pub previous_status: Option<String>,
    pub current_status: Option<String>,
}

impl WireBatchItem {
    /// The item's code as text; `None` when it says success.
    pub fn error_code(&self) -> Option<String> {
        let code = match &self.code {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (code != "200").then_some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_codes_as_string_or_number_mean_success() {
        for body in [r#"{"Code":"200"}"#, r#"{"Code":200}"#] {
            let item: WireBatchItem = serde_json::from_str(body).unwrap();
            assert_eq!(item.error_code(), None, "{body}");
        }
        let item: WireBatchItem =
            serde_json::from_str(r#"{"Code":"IncorrectInstanceStatus"}"#).unwrap();
        assert_eq!(
            item.error_code().as_deref(),
            Some("IncorrectInstanceStatus")
        );
        let item: WireBatchItem = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(item.error_code().as_deref(), Some(""));
    }

    #[test]
    fn instance_with_locks_and_empty_fields() {
        let body = r#"{"InstanceId":"i-1","RegionId":"cn-hangzhou","Status":"Stopped",
            "StartTime":"2026-11-22T10:01Z","StoppedMode":"","InstanceTypeFamily":"ecs.g7",
            "OperationLocks":{"LockReason":[{"LockReason":"security","LockMsg":"abuse"}]},
            "Tags":{"Tag":[{"TagKey":"ecs.powerctl.io/namespaces","TagValue":"team-a, team-b"}]}}"#;
        let wire: WireInstance = serde_json::from_str(body).unwrap();
        let instance = Instance::from(wire);
        assert_eq!(instance.status, InstanceStatus::Stopped);
        assert_eq!(instance.stopped_mode, None);
        assert_eq!(instance.instance_type_family.as_deref(), Some("ecs.g7"));
        assert_eq!(instance.lock_reasons(), vec!["security"]);
        assert_eq!(instance.locks[0].message.as_deref(), Some("abuse"));
        assert!(instance.is_security_locked());
        assert_eq!(
            instance
                .tags
                .get("ecs.powerctl.io/namespaces")
                .map(String::as_str),
            Some("team-a, team-b")
        );
    }

    #[test]
    fn error_body_without_a_code_is_not_an_ecs_error() {
        assert!(ErrorBody::parse(b"<html>502 Bad Gateway</html>", 502).is_none());
        assert!(ErrorBody::parse(br#"{"RequestId":"r"}"#, 500).is_none());
        let err = ErrorBody::parse(
            br#"{"code":"Throttling.User","message":"Request was denied","requestId":"r1"}"#,
            400,
        )
        .unwrap();
        assert_eq!(err.code, "Throttling.User");
        assert_eq!(err.request_id, "r1");
    }
}
