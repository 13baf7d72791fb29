//! The ECS client against a simulator that misbehaves the way a broken gateway or a hostile
//! endpoint does: gigabyte and dripping bodies, redirects to another host, absurd or plain
//! `Retry-After` waits, instances throttled for good, and error messages that quote the
//! request back (the V1 string to sign holds the STS token). Also `ecs describe` through the
//! binary: what an operator sees never holds a credential.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ecs_client::credentials::StaticProvider;
use ecs_client::endpoint::EndpointConfig;
use ecs_client::ratelimit::RateLimits;
use ecs_client::retry::RetryPolicy;
use ecs_client::sign::{SignatureVersion, percent_encode};
use ecs_client::transport::MAX_RETRY_AFTER;
use ecs_client::types::{InstanceStatus, PowerRequest, StartOptions, StopOptions};
use ecs_client::{
    Credentials, EcsApi, EcsClient, EcsClientConfig, EcsError, ErrorClass, command::error_line,
};
use ecs_sim::{
    Action, FaultSpec, InstanceSpec, KeySpec, SimConfig, Simulator, WireAnswer, WireFault,
};

const REGION: &str = "cn-hangzhou";
const KEY_ID: &str = "STS.NUgYrLnoC37mZZCNnAbez2E";
const SECRET: &str = "sts-secret-Hn4qLw";
/// Real STS tokens are base64: `+`, `/` and `=` make the encoded forms differ from the raw one.
const TOKEN: &str = "CAIS/sts+token==Q7xv";
const INSTANCE: &str = "i-bp67acfmxazb4ph1234";

async fn sim(instances: &[&str]) -> Simulator {
    let mut config = SimConfig::instant();
    config.keys.push(KeySpec {
        id: KEY_ID.into(),
        secret: SECRET.into(),
        security_token: Some(TOKEN.into()),
    });
    for id in instances {
        config = config.with_instance(InstanceSpec::new(id, REGION));
    }
    Simulator::start(config).await.unwrap()
}

fn client_with(sim: &Simulator, config: EcsClientConfig, credentials: Credentials) -> EcsClient {
    let config = EcsClientConfig {
        endpoint: EndpointConfig::fixed(&sim.endpoint()).unwrap(),
        rate_limits: RateLimits::unlimited(),
        ..config
    };
    EcsClient::new(config, Arc::new(StaticProvider(credentials))).unwrap()
}

fn sts() -> Credentials {
    Credentials::new(KEY_ID, SECRET, Some(TOKEN.into()))
}

fn client(sim: &Simulator, retry: RetryPolicy) -> EcsClient {
    let config = EcsClientConfig {
        retry,
        ..EcsClientConfig::default()
    };
    client_with(sim, config, sts())
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_total: Duration::from_secs(5),
    }
}

/// Every form a credential can be quoted in: as is, and percent-encoded once and twice.
fn leaks(text: &str) -> Vec<String> {
    [SECRET, TOKEN]
        .iter()
        .flat_map(|secret| {
            let once = percent_encode(secret);
            let twice = percent_encode(&once);
            [secret.to_string(), once, twice]
        })
        .filter(|form| text.contains(form.as_str()))
        .collect()
}

// ---- bodies ------------------------------------------------------------------------------

#[tokio::test]
async fn a_gigantic_answer_is_refused_after_a_few_megabytes_instead_of_read_whole() {
    let sim = sim(&[INSTANCE]).await;
    // A well-formed answer of 256 MiB: read whole, it would parse as an empty fleet.
    sim.inject_wire(WireFault::new(
        Action::DescribeInstances,
        WireAnswer::HugeBody { bytes: 256 << 20 },
    ));
    let error = client(&sim, RetryPolicy::never())
        .describe_instances(REGION, &[INSTANCE.to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EcsError::Decode { detail, .. } if detail.contains("larger than")),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn a_dripping_answer_is_cut_off_by_the_request_timeout() {
    let sim = sim(&[INSTANCE]).await;
    // Every piece arrives well within the timeout; the whole never does.
    sim.inject_wire(WireFault::new(
        Action::DescribeInstances,
        WireAnswer::Drip {
            chunks: 600,
            interval_ms: 50,
        },
    ));
    let config = EcsClientConfig {
        request_timeout: Duration::from_secs(1),
        retry: RetryPolicy::never(),
        ..EcsClientConfig::default()
    };
    let error = client_with(&sim, config, sts())
        .describe_instances(REGION, &[INSTANCE.to_string()])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
}

// ---- redirects ---------------------------------------------------------------------------

#[tokio::test]
async fn a_redirect_to_another_host_is_never_followed_with_either_signature() {
    let sim = sim(&[INSTANCE]).await;
    let elsewhere = Simulator::start(SimConfig::instant()).await.unwrap();
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        sim.inject_wire(WireFault::new(
            Action::StopInstance,
            WireAnswer::Redirect {
                location: format!("{}/?collect=1", elsewhere.endpoint()),
            },
        ));
        let config = EcsClientConfig {
            signature_version: version,
            retry: quick_retries(),
            ..EcsClientConfig::default()
        };
        let error = client_with(&sim, config, sts())
            .power(REGION, INSTANCE, PowerRequest::Stop(StopOptions::default()))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("redirect"), "{error}");
        assert!(leaks(&format!("{error} {error:?}")).is_empty());
    }
    assert!(
        elsewhere.calls().log().is_empty(),
        "the signed request (and its security token) went to another host: {:?}",
        elsewhere.calls().log()
    );
}

// ---- waits the server asks for -----------------------------------------------------------

#[tokio::test]
async fn a_server_wait_until_2058_is_capped_at_ten_minutes() {
    let sim = sim(&[INSTANCE]).await;
    sim.inject(
        FaultSpec::new(Action::StopInstance, "Throttling.User")
            .header("x-acs-retry-after", "1000000000000"),
    )
    .unwrap();
    let error = client(&sim, RetryPolicy::never())
        .power(REGION, INSTANCE, PowerRequest::Stop(StopOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Throttled);
    assert_eq!(error.as_api().unwrap().retry_after, Some(MAX_RETRY_AFTER));
}

#[tokio::test]
async fn a_plain_retry_after_on_503_and_429_is_honoured() {
    let sim = sim(&[INSTANCE]).await;
    // A gateway asks for 30 s: more than this call's whole retry budget, so the client stops
    // at once and hands the wait on, instead of four tries in a second.
    sim.inject(
        FaultSpec::new(Action::DescribeInstances, "ServiceUnavailable")
            .header("Retry-After", "30")
            .times(4),
    )
    .unwrap();
    let error = client(&sim, quick_retries())
        .describe_instances(REGION, &[INSTANCE.to_string()])
        .await
        .unwrap_err();
    assert_eq!(error.code(), "ServiceUnavailable");
    assert_eq!(
        error.as_api().unwrap().retry_after,
        Some(Duration::from_secs(30))
    );
    assert_eq!(sim.calls().total(Action::DescribeInstances), 1);

    sim.clear_faults();
    sim.inject(
        FaultSpec::new(Action::StartInstance, "Throttling")
            .http_status(429)
            .header("Retry-After", "120"),
    )
    .unwrap();
    let error = client(&sim, RetryPolicy::never())
        .power(
            REGION,
            INSTANCE,
            PowerRequest::Start(StartOptions::default()),
        )
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Throttled);
    assert_eq!(
        error.as_api().unwrap().retry_after,
        Some(Duration::from_secs(120))
    );
}

// ---- throttling --------------------------------------------------------------------------

#[tokio::test]
async fn three_instances_throttled_for_good_do_not_hold_the_other_starts_of_the_region() {
    let stuck: [&'static str; 3] = ["i-stuck1", "i-stuck2", "i-stuck3"];
    let fine = ["i-fine1", "i-fine2", "i-fine3", "i-fine4"];
    let sim = sim(&[stuck.as_slice(), fine.as_slice()].concat()).await;
    // ECS throttles each of them for good, asking each time for four minutes' patience.
    for id in stuck {
        sim.inject(
            FaultSpec::new(Action::StartInstance, "Throttling.User")
                .instance(id)
                .header("x-acs-retry-after", "240000")
                .times(100_000),
        )
        .unwrap();
    }
    let config = EcsClientConfig {
        retry: quick_retries(),
        ..EcsClientConfig::default()
    };
    // One client, one quota: the controller's shape.
    let client = client_with(
        &sim,
        EcsClientConfig {
            rate_limits: RateLimits::default(),
            ..config
        },
        sts(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let hammering: Vec<_> = stuck
        .into_iter()
        .map(|id| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let _ = client
                        .power(REGION, id, PowerRequest::Start(StartOptions::default()))
                        .await;
                }
            })
        })
        .collect();
    // Let the stuck ones be throttled first.
    while sim.calls().total(Action::StartInstance) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A liveness bound, not a timing: before the fix these waited minutes.
    let starts = async {
        for id in fine {
            client
                .power(REGION, id, PowerRequest::Start(StartOptions::default()))
                .await
                .unwrap();
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(60), starts).await;
    stop.store(true, Ordering::SeqCst);
    for task in hammering {
        task.abort();
    }
    assert!(finished.is_ok(), "the region's other starts were starved");
    for id in fine {
        assert_eq!(sim.status(id), Some(InstanceStatus::Running), "{id}");
    }
}

// ---- credentials in error messages -------------------------------------------------------

#[tokio::test]
async fn signature_errors_never_carry_the_secret_or_token_with_v1_or_v3() {
    let sim = sim(&[INSTANCE]).await;
    for version in [SignatureVersion::V1, SignatureVersion::V3] {
        let config = EcsClientConfig {
            signature_version: version,
            retry: RetryPolicy::never(),
            ..EcsClientConfig::default()
        };
        // A wrong secret: ECS answers SignatureDoesNotMatch with its string to sign, which
        // for V1 holds the SecurityToken parameter.
        let wrong = Credentials::new(KEY_ID, "wrong-secret-Zq8", Some(TOKEN.into()));
        let error = client_with(&sim, config, wrong)
            .describe_instances(REGION, &[INSTANCE.to_string()])
            .await
            .unwrap_err();
        assert_eq!(error.code(), "SignatureDoesNotMatch", "{version:?}");
        assert_eq!(error.class(), ErrorClass::Credentials);
        let api = error.as_api().unwrap();
        assert!(
            api.message.contains("server string to sign is:"),
            "{version:?}: {}",
            api.message
        );
        if version == SignatureVersion::V1 {
            assert!(
                api.message.contains("SecurityToken%3D***"),
                "{}",
                api.message
            );
        }
        let shown = format!("{error} {error:?} {}", error_line(&error));
        assert!(leaks(&shown).is_empty(), "{version:?} leaked: {shown}");
        assert!(!shown.contains("wrong-secret-Zq8"), "{shown}");
    }
}

#[tokio::test]
async fn a_missing_security_token_is_a_credentials_problem() {
    let sim = sim(&[INSTANCE]).await;
    let without_token = Credentials::new(KEY_ID, SECRET, None);
    let config = EcsClientConfig {
        retry: RetryPolicy::never(),
        ..EcsClientConfig::default()
    };
    let error = client_with(&sim, config, without_token)
        .power(
            REGION,
            INSTANCE,
            PowerRequest::Start(StartOptions::default()),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "MissingSecurityToken");
    assert_eq!(error.class(), ErrorClass::Credentials);
}

#[tokio::test]
async fn ecs_describe_with_v1_never_prints_the_security_token() {
    let sim = sim(&[INSTANCE]).await;
    let endpoint = sim.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ecs-power-controller"))
            .args(["ecs", "describe", "--instance-id", INSTANCE])
            .args(["--region", REGION, "--ecs-endpoint", &endpoint])
            .args(["--signature-version", "v1"])
            .env_clear()
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong-secret-Zq8")
            .env("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN)
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("RUST_LOG", "debug")
            .output()
            .expect("the CLI runs")
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(shown.contains("SignatureDoesNotMatch"), "{shown}");
    assert!(
        leaks(&shown).is_empty(),
        "leaked: {:?}\n{shown}",
        leaks(&shown)
    );
    assert!(!shown.contains("wrong-secret-Zq8"), "{shown}");
}
