//! The credential sources against loopback STS and metadata servers and scratch home
//! directories: what they send, what they cache, what their errors say (never a secret).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::testing::{Reply, TestServer};

const SECRET: &str = "tmp-secret-Zx9";
const TOKEN: &str = "CAIS-sts-token-Q7";
const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.pod-token-one";

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ecs-pc-creds-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn expiration_in(seconds: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn sts_answer(expires_in: i64) -> String {
    serde_json::json!({
        "RequestId": "STS-1",
        "AssumedRoleUser": {"Arn": "acs:ram::1:role/ctl/s", "AssumedRoleId": "1:s"},
        "Credentials": {
            "AccessKeyId": "STS.NUgYrLnoC37mZZCNnAbez2E",
            "AccessKeySecret": SECRET,
            "SecurityToken": TOKEN,
            "Expiration": expiration_in(expires_in),
        }
    })
    .to_string()
}

fn oidc_settings(sts: &TestServer, token_file: &std::path::Path) -> ChainSettings {
    ChainSettings::from_vars(
        [
            (
                "ALIBABA_CLOUD_ROLE_ARN",
                "acs:ram::1234:role/ecs-power-controller".to_string(),
            ),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1234:oidc-provider/ack-rrsa-c1".to_string(),
            ),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            (
                "ALIBABA_CLOUD_ROLE_SESSION_NAME",
                "controller-test".to_string(),
            ),
            ("ALIBABA_CLOUD_STS_ENDPOINT", sts.url()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_string()),
        ],
        scratch("home"),
    )
}

fn assert_no_secret(text: &str) {
    for secret in [SECRET, TOKEN, OIDC_TOKEN, "pod-token-two"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

// ---- RRSA / OIDC ------------------------------------------------------------------------

#[tokio::test]
async fn rrsa_assumes_the_role_anonymously_with_the_sdk_parameters_and_caches() {
    let sts = TestServer::fixed(Reply::json(200, sts_answer(3600))).await;
    let dir = scratch("oidc");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{OIDC_TOKEN}\n")).unwrap();
    let chain = DefaultCredentialsChain::new(&oidc_settings(&sts, &token_file));

    let creds = chain.credentials().await.unwrap();
    assert_eq!(creds.access_key_id, "STS.NUgYrLnoC37mZZCNnAbez2E");
    assert_eq!(creds.access_key_secret.expose(), SECRET);
    assert_eq!(creds.security_token.as_ref().unwrap().expose(), TOKEN);
    assert_no_secret(&format!("{creds:?} {chain:?}"));

    // An hour of validity: the second call is served from the cache.
    chain.credentials().await.unwrap();
    let [request] = sts.requests().try_into().unwrap();
    assert_eq!(request.method, "POST");
    let form: std::collections::BTreeMap<String, String> = request.form().into_iter().collect();
    assert_eq!(form["Action"], "AssumeRoleWithOIDC");
    assert_eq!(form["Version"], "2015-04-01");
    assert_eq!(form["Format"], "JSON");
    assert_eq!(form["RoleArn"], "acs:ram::1234:role/ecs-power-controller");
    assert_eq!(
        form["OIDCProviderArn"],
        "acs:ram::1234:oidc-provider/ack-rrsa-c1"
    );
    assert_eq!(form["OIDCToken"], OIDC_TOKEN);
    assert_eq!(form["RoleSessionName"], "controller-test");
    assert_eq!(form["DurationSeconds"], "3600");
    assert!(form["Timestamp"].ends_with('Z'));
    // Anonymous: no signature, no AccessKey, and the token is not in the URL.
    for absent in ["Signature", "AccessKeyId", "SignatureMethod"] {
        assert!(!form.contains_key(absent), "{absent}");
    }
    assert!(request.query.is_empty());
    assert!(request.header("authorization").is_none());
}

#[tokio::test]
async fn rrsa_refreshes_before_expiry_and_rereads_the_rotated_token() {
    // Credentials that expire now are stale at once: every call goes back to STS.
    let sts = TestServer::fixed(Reply::json(200, sts_answer(0))).await;
    let dir = scratch("rotate");
    let token_file = dir.join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let chain = DefaultCredentialsChain::new(&oidc_settings(&sts, &token_file));
    chain.credentials().await.unwrap();
    std::fs::write(&token_file, "eyJ.pod-token-two").unwrap();
    chain.credentials().await.unwrap();
    let tokens: Vec<String> = sts
        .requests()
        .iter()
        .map(|r| {
            r.form()
                .into_iter()
                .find(|(k, _)| k == "OIDCToken")
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(tokens, [OIDC_TOKEN, "eyJ.pod-token-two"]);
}

#[tokio::test]
async fn sts_refusals_quote_the_code_but_never_the_token_or_a_secret() {
    let dir = scratch("refused");
    let token_file = dir.join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let answers = [
        Reply::json(
            400,
            format!(
                r#"{{"RequestId":"R-9","Code":"AuthenticationFail.OIDCToken.Expired","Message":"The token {OIDC_TOKEN} has expired."}}"#
            ),
        ),
        // A 200 missing a field, whose body carries a secret.
        Reply::json(
            200,
            format!(
                r#"{{"Credentials":{{"AccessKeyId":"STS.x","AccessKeySecret":"{SECRET}","Expiration":"2030-01-01T00:00:00Z"}}}}"#
            ),
        ),
        Reply::json(200, format!("not json {SECRET}")),
        Reply::json(502, format!("<html>{SECRET}</html>")),
    ];
    let mut messages = Vec::new();
    for answer in answers {
        let sts = TestServer::fixed(answer).await;
        let error = DefaultCredentialsChain::new(&oidc_settings(&sts, &token_file))
            .credentials()
            .await
            .unwrap_err();
        let shown = format!("{error} {error:?} {}", crate::EcsError::from(error.clone()));
        assert_no_secret(&shown);
        messages.push(error.to_string());
    }
    assert!(
        messages[0].contains("AuthenticationFail.OIDCToken.Expired"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("RequestId R-9"), "{}", messages[0]);
    assert!(messages[1].contains("no SecurityToken"), "{}", messages[1]);
    assert!(
        messages[2].contains("not the expected JSON"),
        "{}",
        messages[2]
    );
    assert!(messages[3].contains("HTTP 502"), "{}", messages[3]);
}

#[tokio::test]
async fn a_missing_token_file_is_named_in_the_error() {
    let sts = TestServer::fixed(Reply::json(200, sts_answer(3600))).await;
    let missing = scratch("nofile").join("token");
    let error = DefaultCredentialsChain::new(&oidc_settings(&sts, &missing))
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(sts.requests().is_empty());
}

// ---- ECS RAM role (metadata service) ----------------------------------------------------

fn metadata_server(token_status: u16) -> impl Fn(&crate::testing::Recorded, usize) -> Reply {
    move |request, _| match (request.method.as_str(), request.path.as_str()) {
        ("PUT", "/latest/api/token") => Reply::json(token_status, "md-session-token"),
        ("GET", "/latest/meta-data/ram/security-credentials/") => {
            Reply::json(200, "EcsPowerControllerRole")
        }
        ("GET", "/latest/meta-data/ram/security-credentials/EcsPowerControllerRole") => {
            Reply::json(
                200,
                serde_json::json!({
                    "AccessKeyId": "STS.fromMetadata", "AccessKeySecret": SECRET,
                    "SecurityToken": TOKEN, "Expiration": expiration_in(6 * 3600),
                    "LastUpdated": "2026-11-22T08:00:00Z", "Code": "Success"
                })
                .to_string(),
            )
        }
        _ => Reply::json(404, "not found"),
    }
}

#[tokio::test]
async fn the_ram_role_comes_from_the_metadata_service_in_hardened_mode() {
    let metadata = TestServer::start(metadata_server(200)).await;
    let provider = EcsRamRoleProvider::new(&metadata.url(), None, true).unwrap();
    let creds = provider.credentials().await.unwrap();
    assert_eq!(creds.access_key_id, "STS.fromMetadata");
    assert_eq!(creds.security_token.unwrap().expose(), TOKEN);
    provider.credentials().await.unwrap();

    let requests = metadata.requests();
    assert_eq!(
        requests.len(),
        3,
        "token, role name, credentials; then cached"
    );
    assert_eq!(requests[0].method, "PUT");
    assert_eq!(
        requests[0].header("x-aliyun-ecs-metadata-token-ttl-seconds"),
        Some("21600")
    );
    for request in &requests[1..] {
        assert_eq!(
            request.header("x-aliyun-ecs-metadata-token"),
            Some("md-session-token")
        );
    }
}

#[tokio::test]
async fn without_a_metadata_token_plain_mode_is_used_only_when_allowed() {
    let metadata = TestServer::start(metadata_server(403)).await;
    let plain = EcsRamRoleProvider::new(
        &metadata.url(),
        Some("EcsPowerControllerRole".into()),
        false,
    )
    .unwrap();
    assert_eq!(
        plain.credentials().await.unwrap().access_key_id,
        "STS.fromMetadata"
    );
    assert!(
        metadata.requests()[1]
            .header("x-aliyun-ecs-metadata-token")
            .is_none()
    );

    let hardened_only =
        EcsRamRoleProvider::new(&metadata.url(), Some("EcsPowerControllerRole".into()), true)
            .unwrap();
    let error = hardened_only.credentials().await.unwrap_err().to_string();
    assert!(error.contains("ALIBABA_CLOUD_IMDSV1_DISABLED"), "{error}");
}

#[tokio::test]
async fn metadata_failures_say_what_to_check_and_never_leak() {
    let metadata = TestServer::start(|request, _| {
        if request.method == "PUT" {
            Reply::json(200, "t")
        } else {
            Reply::json(
                200,
                format!(r#"{{"Code":"Failed","AccessKeySecret":"{SECRET}"}}"#),
            )
        }
    })
    .await;
    let error = EcsRamRoleProvider::new(&metadata.url(), Some("r".into()), false)
        .unwrap()
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("Code is \"Failed\""), "{error}");
    assert_no_secret(&error);

    let unreachable = TestServer::fixed(Reply::json(404, "")).await;
    let error = EcsRamRoleProvider::new(&unreachable.url(), None, false)
        .unwrap()
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("RAM role attached"), "{error}");
}

// ---- files, URI and the chain ------------------------------------------------------------

#[tokio::test]
async fn the_cli_config_current_profile_is_used() {
    let home = scratch("cli");
    std::fs::create_dir_all(home.join(".aliyun")).unwrap();
    std::fs::write(
        home.join(".aliyun/config.json"),
        format!(
            r#"{{"current":"prod","profiles":[
                {{"name":"default","mode":"AK","access_key_id":"LTAIdefault","access_key_secret":"x"}},
                {{"name":"prod","mode":"StsToken","access_key_id":"STS.prod","access_key_secret":"{SECRET}","sts_token":"{TOKEN}"}},
                {{"name":"sso","mode":"CloudSSO"}}]}}"#
        ),
    )
    .unwrap();
    let settings =
        ChainSettings::from_vars([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")], &home);
    let creds = DefaultCredentialsChain::new(&settings)
        .credentials()
        .await
        .unwrap();
    assert_eq!(creds.access_key_id, "STS.prod");
    assert_eq!(creds.security_token.unwrap().expose(), TOKEN);

    let sso = ChainSettings::from_vars(
        [
            ("ALIBABA_CLOUD_PROFILE", "sso"),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ],
        &home,
    );
    let error = DefaultCredentialsChain::new(&sso)
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("mode \"CloudSSO\""), "{error}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn the_credentials_ini_file_is_read_from_the_variable_or_home() {
    let home = scratch("ini");
    std::fs::create_dir_all(home.join(".alibabacloud")).unwrap();
    std::fs::write(
        home.join(".alibabacloud/credentials.ini"),
        format!(
            "[default]\ntype = access_key\naccess_key_id = LTAIini\naccess_key_secret = {SECRET}\n"
        ),
    )
    .unwrap();
    let settings =
        ChainSettings::from_vars([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")], &home);
    let creds = DefaultCredentialsChain::new(&settings)
        .credentials()
        .await
        .unwrap();
    assert_eq!(creds.access_key_id, "LTAIini");

    let other = scratch("ini-var").join("creds");
    std::fs::write(
        &other,
        "[team]\ntype = access_key\naccess_key_id = LTAIteam\n",
    )
    .unwrap();
    let settings = ChainSettings::from_vars(
        [
            (
                "ALIBABA_CLOUD_CREDENTIALS_FILE",
                other.display().to_string(),
            ),
            ("ALIBABA_CLOUD_PROFILE", "team".into()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
        ],
        scratch("empty-home"),
    );
    let error = DefaultCredentialsChain::new(&settings)
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("section [team]") && error.contains("has no access_key_secret"),
        "{error}"
    );
}

#[tokio::test]
async fn the_credentials_uri_serves_temporary_credentials() {
    let uri = TestServer::fixed(Reply::json(
        200,
        serde_json::json!({"Code": "Success", "AccessKeyId": "STS.uri", "AccessKeySecret": SECRET,
            "SecurityToken": TOKEN, "Expiration": expiration_in(3600)})
        .to_string(),
    ))
    .await;
    let settings = ChainSettings::from_vars(
        [
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_string()),
            (
                "ALIBABA_CLOUD_CREDENTIALS_URI",
                format!("{}/creds?x=1", uri.url()),
            ),
        ],
        scratch("uri-home"),
    );
    let chain = DefaultCredentialsChain::new(&settings);
    assert_eq!(
        chain.provider_names(),
        ["env", "cli_profile", "profile", "credentials_uri"]
    );
    assert_eq!(chain.credentials().await.unwrap().access_key_id, "STS.uri");
    assert_eq!(uri.requests()[0].path, "/creds");
}

#[tokio::test]
async fn the_chain_follows_the_sdk_order_and_environment_wins() {
    let sts = TestServer::fixed(Reply::json(200, sts_answer(3600))).await;
    let token_file = scratch("order").join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let mut vars: Vec<(String, String)> = vec![
        ("ALIBABA_CLOUD_ROLE_ARN".into(), "acs:ram::1:role/r".into()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN".into(),
            "acs:ram::1:oidc-provider/p".into(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
        ("ALIBABA_CLOUD_STS_ENDPOINT".into(), sts.url()),
        (
            "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT".into(),
            "http://127.0.0.1:9".into(),
        ),
    ];
    let rrsa = DefaultCredentialsChain::new(&ChainSettings::from_vars(vars.clone(), scratch("h1")));
    assert_eq!(
        rrsa.provider_names(),
        [
            "env",
            "oidc_role_arn",
            "cli_profile",
            "profile",
            "ecs_ram_role"
        ]
    );
    assert_eq!(
        rrsa.credentials().await.unwrap().access_key_id,
        "STS.NUgYrLnoC37mZZCNnAbez2E"
    );

    vars.push(("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), "LTAIenv".into()));
    vars.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), SECRET.into()));
    let env = DefaultCredentialsChain::new(&ChainSettings::from_vars(vars, scratch("h2")));
    assert_eq!(env.credentials().await.unwrap().access_key_id, "LTAIenv");
    assert_eq!(sts.requests().len(), 1, "only the RRSA chain asked STS");
    assert_no_secret(&format!("{env:?}"));
}

#[tokio::test]
async fn an_empty_chain_lists_every_source_it_tried() {
    let settings = ChainSettings::from_vars(
        [("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT", "http://127.0.0.1:9")],
        scratch("nothing"),
    );
    let error = DefaultCredentialsChain::new(&settings)
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID is not set",
        "config.json does not exist",
        "credentials.ini",
        "ecs_ram_role",
    ] {
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

// ---- outages and hostile sources -----------------------------------------------------------

/// A loopback URL nothing listens on.
fn nobody_listening() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// Each kind of credentials source, pointed at `url`.
fn sources_at(url: &str, token_file: &std::path::Path) -> Vec<Box<dyn CredentialsProvider>> {
    let settings = ChainSettings::from_vars(
        [("ALIBABA_CLOUD_STS_ENDPOINT", url.to_string())],
        scratch("outage-home"),
    );
    let oidc = settings
        .oidc_config(
            "acs:ram::1234:role/ecs-power-controller".into(),
            "acs:ram::1234:oidc-provider/ack-rrsa-c1".into(),
            token_file.display().to_string(),
            None,
            None,
        )
        .unwrap();
    vec![
        Box::new(OidcRoleProvider::new(oidc).unwrap()),
        Box::new(
            EcsRamRoleProvider::new(url, Some("EcsPowerControllerRole".into()), true).unwrap(),
        ),
        Box::new(
            EcsRamRoleProvider::new(url, Some("EcsPowerControllerRole".into()), false).unwrap(),
        ),
        Box::new(UriProvider::new(&format!("{url}/creds")).unwrap()),
    ]
}

#[tokio::test]
async fn an_outage_of_sts_metadata_or_the_uri_is_transient_and_only_a_refusal_is_a_credentials_error()
 {
    let token_file = scratch("outage").join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let crashed = nobody_listening();
    let unavailable = TestServer::fixed(Reply::json(503, "upstream down")).await;
    let throttled = TestServer::fixed(Reply::json(429, "slow down")).await;
    for url in [crashed, unavailable.url(), throttled.url()] {
        for source in sources_at(&url, &token_file) {
            let error = crate::EcsError::from(source.credentials().await.unwrap_err());
            assert_eq!(
                error.class(),
                crate::ErrorClass::Transient,
                "{} at {url}: {error}",
                source.name()
            );
            assert_eq!(error.code(), "CredentialSourceUnavailable");
            // Nothing reached ECS: even a reboot may be sent again once the source is back.
            assert!(crate::retry::proves_not_executed(&error), "{error}");
            assert_no_secret(&error.to_string());
        }
    }
    // A source that answers and refuses is a credentials problem an operator must fix.
    let refusing = TestServer::fixed(Reply::json(
        403,
        r#"{"RequestId":"R-1","Code":"NoPermission","Message":"not allowed"}"#,
    ))
    .await;
    for source in sources_at(&refusing.url(), &token_file) {
        let error = crate::EcsError::from(source.credentials().await.unwrap_err());
        assert_eq!(
            error.class(),
            crate::ErrorClass::Credentials,
            "{}: {error}",
            source.name()
        );
    }
}

#[tokio::test]
async fn a_chain_whose_configured_source_is_down_reports_an_outage_not_missing_credentials() {
    let dir = scratch("chain-outage");
    let token_file = dir.join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let sts = TestServer::fixed(Reply::json(503, "")).await;
    let error = DefaultCredentialsChain::new(&oidc_settings(&sts, &token_file))
        .credentials()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CredentialsError::Unavailable {
                provider: "oidc_role_arn",
                ..
            }
        ),
        "{error:?}"
    );
    // Nothing set up at all (and no role named for the metadata service): missing credentials.
    let settings = ChainSettings::from_vars(
        [("ALIBABA_CLOUD_ECS_METADATA_ENDPOINT", nobody_listening())],
        scratch("chain-empty"),
    );
    let error = DefaultCredentialsChain::new(&settings)
        .credentials()
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::ChainExhausted(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_credentials_source_that_redirects_is_never_followed() {
    let token_file = scratch("redirect").join("token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let elsewhere = TestServer::fixed(Reply::json(200, sts_answer(3600))).await;
    let location = format!("{}/stolen", elsewhere.url());
    let redirecting =
        TestServer::fixed(Reply::json(307, "").with_header("location", &location)).await;
    for source in sources_at(&redirecting.url(), &token_file) {
        let error = source.credentials().await.unwrap_err();
        assert!(
            error.to_string().contains("redirect"),
            "{}: {error}",
            source.name()
        );
        assert_eq!(
            crate::EcsError::from(error).class(),
            crate::ErrorClass::Credentials
        );
    }
    assert!(!redirecting.requests().is_empty());
    assert!(
        elsewhere.requests().is_empty(),
        "a redirect carried a credentials request elsewhere: {:?}",
        elsewhere.requests()
    );
}

#[tokio::test]
async fn a_huge_credentials_answer_is_refused_without_reading_it() {
    let huge = format!(
        r#"{{"Code":"Success","Padding":"{}"}}"#,
        "x".repeat(crate::transport::MAX_BODY_BYTES)
    );
    let server = TestServer::fixed(Reply::json(200, huge)).await;
    let error = UriProvider::new(&server.url())
        .unwrap()
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("larger than"), "{error}");
}

#[tokio::test]
async fn with_no_credentials_anywhere_the_error_says_what_each_of_the_six_sources_said() {
    let settings = ChainSettings::from_vars(
        [(
            "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT",
            "http://127.0.0.1:9".to_string(),
        )],
        scratch("nothing-anywhere"),
    );
    let err = DefaultCredentialsChain::new(&settings)
        .credentials()
        .await
        .unwrap_err()
        .to_string();
    let said: Vec<&str> = err
        .trim_start_matches("no credentials found; tried ")
        .split("; ")
        .map(|part| part.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        said,
        [
            "env",
            "oidc_role_arn",
            "cli_profile",
            "profile",
            "ecs_ram_role",
            "credentials_uri"
        ],
        "{err}"
    );
    assert!(
        err.contains("ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE not set"),
        "{err}"
    );
    assert!(
        err.contains("ALIBABA_CLOUD_CREDENTIALS_URI is not set"),
        "{err}"
    );
}
