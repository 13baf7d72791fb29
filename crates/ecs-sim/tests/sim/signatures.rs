//! The simulator checks signatures as ECS does: V3 and V1 accepted with the configured keys,
//! everything else refused with ECS's codes.

use crate::support::{Client, KEY, SECRET, Tweak};
use ecs_client::types::InstanceStatus;
use ecs_sim::{Action, InstanceSpec, KeySpec, Outcome, Signature, SimConfig, Simulator};

async fn sim() -> (Simulator, Client) {
    let mut config = SimConfig::instant()
        .with_key(KEY, SECRET)
        .with_instance(InstanceSpec::new("i-a", "cn-hangzhou").status(InstanceStatus::Running));
    config.keys.push(KeySpec {
        id: "STS.key".into(),
        secret: "sts-secret".into(),
        security_token: Some("the-token".into()),
    });
    let sim = Simulator::start(config).await.unwrap();
    let client = Client::new(sim.addr());
    (sim, client)
}

const DESCRIBE: &[(&str, &str)] = &[("RegionId", "cn-hangzhou"), ("InstanceIds", "[\"i-a\"]")];

#[tokio::test]
async fn both_signature_versions_are_accepted_with_get_post_and_form_bodies() {
    let (sim, c) = sim().await;
    c.v3("DescribeInstances", DESCRIBE).await.assert_ok();
    c.v1("GET", "DescribeInstances", DESCRIBE)
        .await
        .0
        .assert_ok();
    c.v1("POST", "DescribeInstances", DESCRIBE)
        .await
        .0
        .assert_ok();
    // V3 with the parameters in a signed form body.
    let t = Tweak {
        body: Some("RegionId=cn-hangzhou&InstanceIds=%5B%22i-a%22%5D".into()),
        ..Tweak::default()
    };
    let reply = c.v3_with("DescribeInstances", &[], t).await;
    assert_eq!(reply.assert_ok()["TotalCount"], 1);
    let log = sim.calls().log();
    let kinds: Vec<_> = log.iter().map(|r| r.signature).collect();
    assert_eq!(
        kinds,
        [
            Some(Signature::V3),
            Some(Signature::V1),
            Some(Signature::V1),
            Some(Signature::V3)
        ]
    );
}

#[tokio::test]
async fn a_wrong_secret_is_signature_does_not_match_with_the_servers_string_to_sign() {
    let (_sim, c) = sim().await;
    let wrong = Tweak {
        secret: Some("wrong".into()),
        ..Tweak::default()
    };
    let (reply, string_to_sign) = c
        .v1_with("GET", "DescribeInstances", DESCRIBE, wrong.clone())
        .await;
    reply.assert_error(400, "SignatureDoesNotMatch");
    // The legacy SDK splits at the first ':' and compares with its own string to sign.
    let message = reply.body["Message"].as_str().unwrap();
    assert!(message.ends_with(&format!("server string to sign is:{string_to_sign}")));
    assert_eq!(message.split(':').nth(1), Some(string_to_sign.as_str()));

    c.v3_with("DescribeInstances", DESCRIBE, wrong)
        .await
        .assert_error(400, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn an_unknown_key_is_not_found() {
    let (_sim, c) = sim().await;
    let unknown = Tweak {
        key: Some("LTAI-nobody".into()),
        ..Tweak::default()
    };
    c.v3_with("DescribeInstances", DESCRIBE, unknown.clone())
        .await
        .assert_error(404, "InvalidAccessKeyId.NotFound");
    c.v1_with("POST", "DescribeInstances", DESCRIBE, unknown)
        .await
        .0
        .assert_error(404, "InvalidAccessKeyId.NotFound");
}

#[tokio::test]
async fn timestamps_older_than_fifteen_minutes_are_expired() {
    let (_sim, c) = sim().await;
    let stale = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(16))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let t = Tweak {
        date: Some(stale),
        ..Tweak::default()
    };
    c.v3_with("DescribeInstances", DESCRIBE, t.clone())
        .await
        .assert_error(400, "InvalidTimeStamp.Expired");
    c.v1_with("GET", "DescribeInstances", DESCRIBE, t)
        .await
        .0
        .assert_error(400, "InvalidTimeStamp.Expired");
    let recent = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(14))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let t = Tweak {
        date: Some(recent),
        ..Tweak::default()
    };
    c.v3_with("DescribeInstances", DESCRIBE, t)
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_and_the_call_does_not_happen_twice() {
    let (sim, c) = sim().await;
    let t = Tweak {
        nonce: Some("fixed-nonce".into()),
        ..Tweak::default()
    };
    c.v3_with("RebootInstance", &[("InstanceId", "i-a")], t.clone())
        .await
        .assert_ok();
    c.v3_with("RebootInstance", &[("InstanceId", "i-a")], t.clone())
        .await
        .assert_error(400, "SignatureNonceUsed");
    assert_eq!(
        sim.calls().count(
            Action::RebootInstance,
            "",
            Outcome::error("SignatureNonceUsed")
        ),
        1
    );
    assert_eq!(
        sim.calls()
            .count(Action::RebootInstance, "i-a", Outcome::Ok),
        1
    );
    // V1 shares the nonce memory.
    c.v1_with("GET", "DescribeInstances", DESCRIBE, t)
        .await
        .0
        .assert_error(400, "SignatureNonceUsed");
}

#[tokio::test]
async fn a_body_that_does_not_match_its_content_hash_fails_the_signature() {
    let (_sim, c) = sim().await;
    let t = Tweak {
        body: Some("RegionId=cn-hangzhou".into()),
        claimed_hash: Some(ecs_client::sign::EMPTY_BODY_SHA256.into()),
        ..Tweak::default()
    };
    c.v3_with("DescribeInstances", &[], t)
        .await
        .assert_error(400, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn requests_without_a_readable_signature_are_incomplete() {
    let (_sim, c) = sim().await;
    let http = reqwest::Client::new();
    let bare = http
        .get(format!(
            "{}/?Action=DescribeInstances&RegionId=cn-hangzhou",
            c.endpoint
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 400);
    let body: serde_json::Value = bare.json().await.unwrap();
    assert_eq!(body["Code"], "IncompleteSignature");
    let garbled = http
        .post(format!("{}/", c.endpoint))
        .header("authorization", "ACS3-HMAC-SHA256 Credential=test-ak")
        .header("x-acs-action", "DescribeInstances")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = garbled.json().await.unwrap();
    assert_eq!(body["Code"], "IncompleteSignature");
}

#[tokio::test]
async fn sts_credentials_need_their_own_token() {
    let (_sim, c) = sim().await;
    let sts = |token: Option<&str>| Tweak {
        key: Some("STS.key".into()),
        secret: Some("sts-secret".into()),
        token: token.map(str::to_string),
        ..Tweak::default()
    };
    c.v3_with("DescribeInstances", DESCRIBE, sts(Some("the-token")))
        .await
        .assert_ok();
    c.v1_with("GET", "DescribeInstances", DESCRIBE, sts(Some("the-token")))
        .await
        .0
        .assert_ok();
    c.v3_with("DescribeInstances", DESCRIBE, sts(Some("forged")))
        .await
        .assert_error(400, "InvalidSecurityToken.MismatchWithAccessKey");
    c.v3_with("DescribeInstances", DESCRIBE, sts(None))
        .await
        .assert_error(400, "MissingSecurityToken");
    // A long-term key sent with a token is refused too.
    let t = Tweak {
        token: Some("the-token".into()),
        ..Tweak::default()
    };
    c.v3_with("DescribeInstances", DESCRIBE, t)
        .await
        .assert_error(400, "InvalidSecurityToken.MismatchWithAccessKey");
}

#[tokio::test]
async fn secrets_never_appear_in_answers_or_the_request_log() {
    let (sim, c) = sim().await;
    let wrong = Tweak {
        secret: Some("wrong".into()),
        ..Tweak::default()
    };
    let mut texts = vec![
        c.v3_with("DescribeInstances", DESCRIBE, wrong.clone())
            .await
            .body
            .to_string(),
        c.v1_with("GET", "DescribeInstances", DESCRIBE, wrong)
            .await
            .0
            .body
            .to_string(),
        c.v3("DescribeInstances", DESCRIBE).await.body.to_string(),
    ];
    texts.push(serde_json::to_string(&sim.calls().log()).unwrap());
    texts.push(c.admin("GET", "/log", None).await.body.to_string());
    for text in texts {
        for secret in [SECRET, "sts-secret", "the-token"] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }
}
