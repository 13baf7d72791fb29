//! The admin API under /_sim: everything a test or an operator steers from outside.

use crate::support::{Client, KEY, SECRET};
use ecs_sim::{SimConfig, Simulator};
use serde_json::json;

async fn sim() -> (Simulator, Client) {
    let sim = Simulator::start(SimConfig::instant().with_key(KEY, SECRET))
        .await
        .unwrap();
    let client = Client::new(sim.addr());
    (sim, client)
}

#[tokio::test]
async fn instances_can_be_added_changed_and_inspected() {
    let (_sim, c) = sim().await;
    let added = c
        .admin(
            "POST",
            "/instances",
            Some(
                json!([{ "id": "i-a", "region": "cn-hangzhou", "status": "Running" },
                        { "id": "i-b", "region": "cn-hangzhou" }]),
            ),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        c.admin(
            "PUT",
            "/instances/i-a/locks",
            Some(json!({"locks": ["security"]}))
        )
        .await
        .status,
        204
    );
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_error(403, "InstanceLockedForSecurity");
    assert_eq!(
        c.admin("DELETE", "/instances/i-a/locks", None).await.status,
        204
    );
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_ok();

    assert_eq!(
        c.admin(
            "PUT",
            "/instances/i-b/flags",
            Some(json!({"overdue": true}))
        )
        .await
        .status,
        204
    );
    c.v3("StartInstance", &[("InstanceId", "i-b")])
        .await
        .assert_error(403, "InsufficientBalance");
    assert_eq!(
        c.admin(
            "PUT",
            "/instances/i-b/status",
            Some(json!({"status": "Running"}))
        )
        .await
        .status,
        204
    );
    let view = c.admin("GET", "/instances/i-b", None).await;
    assert_eq!(view.body["status"], "Running");
    assert_eq!(view.body["flags"]["overdue"], true);
    assert_eq!(
        c.admin("GET", "/instances", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c.admin("GET", "/instances/i-zzz", None).await.status, 404);
}

/// Tags come from the instances file (or an added instance) and `PUT …/tags`, and
/// DescribeInstances returns them in ECS's `Tags.Tag[]{TagKey, TagValue}` shape.
#[tokio::test]
async fn tags_are_set_and_described_in_the_ecs_shape() {
    let (_sim, c) = sim().await;
    let added = c
        .admin(
            "POST",
            "/instances",
            Some(json!({ "id": "i-t", "region": "cn-hangzhou", "tags": {"team": "a"} })),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let tags = async || {
        let reply = c
            .v3(
                "DescribeInstances",
                &[("RegionId", "cn-hangzhou"), ("InstanceIds", r#"["i-t"]"#)],
            )
            .await;
        reply.assert_ok();
        reply.body["Instances"]["Instance"][0]["Tags"]["Tag"].clone()
    };
    assert_eq!(tags().await, json!([{"TagKey": "team", "TagValue": "a"}]));
    let put = c
        .admin(
            "PUT",
            "/instances/i-t/tags",
            Some(json!({"tags": {"ecs.powerctl.io/namespaces": "team-a, team-b", "env": "prod"}})),
        )
        .await;
    assert_eq!(put.status, 204, "{}", put.body);
    assert_eq!(
        tags().await,
        json!([
            {"TagKey": "ecs.powerctl.io/namespaces", "TagValue": "team-a, team-b"},
            {"TagKey": "env", "TagValue": "prod"},
        ])
    );
    assert_eq!(
        c.admin("GET", "/instances/i-t", None).await.body["tags"]["env"],
        "prod"
    );
    let bad = c
        .admin("PUT", "/instances/i-t/tags", Some(json!({"tag": {}})))
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["error"].as_str().unwrap().contains("tag"),
        "{}",
        bad.body
    );
    assert_eq!(
        c.admin("PUT", "/instances/i-zzz/tags", Some(json!({"tags": {}})))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bad_admin_bodies_name_the_problem() {
    let (_sim, c) = sim().await;
    let reply = c
        .admin(
            "POST",
            "/instances",
            Some(json!({ "id": "i-a", "region": "r", "colour": "red" })),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["error"].as_str().unwrap().contains("colour"),
        "{}",
        reply.body
    );
    let reply = c
        .admin(
            "POST",
            "/faults",
            Some(json!({ "action": "Explode", "code": "X" })),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["error"].as_str().unwrap().contains("Explode"),
        "{}",
        reply.body
    );
    let reply = c
        .admin("PUT", "/error-rates", Some(json!({ "internal_error": 3 })))
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap()
            .contains("internal_error"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn faults_counters_log_clock_and_reset() {
    let (sim, c) = sim().await;
    c.admin(
        "POST",
        "/instances",
        Some(json!({ "id": "i-a", "region": "cn-hangzhou", "status": "Running" })),
    )
    .await;
    c.admin(
        "PUT",
        "/transitions",
        Some(json!({ "pending": 0, "starting": 60, "stopping": 60, "force_stopping": 0 })),
    )
    .await;
    let fault = json!({ "action": "RebootInstance", "instance": "i-a", "code": "Throttling.User", "count": 1 });
    assert_eq!(c.admin("POST", "/faults", Some(fault)).await.status, 201);
    assert_eq!(
        c.admin("GET", "/faults", None).await.body["scripted"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_error(400, "Throttling.User");
    // A fault of the HTTP answer itself: a padded (here: not at all) answer, once.
    let wire = json!({ "action": "DescribeInstances", "answer": { "huge_body": { "bytes": 0 } } });
    assert_eq!(
        c.admin("POST", "/wire-faults", Some(wire)).await.status,
        201
    );
    assert_eq!(
        c.admin("GET", "/faults", None).await.body["wire"][0]["count"],
        1
    );
    let padded = c
        .v3("DescribeInstances", &[("RegionId", "cn-hangzhou")])
        .await;
    assert_eq!(padded.assert_ok()["Padding"], "");
    assert_eq!(
        c.admin("GET", "/faults", None).await.body["wire"],
        json!([])
    );
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_ok();
    assert_eq!(
        sim.status("i-a").map(|s| s.to_string()).as_deref(),
        Some("Stopping")
    );
    c.admin("POST", "/clock/advance", Some(json!({ "seconds": 120 })))
        .await;
    assert_eq!(
        sim.status("i-a").map(|s| s.to_string()).as_deref(),
        Some("Running")
    );

    let ok = c
        .admin(
            "GET",
            "/calls?action=RebootInstance&instance=i-a&outcome=Ok",
            None,
        )
        .await;
    assert_eq!(ok.body["total"], 1);
    let all = c.admin("GET", "/calls?action=RebootInstance", None).await;
    assert_eq!(all.body["total"], 2);
    let log = c.admin("GET", "/log?limit=1", None).await;
    assert_eq!(log.body.as_array().unwrap().len(), 1);
    assert_eq!(log.body[0]["action"], "RebootInstance");
    assert_eq!(log.body[0]["outcome"], "Ok");
    assert_eq!(log.body[0]["signature"], "V3");

    assert_eq!(c.admin("POST", "/reset", None).await.status, 204);
    assert_eq!(
        sim.instance_count(),
        0,
        "instances added at run time are gone"
    );
    assert_eq!(c.admin("GET", "/calls", None).await.body["total"], 0);
}
