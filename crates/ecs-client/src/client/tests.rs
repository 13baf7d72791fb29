//! The HTTP client against loopback servers: request shapes, every documented error code end
//! to end (classification and the CLI line), and the retry rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::ErrorClass;
use crate::command::error_line;
use crate::credentials::{CredentialsError, StaticProvider};
use crate::sign::{parse_v3_authorization, v1_signature, v1_string_to_sign};
use crate::testing::{Recorded, Reply, TestServer};
use crate::types::{
    InstanceStatus, PowerRequest, RebootOptions, StartOptions, StopOptions, StoppedMode,
};

const REGION: &str = "cn-hangzhou";
const ID: &str = "i-bp67acfmxazb4ph1234";

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_total: Duration::from_secs(5),
    }
}

fn config(server: &TestServer, version: SignatureVersion, retry: RetryPolicy) -> EcsClientConfig {
    EcsClientConfig {
        endpoint: EndpointConfig::fixed(&server.url()).unwrap(),
        signature_version: version,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        retry,
        rate_limits: RateLimits::unlimited(),
    }
}

fn creds() -> Credentials {
    Credentials::new("testid", "testsecret", None)
}

fn client(server: &TestServer, retry: RetryPolicy) -> EcsClient {
    EcsClient::new(
        config(server, SignatureVersion::V3, retry),
        Arc::new(StaticProvider(creds())),
    )
    .unwrap()
}

/// Counts how often credentials were asked for: once per attempt, even when nothing arrives.
#[derive(Debug, Default)]
struct CountingProvider(AtomicU32);

#[async_trait]
impl CredentialsProvider for CountingProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(creds())
    }
    fn name(&self) -> &'static str {
        "counting"
    }
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({
        "RequestId": "5F2D1A0B-0000-4E8A-9C71-2F5D8E9A0B13",
        "HostId": "ecs.aliyuncs.com",
        "Code": code,
        "Message": message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}"),
    })
    .to_string()
}

const OK: &str = r#"{"RequestId":"OK-REQUEST"}"#;

/// Verifies a recorded V3 request the way a server would, with our own canonicalisation.
fn verify_v3(request: &Recorded, secret: &str) -> bool {
    let Some(auth) = request.header("authorization").map(parse_v3_authorization) else {
        return false;
    };
    let Ok(auth) = auth else { return false };
    let headers: Vec<(String, String)> = auth
        .signed_headers
        .iter()
        .map(|name| (name.clone(), request.header(name).unwrap_or("").to_string()))
        .collect();
    let input = V3Input {
        method: &request.method,
        path: &request.path,
        query: &request.query,
        headers: &headers,
        payload_hash: &sign::sha256_hex(&request.body),
    };
    sign::signatures_equal(&input.signature(secret), &auth.signature)
}

// ---- request shapes ----------------------------------------------------------------------

#[tokio::test]
async fn v3_stop_is_a_signed_post_with_parameters_in_the_query() {
    let server = TestServer::fixed(Reply::json(200, OK)).await;
    let client = client(&server, RetryPolicy::never());
    let options = StopOptions {
        force: true,
        stopped_mode: Some(StoppedMode::StopCharging),
        dry_run: false,
    };
    let accepted = client
        .power(REGION, ID, PowerRequest::Stop(options))
        .await
        .unwrap();
    assert_eq!(accepted.request_id, "OK-REQUEST");

    let [request] = server.requests().try_into().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/");
    assert!(request.body.is_empty());
    assert_eq!(request.param("InstanceId"), Some(ID));
    assert_eq!(request.param("RegionId"), Some(REGION));
    assert_eq!(request.param("ForceStop"), Some("true"));
    assert_eq!(request.param("StoppedMode"), Some("StopCharging"));
    assert_eq!(request.param("DryRun"), Some("false"));
    assert_eq!(request.header("x-acs-action"), Some("StopInstance"));
    assert_eq!(request.header("x-acs-version"), Some("2014-05-26"));
    assert_eq!(
        request.header("x-acs-content-sha256"),
        Some(EMPTY_BODY_SHA256)
    );
    assert_eq!(
        request.header("host"),
        Some(server.addr.to_string().as_str())
    );
    assert!(request.header("x-acs-security-token").is_none());
    let auth = parse_v3_authorization(request.header("authorization").unwrap()).unwrap();
    assert_eq!(auth.access_key_id, "testid");
    assert_eq!(
        auth.signed_headers,
        [
            "host",
            "x-acs-action",
            "x-acs-content-sha256",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-version"
        ]
    );
    assert!(verify_v3(&request, "testsecret"));
    assert!(!verify_v3(&request, "wrongsecret"));
}

#[tokio::test]
async fn v3_with_sts_credentials_signs_the_security_token() {
    let server = TestServer::fixed(Reply::json(200, OK)).await;
    let client = EcsClient::new(
        config(&server, SignatureVersion::V3, RetryPolicy::never()),
        Arc::new(StaticProvider(Credentials::new(
            "STS.id",
            "stssecret",
            Some("the-token".into()),
        ))),
    )
    .unwrap();
    client
        .power(REGION, ID, PowerRequest::Reboot(RebootOptions::default()))
        .await
        .unwrap();
    let [request] = server.requests().try_into().unwrap();
    assert_eq!(request.header("x-acs-security-token"), Some("the-token"));
    let auth = parse_v3_authorization(request.header("authorization").unwrap()).unwrap();
    assert!(
        auth.signed_headers
            .contains(&"x-acs-security-token".to_string())
    );
    assert!(verify_v3(&request, "stssecret"));
}

#[tokio::test]
async fn v1_start_carries_the_rpc_common_parameters_and_a_valid_signature() {
    let server = TestServer::fixed(Reply::json(200, OK)).await;
    let client = EcsClient::new(
        config(&server, SignatureVersion::V1, RetryPolicy::never()),
        Arc::new(StaticProvider(Credentials::new(
            "STS.id",
            "v1secret",
            Some("tok+en/=".into()),
        ))),
    )
    .unwrap();
    let options = StartOptions {
        init_local_disk: true,
        dry_run: false,
    };
    client
        .power(REGION, ID, PowerRequest::Start(options))
        .await
        .unwrap();
    let [request] = server.requests().try_into().unwrap();
    assert_eq!(request.method, "POST");
    assert!(request.body.is_empty());
    for (name, value) in [
        ("Action", "StartInstance"),
        ("Version", "2014-05-26"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", "STS.id"),
        ("SecurityToken", "tok+en/="),
        ("InitLocalDisk", "true"),
        ("InstanceId", ID),
    ] {
        assert_eq!(request.param(name), Some(value), "{name}");
    }
    let signature = request.param("Signature").unwrap().to_string();
    let signed: Vec<(String, String)> = request
        .query
        .iter()
        .filter(|(k, _)| k != "Signature")
        .cloned()
        .collect();
    let expected = v1_signature("v1secret", &v1_string_to_sign("POST", &signed));
    assert_eq!(signature, expected);
    assert!(request.header("authorization").is_none());
}

#[tokio::test]
async fn describe_chunks_by_100_and_follows_next_token() {
    // Each chunk answers in two pages: the ids of the first half, then the rest.
    let server = TestServer::start(|request, _| {
        let ids: Vec<String> =
            serde_json::from_str(request.param("InstanceIds").unwrap_or("[]")).unwrap_or_default();
        let second_page = request.param("NextToken") == Some("page-2");
        let (half, next) = if second_page {
            (&ids[ids.len() / 2..], "")
        } else {
            (&ids[..ids.len() / 2], "page-2")
        };
        let instances: Vec<_> = half
            .iter()
            .map(|id| {
                serde_json::json!({"InstanceId": id, "RegionId": "cn-hangzhou", "Status": "Running",
                "OperationLocks": {"LockReason": []}})
            })
            .collect();
        Reply::json(
            200,
            serde_json::json!({"RequestId": "r", "NextToken": next, "TotalCount": ids.len(),
                "Instances": {"Instance": instances}})
            .to_string(),
        )
    })
    .await;
    let client = client(&server, RetryPolicy::never());
    let ids: Vec<String> = (0..250).map(|n| format!("i-{n:04}")).collect();
    let found = client.describe_instances(REGION, &ids).await.unwrap();
    assert_eq!(found.len(), 250);
    assert!(found.iter().all(|i| i.status == InstanceStatus::Running));
    let mut found_ids: Vec<_> = found.iter().map(|i| i.instance_id.clone()).collect();
    found_ids.sort();
    assert_eq!(found_ids, ids);

    let requests = server.requests();
    assert_eq!(requests.len(), 6, "3 chunks x 2 pages");
    for request in &requests {
        let chunk: Vec<String> =
            serde_json::from_str(request.param("InstanceIds").unwrap()).unwrap();
        assert!(chunk.len() <= 100);
        assert_eq!(request.param("MaxResults"), Some("100"));
        assert_eq!(request.header("x-acs-action"), Some("DescribeInstances"));
    }
}

#[tokio::test]
async fn describe_of_no_ids_never_lists_the_whole_region() {
    let server = TestServer::fixed(Reply::json(200, "{}")).await;
    let found = client(&server, RetryPolicy::never())
        .describe_instances(REGION, &[])
        .await
        .unwrap();
    assert!(found.is_empty());
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn batch_reboot_sends_force_reboot_and_reads_each_instance_code() {
    let server = TestServer::fixed(Reply::json(
        200,
        r#"{"RequestId":"B-1","InstanceResponses":{"InstanceResponse":[
            {"InstanceId":"i-a","Code":"200","Message":"success","PreviousStatus":"Running","CurrentStatus":"Starting"},
            {"InstanceId":"i-b","Code":200,"Message":"success","PreviousStatus":"Running","CurrentStatus":"Starting"},
            {"InstanceId":"i-c","Code":"IncorrectInstanceStatus","Message":"The current status of the resource does not support this operation.","PreviousStatus":"Stopped","CurrentStatus":"Stopped"}]}}"#,
    ))
    .await;
    let ids = vec!["i-a".to_string(), "i-b".to_string(), "i-c".to_string()];
    let answer = client(&server, RetryPolicy::never())
        .power_batch(
            REGION,
            &ids,
            PowerRequest::Reboot(RebootOptions {
                force: true,
                dry_run: false,
            }),
        )
        .await
        .unwrap();
    assert_eq!(answer.request_id, "B-1");
    assert!(answer.items[0].result.is_ok());
    assert!(answer.items[1].result.is_ok());
    assert_eq!(
        answer.items[1].current_status,
        Some(InstanceStatus::Starting)
    );
    let failed = answer.items[2].result.as_ref().unwrap_err();
    assert_eq!(failed.class(), ErrorClass::WrongState);
    assert_eq!(failed.request_id(), Some("B-1"));

    let [request] = server.requests().try_into().unwrap();
    assert_eq!(request.header("x-acs-action"), Some("RebootInstances"));
    assert_eq!(request.param("ForceReboot"), Some("true"));
    assert_eq!(request.param("ForceStop"), None);
    assert_eq!(request.param("BatchOptimization"), Some("SuccessFirst"));
    assert_eq!(request.param("InstanceId.1"), Some("i-a"));
    assert_eq!(request.param("InstanceId.3"), Some("i-c"));
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_sent() {
    let server = TestServer::fixed(Reply::json(200, OK)).await;
    let client = client(&server, RetryPolicy::never());
    let err = client
        .power(
            REGION,
            "i-1&Action=DeleteInstance",
            PowerRequest::Stop(StopOptions::default()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::InvalidInput(_)), "{err}");
    let too_many: Vec<String> = (0..101).map(|n| format!("i-{n}")).collect();
    assert!(
        client
            .power_batch(
                REGION,
                &too_many,
                PowerRequest::Stop(StopOptions::default())
            )
            .await
            .is_err()
    );
    assert!(
        client
            .power(
                "cn-hangzhou.evil.com#",
                ID,
                PowerRequest::Start(StartOptions::default())
            )
            .await
            .is_err()
    );
    assert!(server.requests().is_empty());
}

// ---- every documented error code, end to end -----------------------------------------------

enum Call {
    Start,
    Stop,
    Reboot,
    Describe,
}

async fn answer_with(call: Call, status: u16, code: &str, message: &str) -> EcsError {
    let server = TestServer::fixed(Reply::json(status, error_body(code, message))).await;
    let client = client(&server, RetryPolicy::never());
    let ids = [ID.to_string()];
    let result = match call {
        Call::Start => client
            .power(REGION, ID, PowerRequest::Start(StartOptions::default()))
            .await
            .map(drop),
        Call::Stop => client
            .power(REGION, ID, PowerRequest::Stop(StopOptions::default()))
            .await
            .map(drop),
        Call::Reboot => client
            .power(REGION, ID, PowerRequest::Reboot(RebootOptions::default()))
            .await
            .map(drop),
        Call::Describe => client.describe_instances(REGION, &ids).await.map(drop),
    };
    let error = result.expect_err("an error body must be an error");
    assert_eq!(server.requests().len(), 1);
    error
}

/// One test per documented code: the answer is classified as the controller needs, carries its
/// code, message, RequestId and status, and the CLI prints it as `CODE: message (RequestId …)`.
macro_rules! error_code {
    ($name:ident, $call:expr, $status:expr, $code:expr, $message:expr, $class:expr) => {
        #[tokio::test]
        async fn $name() {
            let error = answer_with($call, $status, $code, $message).await;
            assert_eq!(error.class(), $class, "{error:?}");
            let api = error.as_api().expect("an API error");
            assert_eq!(api.code, $code);
            assert_eq!(api.message, $message);
            assert_eq!(api.http_status, $status);
            assert_eq!(api.request_id, "5F2D1A0B-0000-4E8A-9C71-2F5D8E9A0B13");
            assert!(api.recommend.as_deref().is_some_and(|r| r.contains($code)));
            assert_eq!(
                error_line(&error),
                format!(
                    "{}: {} (RequestId 5F2D1A0B-0000-4E8A-9C71-2F5D8E9A0B13)",
                    $code, $message
                )
            );
        }
    };
}

// StartInstance (seed pages 000, 001).
error_code!(
    start_missing_parameter,
    Call::Start,
    400,
    "MissingParameter",
    "The input parameter InstanceId that is mandatory for processing this request is not supplied.",
    ErrorClass::InvalidRequest
);
error_code!(
    start_disk_error,
    Call::Start,
    403,
    "DiskError",
    "Incorrect Disk Status",
    ErrorClass::Disk
);
error_code!(
    start_incorrect_instance_status,
    Call::Start,
    403,
    "IncorrectInstanceStatus",
    "The current state of the instance does not support this operation.",
    ErrorClass::WrongState
);
error_code!(
    start_instance_locked_for_security,
    Call::Start,
    403,
    "InstanceLockedForSecurity",
    "The specified operation is denied as your instance is locked for security reasons.",
    ErrorClass::Locked
);
error_code!(
    start_instance_not_ready_403,
    Call::Start,
    403,
    "InstanceNotReady",
    "The specified instance is not ready for use",
    ErrorClass::NotReady
);
error_code!(
    start_instance_not_ready_500,
    Call::Start,
    500,
    "InstanceNotReady",
    "The specified instance is not ready for use",
    ErrorClass::NotReady
);
error_code!(
    start_insufficient_balance,
    Call::Start,
    403,
    "InsufficientBalance",
    "Your account does not have enough balance.",
    ErrorClass::Billing
);
error_code!(
    start_instance_expired,
    Call::Start,
    403,
    "InstanceExpired",
    "PrePaid instances has been expired.",
    ErrorClass::Billing
);
error_code!(
    start_invalid_instance_id_not_found,
    Call::Start,
    404,
    "InvalidInstanceId.NotFound",
    "The specified InstanceId does not exist.",
    ErrorClass::NotFound
);
error_code!(
    start_internal_error,
    Call::Start,
    500,
    "InternalError",
    "The request processing has failed due to some unknown error.",
    ErrorClass::Transient
);

// RebootInstance (seed page 004).
error_code!(
    reboot_invalid_instance_id_not_found,
    Call::Reboot,
    404,
    "InvalidInstanceId.NotFound",
    "The specified InstanceId does not exist.",
    ErrorClass::NotFound
);
error_code!(
    reboot_incorrect_instance_status,
    Call::Reboot,
    403,
    "IncorrectInstanceStatus",
    "The current status of the resource does not support this operation.",
    ErrorClass::WrongState
);
error_code!(
    reboot_incorrect_instance_status_with_state,
    Call::Reboot,
    403,
    "IncorrectInstanceStatus",
    "The instance is in Stopping status.",
    ErrorClass::WrongState
);
error_code!(
    reboot_instance_locked_for_security,
    Call::Reboot,
    403,
    "InstanceLockedForSecurity",
    "The specified operation is denied as your instance is locked for security reasons.",
    ErrorClass::Locked
);
error_code!(
    reboot_disk_error,
    Call::Reboot,
    403,
    "DiskError",
    "IncorrectDiskStatus.",
    ErrorClass::Disk
);
error_code!(
    reboot_internal_error,
    Call::Reboot,
    500,
    "InternalError",
    "The request processing has failed due to some unknown error, exception or failure.",
    ErrorClass::Transient
);
error_code!(
    reboot_instance_expired_or_in_arrears,
    Call::Reboot,
    403,
    "InstanceExpiredOrInArrears",
    "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
    ErrorClass::Billing
);
error_code!(
    reboot_kms_unauthorized,
    Call::Reboot,
    403,
    "InvalidParameter.KMSKeyId.KMSUnauthorized",
    "ECS service have no right to access your KMS.",
    ErrorClass::Forbidden
);

// Common to every action (reference).
error_code!(
    throttling,
    Call::Stop,
    400,
    "Throttling",
    "Request was denied due to request throttling.",
    ErrorClass::Throttled
);
error_code!(
    throttling_user,
    Call::Stop,
    400,
    "Throttling.User",
    "Request was denied due to user flow control.",
    ErrorClass::Throttled
);
error_code!(
    throttling_api,
    Call::Describe,
    400,
    "Throttling.Api",
    "Request was denied due to api flow control.",
    ErrorClass::Throttled
);
error_code!(
    service_unavailable,
    Call::Stop,
    503,
    "ServiceUnavailable",
    "The request has failed due to a temporary failure of the server.",
    ErrorClass::Transient
);
error_code!(
    signature_does_not_match,
    Call::Stop,
    400,
    "SignatureDoesNotMatch",
    "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3Dtestid",
    ErrorClass::Credentials
);
error_code!(
    invalid_access_key_id_not_found,
    Call::Describe,
    404,
    "InvalidAccessKeyId.NotFound",
    "Specified access key is not found.",
    ErrorClass::Credentials
);
error_code!(
    incomplete_signature,
    Call::Stop,
    400,
    "IncompleteSignature",
    "The request signature does not conform to Aliyun standards.",
    ErrorClass::Credentials
);
error_code!(
    invalid_timestamp_expired,
    Call::Stop,
    400,
    "InvalidTimeStamp.Expired",
    "Specified time stamp or date value is expired.",
    ErrorClass::Transient
);
error_code!(
    signature_nonce_used,
    Call::Stop,
    400,
    "SignatureNonceUsed",
    "Specified signature nonce was used already.",
    ErrorClass::Transient
);
error_code!(
    forbidden_ram,
    Call::Stop,
    403,
    "Forbidden.RAM",
    "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
    ErrorClass::Forbidden
);
error_code!(
    invalid_security_token_expired,
    Call::Describe,
    400,
    "InvalidSecurityToken.Expired",
    "Specified SecurityToken is expired.",
    ErrorClass::Credentials
);
error_code!(
    invalid_security_token_malformed,
    Call::Describe,
    400,
    "InvalidSecurityToken.Malformed",
    "Specified SecurityToken is malformed.",
    ErrorClass::Credentials
);
error_code!(
    invalid_security_token_mismatch,
    Call::Describe,
    400,
    "InvalidSecurityToken.MismatchWithAccessKey",
    "Specified SecurityToken mismatch with the AccessKey.",
    ErrorClass::Credentials
);
error_code!(
    missing_security_token,
    Call::Stop,
    400,
    "MissingSecurityToken",
    "SecurityToken is mandatory for this AccessKey.",
    ErrorClass::Credentials
);
error_code!(
    dry_run_operation,
    Call::Reboot,
    400,
    "DryRunOperation",
    "Request validation has been passed with DryRun flag set.",
    ErrorClass::DryRunPassed
);
error_code!(
    operation_denied_no_stock,
    Call::Start,
    403,
    "OperationDenied.NoStock",
    "Sales of this resource are temporarily suspended in the specified region; please try again later.",
    ErrorClass::Capacity
);
error_code!(
    quota_exceed_elastic_quota,
    Call::Start,
    403,
    "QuotaExceed.ElasticQuota",
    "The number of vCPUs assigned to the ECS instances has exceeded the quota in the zone.",
    ErrorClass::Capacity
);
error_code!(
    instance_type_parameter_mismatch,
    Call::Start,
    400,
    "InstanceType.ParameterMismatch",
    "The specified instance type does not support this parameter.",
    ErrorClass::InvalidRequest
);
error_code!(
    invalid_instance_id_not_support,
    Call::Stop,
    403,
    "InvalidInstanceId.NotSupport",
    "The specified instance is not supported.",
    ErrorClass::InvalidRequest
);

// Codes nobody documented yet fall back to their HTTP status.
error_code!(
    unknown_code_503_is_transient,
    Call::Stop,
    503,
    "Brand.NewOutage",
    "new",
    ErrorClass::Transient
);
error_code!(
    unknown_code_429_is_throttled,
    Call::Describe,
    429,
    "Brand.NewLimit",
    "new",
    ErrorClass::Throttled
);
error_code!(
    unknown_code_403_is_forbidden,
    Call::Stop,
    403,
    "Brand.NewDenial",
    "new",
    ErrorClass::Forbidden
);
error_code!(
    unknown_code_400_is_invalid,
    Call::Stop,
    400,
    "Brand.NewCheck",
    "new",
    ErrorClass::InvalidRequest
);

#[tokio::test]
async fn unreadable_answers_are_decode_errors_not_crashes() {
    for (status, body) in [
        (502, "<html><body>502 Bad Gateway</body></html>"),
        (500, ""),
        (
            200,
            r#"{"RequestId":"r","Instances":{"Instance":[{"InstanceId":"i-1""#,
        ),
        (200, "not json at all"),
        (400, r#"{"RequestId":"only-an-id"}"#),
    ] {
        let server = TestServer::fixed(Reply::json(status, body)).await;
        let error = client(&server, RetryPolicy::never())
            .describe_instances(REGION, &[ID.to_string()])
            .await
            .unwrap_err();
        assert!(
            matches!(error, EcsError::Decode { http_status, .. } if http_status == status),
            "{status} {body}: {error:?}"
        );
        let line = error_line(&error);
        assert!(
            line.starts_with("UnreadableResponse: DescribeInstances"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

#[tokio::test]
async fn retry_after_header_is_read_as_milliseconds() {
    let server = TestServer::fixed(
        Reply::json(400, error_body("Throttling.User", "slow down"))
            .with_header("x-acs-retry-after", "1500"),
    )
    .await;
    let error = client(&server, RetryPolicy::never())
        .power(REGION, ID, PowerRequest::Stop(StopOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(
        error.as_api().unwrap().retry_after,
        Some(Duration::from_millis(1500))
    );
}

// ---- retries -----------------------------------------------------------------------------

#[tokio::test]
async fn a_mutation_answered_500_is_never_sent_twice() {
    for (status, code) in [
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (500, "InstanceNotReady"),
    ] {
        let server = TestServer::fixed(Reply::json(status, error_body(code, "x"))).await;
        let error = client(&server, quick_retries())
            .power(REGION, ID, PowerRequest::Reboot(RebootOptions::default()))
            .await
            .unwrap_err();
        assert_eq!(error.code(), code);
        assert_eq!(server.requests().len(), 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn a_mutation_that_timed_out_is_never_sent_twice() {
    let server = TestServer::fixed(Reply::json(200, OK).after(Duration::from_secs(3))).await;
    let started = std::time::Instant::now();
    let error = client(&server, quick_retries())
        .power(REGION, ID, PowerRequest::Reboot(RebootOptions::default()))
        .await
        .unwrap_err();
    assert!(matches!(error, EcsError::Transport { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_eq!(server.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_throttled_mutation_is_retried_with_a_fresh_nonce() {
    for code in [
        "Throttling.User",
        "SignatureNonceUsed",
        "InvalidTimeStamp.Expired",
    ] {
        let server = TestServer::start(move |_, n| {
            if n == 0 {
                Reply::json(400, error_body(code, "x"))
            } else {
                Reply::json(200, OK)
            }
        })
        .await;
        let accepted = client(&server, quick_retries())
            .power(REGION, ID, PowerRequest::Stop(StopOptions::default()))
            .await
            .unwrap();
        assert_eq!(accepted.request_id, "OK-REQUEST");
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{code}");
        assert_ne!(
            requests[0].header("x-acs-signature-nonce"),
            requests[1].header("x-acs-signature-nonce")
        );
    }
}

#[tokio::test]
async fn a_throttled_mutation_gives_up_after_the_attempt_budget() {
    let server = TestServer::fixed(Reply::json(400, error_body("Throttling", "x"))).await;
    let error = client(&server, quick_retries())
        .power(REGION, ID, PowerRequest::Start(StartOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Throttled);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn the_server_retry_after_is_honoured() {
    let server = TestServer::start(|_, n| {
        if n == 0 {
            Reply::json(400, error_body("Throttling.Api", "x"))
                .with_header("x-acs-retry-after", "300")
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let started = std::time::Instant::now();
    client(&server, quick_retries())
        .power(REGION, ID, PowerRequest::Stop(StopOptions::default()))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_mutation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let counting = Arc::new(CountingProvider::default());
    let config = EcsClientConfig {
        endpoint: EndpointConfig::fixed(&format!("http://127.0.0.1:{port}")).unwrap(),
        retry: quick_retries(),
        rate_limits: RateLimits::unlimited(),
        ..EcsClientConfig::default()
    };
    let error = EcsClient::new(config, counting.clone())
        .unwrap()
        .power(REGION, ID, PowerRequest::Reboot(RebootOptions::default()))
        .await
        .unwrap_err();
    assert!(matches!(error, EcsError::Connect { .. }), "{error:?}");
    assert_eq!(
        counting.0.load(Ordering::SeqCst),
        3,
        "every attempt was made"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn a_read_is_retried_through_transient_errors() {
    let server = TestServer::start(|_, n| match n {
        0 => Reply::json(500, error_body("InternalError", "x")),
        1 => Reply::json(503, "<html>busy</html>"),
        _ => Reply::json(
            200,
            r#"{"RequestId":"r","Instances":{"Instance":[{"InstanceId":"i-bp67acfmxazb4ph1234","Status":"Stopped"}]}}"#,
        ),
    })
    .await;
    let found = client(&server, quick_retries())
        .describe_instances(REGION, &[ID.to_string()])
        .await
        .unwrap();
    assert_eq!(found[0].status, InstanceStatus::Stopped);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_read_is_not_retried_on_a_permission_error() {
    let server = TestServer::fixed(Reply::json(403, error_body("Forbidden.RAM", "x"))).await;
    let _ = client(&server, quick_retries())
        .describe_instances(REGION, &[ID.to_string()])
        .await
        .unwrap_err();
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn errors_never_show_the_secret_or_the_token() {
    // A V1 request carries SecurityToken and Signature in its URL; transport errors must not.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = EcsClientConfig {
        endpoint: EndpointConfig::fixed(&format!("http://127.0.0.1:{port}")).unwrap(),
        signature_version: SignatureVersion::V1,
        retry: RetryPolicy::never(),
        rate_limits: RateLimits::unlimited(),
        ..EcsClientConfig::default()
    };
    let client = EcsClient::new(
        config,
        Arc::new(StaticProvider(Credentials::new(
            "STS.id",
            "top-secret-key",
            Some("sts-token-value".into()),
        ))),
    )
    .unwrap();
    let error = client
        .power(REGION, ID, PowerRequest::Stop(StopOptions::default()))
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?} {} {client:?}", error_line(&error));
    for secret in [
        "top-secret-key",
        "sts-token-value",
        "Signature",
        "SecurityToken",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[tokio::test]
async fn clones_share_one_rate_limit() {
    let server = TestServer::fixed(Reply::json(200, OK)).await;
    let config = EcsClientConfig {
        rate_limits: RateLimits {
            default_qps: 10.0,
            ..RateLimits::default()
        },
        ..config(&server, SignatureVersion::V3, RetryPolicy::never())
    };
    let client = EcsClient::new(config, Arc::new(StaticProvider(creds()))).unwrap();
    let started = std::time::Instant::now();
    let calls = (0..15).map(|_| {
        let client = client.clone();
        async move {
            client
                .power(REGION, ID, PowerRequest::Stop(StopOptions::default()))
                .await
        }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    // 10 tokens of burst, then 5 more at 10/s.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 15);
}

#[tokio::test]
async fn a_mutation_is_sent_again_when_the_credentials_source_was_down() {
    // The credentials URI answers 503 twice, then serves credentials: nothing reached ECS while
    // it was down, so even a reboot is retried on the transient schedule.
    let source = TestServer::start(|_, n| {
        if n < 2 {
            Reply::json(503, "down for maintenance")
        } else {
            Reply::json(
                200,
                serde_json::json!({"Code": "Success", "AccessKeyId": "STS.uri",
                    "AccessKeySecret": "uri-secret", "SecurityToken": "uri-token",
                    "Expiration": "2099-01-01T00:00:00Z"})
                .to_string(),
            )
        }
    })
    .await;
    let ecs = TestServer::fixed(Reply::json(200, OK)).await;
    let client = EcsClient::new(
        config(&ecs, SignatureVersion::V3, quick_retries()),
        Arc::new(crate::credentials::UriProvider::new(&source.url()).unwrap()),
    )
    .unwrap();
    client
        .power(REGION, ID, PowerRequest::Reboot(RebootOptions::default()))
        .await
        .unwrap();
    assert_eq!(source.requests().len(), 3);
    assert_eq!(ecs.requests().len(), 1, "one reboot sent, once");
}
