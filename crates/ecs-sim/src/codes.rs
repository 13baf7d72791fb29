//! The error answers the simulator gives, with the HTTP status and message ECS uses for each.
//!
//! Messages are the ones of the ECS API reference pages (`shared/seeds/`) and of the common
//! error table; the official SDKs surface `Code` and the HTTP status, and the legacy SDK also
//! parses the `SignatureDoesNotMatch` message.

use serde::Serialize;

/// One error answer: what goes into the JSON error body and the HTTP status line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct SimError {
    pub code: String,
    pub http_status: u16,
    pub message: String,
    /// Extra response headers (`Retry-After`, `x-acs-retry-after`), from an injected fault.
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
}

impl SimError {
    pub(crate) fn new(
        code: impl Into<String>,
        http_status: u16,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code: code.into(),
            http_status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// A known code with its documented status and message; an unknown code answers 400 with a
    /// generic message (fault injection can override both).
    pub(crate) fn known(code: &str) -> Self {
        let (status, message) = lookup(code).unwrap_or((400, "The request has failed."));
        Self::new(code, status, message)
    }

    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            400,
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    pub(crate) fn invalid_parameter(name: &str, detail: &str) -> Self {
        Self::new(
            "InvalidParameter",
            400,
            format!("The specified parameter \"{name}\" is not valid: {detail}"),
        )
    }

    pub(crate) fn incorrect_status(status: &str) -> Self {
        Self::new(
            "IncorrectInstanceStatus",
            403,
            format!(
                "The current status of the resource does not support this operation. Status: {status}"
            ),
        )
    }

    pub(crate) fn incomplete_signature(detail: &str) -> Self {
        Self::new(
            "IncompleteSignature",
            400,
            format!("The request signature does not conform to Aliyun standards. {detail}"),
        )
    }

    /// The legacy SDK splits this message at the first `:` and compares the rest with its own
    /// string to sign (equal means: right string, wrong secret → `InvalidAccessKeySecret`).
    pub(crate) fn signature_does_not_match(server_string_to_sign: &str) -> Self {
        Self::new(
            "SignatureDoesNotMatch",
            400,
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{server_string_to_sign}"
            ),
        )
    }
}

/// HTTP status and message of every code the simulator can answer on its own.
pub(crate) fn lookup(code: &str) -> Option<(u16, &'static str)> {
    Some(match code {
        "MissingParameter" => (
            400,
            "The input parameter InstanceId that is mandatory for processing this request is not supplied.",
        ),
        "InvalidParameter" => (400, "The specified parameter is not valid."),
        "DiskError" => (403, "Incorrect Disk Status"),
        "IncorrectInstanceStatus" => (
            403,
            "The current status of the resource does not support this operation.",
        ),
        "InstanceLockedForSecurity" => (
            403,
            "The specified operation is denied as your instance is locked for security reasons.",
        ),
        "InstanceNotReady" => (403, "The specified instance is not ready for use"),
        "InsufficientBalance" => (403, "Your account does not have enough balance."),
        "InstanceExpired" => (403, "PrePaid instances has been expired."),
        "InstanceExpiredOrInArrears" => (
            403,
            "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
        ),
        "InvalidInstanceId.NotFound" => (404, "The specified InstanceId does not exist."),
        "InvalidParameter.KMSKeyId.KMSUnauthorized" => {
            (403, "ECS service have no right to access your KMS.")
        }
        "InternalError" => (
            500,
            "The request processing has failed due to some unknown error, exception or failure.",
        ),
        "ServiceUnavailable" => (
            503,
            "The request has failed due to a temporary failure of the server.",
        ),
        "Throttling" => (400, "Request was denied due to request throttling."),
        "Throttling.User" => (400, "Request was denied due to user flow control."),
        "Throttling.Api" => (400, "Request was denied due to api flow control."),
        "DryRunOperation" => (
            400,
            "Request validation has been passed with DryRun flag set.",
        ),
        "InvalidAccessKeyId.NotFound" => (404, "Specified access key is not found."),
        "InvalidTimeStamp.Expired" => (400, "Specified time stamp or date value is expired."),
        "InvalidTimeStamp.Format" => (
            400,
            "Specified time stamp or date value is not well formatted.",
        ),
        "SignatureNonceUsed" => (400, "Specified signature nonce was used already."),
        "IncompleteSignature" => (
            400,
            "The request signature does not conform to Aliyun standards.",
        ),
        "SignatureDoesNotMatch" => (
            400,
            "Specified signature is not matched with our calculation.",
        ),
        "Forbidden.RAM" => (
            403,
            "User not authorized to operate on the specified resource.",
        ),
        "InvalidSecurityToken.Expired" => (400, "Specified SecurityToken is expired."),
        "InvalidSecurityToken.Malformed" => (400, "Specified SecurityToken is malformed."),
        "InvalidSecurityToken.MismatchWithAccessKey" => {
            (400, "Specified SecurityToken mismatch with the AccessKey.")
        }
        "MissingSecurityToken" => (400, "SecurityToken is mandatory for this AccessKey."),
        "InvalidAction.NotFound" => (
            404,
            "Specified api is not found, please check your url and method.",
        ),
        "InvalidVersion" => (400, "Specified parameter Version is not valid."),
        "InvalidInstanceIds.Malformed" => {
            (400, "The specified parameter InstanceIds is not valid.")
        }
        "OperationDenied.NoStock" => (
            403,
            "The resource is out of stock in the specified zone. Please try other types, or choose other regions and zones.",
        ),
        "QuotaExceed.ElasticQuota" => (
            403,
            "The total number of specified instance types exceeds the quota.",
        ),
        "InstanceType.ParameterMismatch" => (
            400,
            "The specified instance type does not match the other parameters.",
        ),
        "InvalidInstanceId.NotSupport" => (
            403,
            "The specified instance does not support this operation.",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_page_codes_have_their_documented_status() {
        for (code, status) in [
            ("MissingParameter", 400),
            ("DiskError", 403),
            ("IncorrectInstanceStatus", 403),
            ("InstanceLockedForSecurity", 403),
            ("InstanceNotReady", 403),
            ("InsufficientBalance", 403),
            ("InstanceExpired", 403),
            ("InstanceExpiredOrInArrears", 403),
            ("InvalidInstanceId.NotFound", 404),
            ("InternalError", 500),
            ("InvalidParameter.KMSKeyId.KMSUnauthorized", 403),
            ("ServiceUnavailable", 503),
            ("DryRunOperation", 400),
        ] {
            assert_eq!(SimError::known(code).http_status, status, "{code}");
        }
    }

    #[test]
    fn the_legacy_sdk_finds_the_string_to_sign_after_the_first_colon() {
        let err = SimError::signature_does_not_match("POST&%2F&A%3Db");
        assert_eq!(err.message.split(':').nth(1), Some("POST&%2F&A%3Db"));
    }
}
