//! Every error of the seed pages happens when its condition holds, with ECS's status and body;
//! injected faults, random errors, quotas and latency behave as configured.

use std::time::{Duration, Instant};

use crate::support::{Client, KEY, SECRET};
use ecs_client::types::InstanceStatus;
use ecs_sim::{
    Action, ErrorRates, FaultSpec, Flags, InstanceSpec, Latency, Outcome, SimConfig, Simulator,
};

const REGION: &str = "cn-hangzhou";

async fn sim() -> (Simulator, Client) {
    let running = |id: &str| InstanceSpec::new(id, REGION).status(InstanceStatus::Running);
    let mut config = SimConfig::instant()
        .with_key(KEY, SECRET)
        .with_instance(running("i-run"))
        .with_instance(InstanceSpec::new("i-stop", REGION))
        .with_instance(running("i-locked").lock("security"));
    config.transitions.pending = Duration::from_secs(3600);
    config
        .instances
        .push(InstanceSpec::new("i-pending", REGION).status(InstanceStatus::Pending));
    let sim = Simulator::start(config).await.unwrap();
    let client = Client::new(sim.addr());
    (sim, client)
}

fn id(instance: &str) -> [(&'static str, &str); 1] {
    [("InstanceId", instance)]
}

#[tokio::test]
async fn seed_page_errors_when_their_condition_holds() {
    let (sim, c) = sim().await;
    c.v3("StartInstance", &[])
        .await
        .assert_error(400, "MissingParameter");
    c.v3("StartInstance", &id("i-run"))
        .await
        .assert_error(403, "IncorrectInstanceStatus");
    c.v3("StopInstance", &id("i-stop"))
        .await
        .assert_error(403, "IncorrectInstanceStatus");
    c.v3("RebootInstance", &id("i-stop"))
        .await
        .assert_error(403, "IncorrectInstanceStatus");
    c.v3("RebootInstance", &id("i-locked"))
        .await
        .assert_error(403, "InstanceLockedForSecurity");
    c.v3("StartInstance", &id("i-pending"))
        .await
        .assert_error(403, "InstanceNotReady");
    c.v3("StartInstance", &id("i-nope"))
        .await
        .assert_error(404, "InvalidInstanceId.NotFound");
    // Named with another region's RegionId, the instance does not exist there.
    c.v3(
        "StartInstance",
        &[("InstanceId", "i-stop"), ("RegionId", "cn-beijing")],
    )
    .await
    .assert_error(404, "InvalidInstanceId.NotFound");

    sim.set_flags(
        "i-stop",
        Flags {
            overdue: true,
            ..Flags::default()
        },
    )
    .unwrap();
    c.v3("StartInstance", &id("i-stop"))
        .await
        .assert_error(403, "InsufficientBalance");
    sim.set_flags(
        "i-stop",
        Flags {
            expired: true,
            ..Flags::default()
        },
    )
    .unwrap();
    c.v3("StartInstance", &id("i-stop"))
        .await
        .assert_error(403, "InstanceExpired");
    sim.set_flags(
        "i-run",
        Flags {
            overdue: true,
            ..Flags::default()
        },
    )
    .unwrap();
    c.v3("RebootInstance", &id("i-run"))
        .await
        .assert_error(403, "InstanceExpiredOrInArrears");
    sim.set_flags(
        "i-run",
        Flags {
            disk_fault: true,
            ..Flags::default()
        },
    )
    .unwrap();
    c.v3("RebootInstance", &id("i-run"))
        .await
        .assert_error(403, "DiskError");
    sim.set_flags("i-run", Flags::default()).unwrap();

    // DryRun: DryRunOperation once the checks pass, the check's error otherwise; no effect.
    c.v3(
        "RebootInstance",
        &[("InstanceId", "i-run"), ("DryRun", "true")],
    )
    .await
    .assert_error(400, "DryRunOperation");
    c.v3(
        "StartInstance",
        &[("InstanceId", "i-run"), ("DryRun", "True")],
    )
    .await
    .assert_error(403, "IncorrectInstanceStatus");
    assert_eq!(
        sim.calls()
            .count(Action::RebootInstance, "i-run", Outcome::Ok),
        0
    );
    assert_eq!(sim.status("i-run"), Some(InstanceStatus::Running));

    c.v3(
        "StopInstance",
        &[("InstanceId", "i-run"), ("StoppedMode", "Sometimes")],
    )
    .await
    .assert_error(400, "InvalidParameter");
    c.v3("DescribeInstances", &[])
        .await
        .assert_error(400, "MissingParameter");
    c.v3("DeleteInstance", &id("i-run"))
        .await
        .assert_error(404, "InvalidAction.NotFound");
}

#[tokio::test]
async fn error_bodies_carry_the_request_id_of_the_answer() {
    let (_sim, c) = sim().await;
    let reply = c
        .v3(
            "StartInstance",
            &[("InstanceId", "i-nope"), ("RegionId", REGION)],
        )
        .await;
    reply.assert_error(404, "InvalidInstanceId.NotFound");
    assert_eq!(reply.body["HostId"], "ecs.cn-hangzhou.aliyuncs.com");
    let request_id = reply.body["RequestId"].as_str().unwrap();
    assert_eq!(request_id.len(), 36);
    assert!(
        reply.body["Recommend"]
            .as_str()
            .unwrap()
            .contains(request_id)
    );
}

#[tokio::test]
async fn scripted_faults_answer_the_next_calls_and_can_take_effect_anyway() {
    let (sim, c) = sim().await;
    sim.inject(
        FaultSpec::new(Action::RebootInstance, "InternalError")
            .instance("i-run")
            .times(2),
    )
    .unwrap();
    sim.inject(FaultSpec::new(
        Action::StartInstance,
        "InvalidParameter.KMSKeyId.KMSUnauthorized",
    ))
    .unwrap();
    c.v3("RebootInstance", &id("i-run"))
        .await
        .assert_error(500, "InternalError");
    c.v3("RebootInstance", &id("i-run"))
        .await
        .assert_error(500, "InternalError");
    c.v3("RebootInstance", &id("i-run")).await.assert_ok();
    c.v3("StartInstance", &id("i-stop"))
        .await
        .assert_error(403, "InvalidParameter.KMSKeyId.KMSUnauthorized");
    assert_eq!(sim.status("i-stop"), Some(InstanceStatus::Stopped));

    // A lost answer: the stop happens, the client sees InternalError.
    sim.inject(
        FaultSpec::new(Action::StopInstance, "InternalError")
            .instance("i-run")
            .applied(),
    )
    .unwrap();
    c.v3("StopInstance", &id("i-run"))
        .await
        .assert_error(500, "InternalError");
    assert_eq!(sim.status("i-run"), Some(InstanceStatus::Stopped));
    assert_eq!(
        sim.calls().count(
            Action::RebootInstance,
            "i-run",
            Outcome::error("InternalError")
        ),
        2
    );
    assert_eq!(
        sim.calls()
            .count(Action::RebootInstance, "i-run", Outcome::Ok),
        1
    );
}

#[tokio::test]
async fn random_errors_quotas_and_latency() {
    let (sim, c) = sim().await;
    let describe = [("RegionId", REGION)];
    sim.set_error_rates(ErrorRates {
        internal_error: 0.0,
        service_unavailable: 1.0,
    })
    .unwrap();
    c.v3("DescribeInstances", &describe)
        .await
        .assert_error(503, "ServiceUnavailable");
    sim.set_error_rates(ErrorRates {
        internal_error: 1.0,
        service_unavailable: 0.0,
    })
    .unwrap();
    c.v3("DescribeInstances", &describe)
        .await
        .assert_error(500, "InternalError");
    sim.set_error_rates(ErrorRates::default()).unwrap();

    sim.set_quota(Action::DescribeInstances, Some(2));
    let mut throttled = 0;
    for _ in 0..5 {
        let reply = c.v3("DescribeInstances", &describe).await;
        if reply.status != 200 {
            reply.assert_error(400, "Throttling.User");
            throttled += 1;
        }
    }
    // Five calls in (at most) two one-second windows of 2: at least one is throttled.
    assert!(throttled >= 1, "none throttled");
    sim.set_quota(Action::DescribeInstances, None);

    sim.set_latency(Latency {
        fixed_ms: 150,
        jitter_ms: 0,
    });
    let started = Instant::now();
    c.v3("DescribeInstances", &describe).await.assert_ok();
    assert!(started.elapsed() >= Duration::from_millis(150));
}
