//! The ECS error model: what went wrong, and what kind of wrong the controller acts on.

use std::fmt;
use std::time::Duration;

/// An error answer from the ECS API: the JSON error body plus what came with it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub http_status: u16,
    pub recommend: Option<String>,
    /// `x-acs-retry-after`, when a throttled answer carries it.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// The same error with every occurrence of `secrets` in its texts replaced (see [`redact`]).
    /// The client applies it to every error answer before anyone else sees it.
    pub(crate) fn redacted(self, secrets: &[&str]) -> Self {
        Self {
            message: redact(&self.message, secrets),
            recommend: self.recommend.map(|r| redact(&r, secrets)),
            ..self
        }
    }
}

/// What a redacted secret reads as.
pub const REDACTED: &str = "***";

/// Replaces every occurrence of each secret in `text`, as is and in the percent-encoded forms a
/// server quotes it in: the message of a V1 `SignatureDoesNotMatch` holds the server's string to
/// sign, where the `SecurityToken` parameter is percent-encoded twice. Secrets shorter than six
/// characters are left alone (they would shred the text and cannot be real keys).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 6) {
        let once = crate::sign::percent_encode(secret);
        let twice = crate::sign::percent_encode(&once);
        // Most encoded first: each form is looked for in text the previous ones left.
        for form in [twice, once, secret.to_string()] {
            if out.contains(&form) {
                out = out.replace(&form, REDACTED);
            }
        }
    }
    out
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client redacts credentials out of the message; keep Debug to the fields an
        // operator reads all the same.
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request_id", &self.request_id)
            .field("http_status", &self.http_status)
            .finish()
    }
}

impl fmt::Display for ApiError {
    /// `CODE: message (RequestId …)`: the one line the CLI prints and events carry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (RequestId {})",
            self.code, self.message, self.request_id
        )
    }
}

/// Every way an ECS call can fail.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EcsError {
    /// ECS answered with an error body.
    #[error("{0}")]
    Api(ApiError),
    /// The request was sent (or may have been) but got no answer: timeout, reset connection.
    /// A mutation may have been executed.
    #[error("{action}: no answer from {endpoint}: {detail}")]
    Transport {
        action: String,
        endpoint: String,
        detail: String,
    },
    /// The connection could not be made (refused, DNS, TLS handshake): the request never left,
    /// so even a mutation may safely be sent again.
    #[error("{action}: cannot connect to {endpoint}: {detail}")]
    Connect {
        action: String,
        endpoint: String,
        detail: String,
    },
    /// ECS answered, but not with something we can read (not JSON, truncated, missing fields).
    #[error("{action}: unreadable answer (HTTP {http_status}): {detail}")]
    Decode {
        action: String,
        http_status: u16,
        detail: String,
    },
    /// No usable credentials (the provider chain came up empty, or STS/metadata refused).
    #[error("credentials: {0}")]
    Credentials(String),
    /// The credentials source (STS, the metadata service, the credentials URI) could not be
    /// reached or failed on its side (timeout, reset, 5xx, throttled). Nothing was sent to ECS,
    /// and nothing is wrong with the credentials: an outage of the source passes.
    #[error("credentials: {provider} is unavailable: {detail}")]
    CredentialSourceUnavailable { provider: String, detail: String },
    /// A request the client refuses to send (empty instance id, too many ids, …).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// A mutating call held back and then not sent: the caller's admission was withdrawn before
    /// it left (see `EcsApi::power_if`). Nothing reached ECS.
    #[error("{0}: not sent: no longer admitted")]
    NotSent(String),
}

impl EcsError {
    /// What the controller should make of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api(api) => ErrorClass::of(&api.code, api.http_status),
            Self::Transport { .. }
            | Self::Connect { .. }
            | Self::Decode { .. }
            | Self::CredentialSourceUnavailable { .. } => ErrorClass::Transient,
            Self::Credentials(_) => ErrorClass::Credentials,
            Self::InvalidInput(_) | Self::NotSent(_) => ErrorClass::InvalidRequest,
        }
    }

    /// The ECS error code, or a stable name of ours for errors ECS did not answer.
    pub fn code(&self) -> &str {
        match self {
            Self::Api(api) => &api.code,
            Self::Transport { .. } => "Transport",
            Self::Connect { .. } => "ConnectFailed",
            Self::Decode { .. } => "UnreadableResponse",
            Self::Credentials(_) => "CredentialsUnavailable",
            Self::CredentialSourceUnavailable { .. } => "CredentialSourceUnavailable",
            Self::InvalidInput(_) => "InvalidInput",
            Self::NotSent(_) => "NotSent",
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api(api) if !api.request_id.is_empty() => Some(&api.request_id),
            _ => None,
        }
    }

    pub fn as_api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(api) => Some(api),
            _ => None,
        }
    }

    /// A `DryRunOperation` answer: the checks passed and nothing changed.
    pub fn is_dry_run_passed(&self) -> bool {
        self.class() == ErrorClass::DryRunPassed
    }
}

/// The kinds of failure the controller treats differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// `DryRunOperation`: a dry run whose checks all passed.
    DryRunPassed,
    /// `InstanceNotReady`: the instance is still being created; retry in a few seconds.
    NotReady,
    /// `IncorrectInstanceStatus`: the instance moved; observe again before acting.
    WrongState,
    /// `InstanceLockedForSecurity`: only a person (or Alibaba Cloud) can lift it.
    Locked,
    /// Overdue or expired: `InsufficientBalance`, `InstanceExpired`, `InstanceExpiredOrInArrears`.
    Billing,
    /// `InvalidInstanceId.NotFound`.
    NotFound,
    /// The AccessKey, signature or security token was refused.
    Credentials,
    /// Authenticated but not allowed (`Forbidden.RAM`, KMS not authorised, …).
    Forbidden,
    /// `DiskError`: a disk of the instance is in an abnormal state.
    Disk,
    /// No capacity or quota to start now (`OperationDenied.NoStock`, `QuotaExceed.*`).
    Capacity,
    /// Flow control (`Throttling*`, HTTP 429).
    Throttled,
    /// Worth retrying as is: 5xx, transport, clock skew, nonce reuse.
    Transient,
    /// The request itself is wrong (`MissingParameter`, `InvalidParameter*`, …).
    InvalidRequest,
}

impl ErrorClass {
    /// Classifies an ECS error code; an unknown code falls back to its HTTP status.
    pub fn of(code: &str, http_status: u16) -> Self {
        match code {
            "DryRunOperation" => Self::DryRunPassed,
            "InstanceNotReady" => Self::NotReady,
            "InstanceLockedForSecurity" => Self::Locked,
            "InsufficientBalance" | "InstanceExpired" | "InstanceExpiredOrInArrears" => {
                Self::Billing
            }
            "InvalidInstanceId.NotFound" => Self::NotFound,
            "DiskError" => Self::Disk,
            "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "InvalidAccessKeyId.NotFound"
            | "InvalidAccessKeyId.Inactive"
            | "InvalidAccessKeyId"
            // Temporary credentials sent without their token: the Secret (or the source) lacks
            // it, which no change of the EcsInstance spec can fix.
            | "MissingSecurityToken" => Self::Credentials,
            "InternalError"
            | "ServiceUnavailable"
            | "UnknownError"
            | "InvalidTimeStamp.Expired"
            | "SignatureNonceUsed" => Self::Transient,
            "MissingParameter"
            | "InstanceType.ParameterMismatch"
            | "InvalidInstanceId.NotSupport"
            | "InvalidInstanceId.MalFormed" => Self::InvalidRequest,
            "OperationDenied.NoStock" => Self::Capacity,
            "InvalidParameter.KMSKeyId.KMSUnauthorized" => Self::Forbidden,
            _ if code.starts_with("IncorrectInstanceStatus") => Self::WrongState,
            _ if code.starts_with("Throttling") => Self::Throttled,
            _ if code.starts_with("InvalidSecurityToken") => Self::Credentials,
            _ if code.starts_with("Forbidden") || code.starts_with("NoPermission") => {
                Self::Forbidden
            }
            _ if code.starts_with("QuotaExceed") => Self::Capacity,
            _ if code.starts_with("InvalidParameter") || code.starts_with("MissingParameter") => {
                Self::InvalidRequest
            }
            _ => Self::of_http_status(http_status),
        }
    }

    /// The fallback for codes this project has never seen. Status 0 marks an error without an
    /// HTTP status of its own (one instance's answer inside a batch call): an unknown code
    /// there may be a server error, so it counts as one (a mutation that may have executed).
    pub fn of_http_status(http_status: u16) -> Self {
        match http_status {
            0 => Self::Transient,
            429 => Self::Throttled,
            401 => Self::Credentials,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            500..=599 => Self::Transient,
            _ => Self::InvalidRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_finds_a_secret_as_is_and_percent_encoded_once_or_twice() {
        let token = "CAIS/sts+tok==";
        let quoted = format!(
            "raw {token} once {} twice {} short abc",
            crate::sign::percent_encode(token),
            crate::sign::percent_encode(&crate::sign::percent_encode(token))
        );
        assert_eq!(
            redact(&quoted, &[token, "abc"]),
            "raw *** once *** twice *** short abc"
        );
    }
}
