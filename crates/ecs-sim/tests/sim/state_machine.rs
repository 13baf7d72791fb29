//! The instance state machine as seen over the wire: transitions take their configured time,
//! StartTime and StoppedMode move as ECS reports them, listings page correctly.

use std::time::Duration;

use crate::support::{Client, KEY, SECRET};
use ecs_client::types::InstanceStatus;
use ecs_sim::{Action, InstanceSpec, Outcome, SimConfig, Simulator, TransitionTimes};

const REGION: &str = "cn-hangzhou";

async fn sim(times: TransitionTimes, instances: Vec<InstanceSpec>) -> (Simulator, Client) {
    let mut config = SimConfig::instant()
        .with_key(KEY, SECRET)
        .with_transitions(times);
    config.instances = instances;
    let sim = Simulator::start(config).await.unwrap();
    let client = Client::new(sim.addr());
    (sim, client)
}

async fn describe(c: &Client, id: &str) -> serde_json::Value {
    let ids = format!("[\"{id}\"]");
    let reply = c
        .v3(
            "DescribeInstances",
            &[("RegionId", REGION), ("InstanceIds", &ids)],
        )
        .await;
    reply.assert_ok()["Instances"]["Instance"][0].clone()
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[tokio::test]
async fn start_goes_through_starting_and_sets_start_time() {
    let (sim, c) = sim(
        TransitionTimes::uniform(minutes(2)),
        vec![InstanceSpec::new("i-a", REGION)],
    )
    .await;
    assert_eq!(describe(&c, "i-a").await["StartTime"], "");
    c.v3("StartInstance", &[("InstanceId", "i-a")])
        .await
        .assert_ok();
    let during = describe(&c, "i-a").await;
    assert_eq!(during["Status"], "Starting");
    assert_eq!(during["StoppedMode"], "Not-applicable");
    let start_time = during["StartTime"].as_str().unwrap().to_string();
    assert_eq!(start_time.len(), "2026-01-01T10:00Z".len(), "{start_time}");
    sim.advance(minutes(2));
    assert_eq!(describe(&c, "i-a").await["Status"], "Running");
    assert_eq!(sim.status("i-a"), Some(InstanceStatus::Running));
}

#[tokio::test]
async fn stop_records_the_stopped_mode_and_force_stop_is_quicker() {
    let times = TransitionTimes {
        stopping: minutes(5),
        force_stopping: minutes(1),
        ..TransitionTimes::ZERO
    };
    let running = |id: &str| InstanceSpec::new(id, REGION).status(InstanceStatus::Running);
    let (sim, c) = sim(times, vec![running("i-soft"), running("i-hard")]).await;
    c.v3("StopInstance", &[("InstanceId", "i-soft")])
        .await
        .assert_ok();
    c.v3(
        "StopInstance",
        &[
            ("InstanceId", "i-hard"),
            ("ForceStop", "True"),
            ("StoppedMode", "StopCharging"),
        ],
    )
    .await
    .assert_ok();
    assert_eq!(describe(&c, "i-soft").await["Status"], "Stopping");
    sim.advance(minutes(1));
    assert_eq!(describe(&c, "i-soft").await["Status"], "Stopping");
    let hard = describe(&c, "i-hard").await;
    assert_eq!(
        (hard["Status"].as_str(), hard["StoppedMode"].as_str()),
        (Some("Stopped"), Some("StopCharging"))
    );
    sim.advance(minutes(4));
    let soft = describe(&c, "i-soft").await;
    assert_eq!(
        (soft["Status"].as_str(), soft["StoppedMode"].as_str()),
        (Some("Stopped"), Some("KeepCharging"))
    );
}

#[tokio::test]
async fn reboot_passes_through_stopping_and_starting_and_moves_start_time() {
    let times = TransitionTimes {
        stopping: minutes(2),
        starting: minutes(1),
        ..TransitionTimes::ZERO
    };
    let (sim, c) = sim(
        times,
        vec![InstanceSpec::new("i-a", REGION).status(InstanceStatus::Running)],
    )
    .await;
    let before = describe(&c, "i-a").await["StartTime"].clone();
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_ok();
    let mut seen = vec![describe(&c, "i-a").await["Status"].clone()];
    sim.advance(minutes(2));
    seen.push(describe(&c, "i-a").await["Status"].clone());
    sim.advance(minutes(1));
    let after = describe(&c, "i-a").await;
    seen.push(after["Status"].clone());
    assert_eq!(seen, ["Stopping", "Starting", "Running"]);
    assert_ne!(
        after["StartTime"], before,
        "a reboot minutes later moves StartTime"
    );
    // A second reboot while one is in progress is refused, not queued.
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_ok();
    c.v3("RebootInstance", &[("InstanceId", "i-a")])
        .await
        .assert_error(403, "IncorrectInstanceStatus");
    assert_eq!(
        sim.calls()
            .count(Action::RebootInstance, "i-a", Outcome::Ok),
        2
    );
}

#[tokio::test]
async fn pending_becomes_stopped_after_its_time() {
    let (sim, c) = sim(
        TransitionTimes {
            pending: minutes(3),
            ..TransitionTimes::ZERO
        },
        vec![InstanceSpec::new("i-new", REGION).status(InstanceStatus::Pending)],
    )
    .await;
    c.v3("StartInstance", &[("InstanceId", "i-new")])
        .await
        .assert_error(403, "InstanceNotReady");
    sim.advance(minutes(3));
    assert_eq!(describe(&c, "i-new").await["Status"], "Stopped");
    c.v3("StartInstance", &[("InstanceId", "i-new")])
        .await
        .assert_ok();
}

#[tokio::test]
async fn describe_instances_pages_by_token_and_by_number() {
    let fleet: Vec<InstanceSpec> = (0..25)
        .map(|i| InstanceSpec::new(&format!("i-{i:03}"), REGION))
        .chain([InstanceSpec::new("i-elsewhere", "cn-shanghai")])
        .collect();
    let (_sim, c) = sim(TransitionTimes::ZERO, fleet).await;
    let mut token = String::new();
    let mut ids = Vec::new();
    loop {
        let mut params = vec![("RegionId", REGION), ("MaxResults", "10")];
        if !token.is_empty() {
            params.push(("NextToken", token.as_str()));
        }
        let reply = c.v3("DescribeInstances", &params).await;
        let body = reply.assert_ok();
        assert_eq!(body["TotalCount"], 25);
        for i in body["Instances"]["Instance"].as_array().unwrap() {
            ids.push(i["InstanceId"].as_str().unwrap().to_string());
        }
        token = body["NextToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("i-{i:03}")).collect();
    assert_eq!(ids, want);

    let reply = c
        .v1(
            "GET",
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("PageSize", "10"),
                ("PageNumber", "3"),
            ],
        )
        .await
        .0;
    let page = reply.assert_ok();
    assert_eq!(page["Instances"]["Instance"].as_array().unwrap().len(), 5);
    assert_eq!(page["PageNumber"], 3);

    let too_many = format!(
        "[{}]",
        (0..101)
            .map(|i| format!("\"i-{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    c.v3(
        "DescribeInstances",
        &[("RegionId", REGION), ("InstanceIds", &too_many)],
    )
    .await
    .assert_error(400, "InvalidParameter");
    c.v3(
        "DescribeInstances",
        &[("RegionId", REGION), ("InstanceIds", "i-1,i-2")],
    )
    .await
    .assert_error(400, "InvalidInstanceIds.Malformed");
}

#[tokio::test]
async fn describe_instance_status_lists_statuses() {
    let (_sim, c) = sim(
        TransitionTimes::ZERO,
        vec![
            InstanceSpec::new("i-a", REGION).status(InstanceStatus::Running),
            InstanceSpec::new("i-b", REGION),
        ],
    )
    .await;
    let reply = c
        .v3(
            "DescribeInstanceStatus",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-b"),
                ("InstanceId.2", "i-a"),
            ],
        )
        .await;
    let body = reply.assert_ok();
    assert_eq!(
        body["InstanceStatuses"]["InstanceStatus"],
        serde_json::json!([
            {"InstanceId": "i-a", "Status": "Running"},
            {"InstanceId": "i-b", "Status": "Stopped"}
        ])
    );
    c.v3(
        "DescribeInstanceStatus",
        &[("RegionId", REGION), ("PageSize", "51")],
    )
    .await
    .assert_error(400, "InvalidParameter");
}

#[tokio::test]
async fn batch_actions_all_together_or_success_first() {
    let running = |id: &str| InstanceSpec::new(id, REGION).status(InstanceStatus::Running);
    let (sim, c) = sim(
        TransitionTimes::ZERO,
        vec![
            running("i-a"),
            running("i-b"),
            InstanceSpec::new("i-stopped", REGION),
        ],
    )
    .await;
    // AllTogether (the default): one refusal refuses all.
    c.v3(
        "RebootInstances",
        &[
            ("RegionId", REGION),
            ("InstanceId.1", "i-a"),
            ("InstanceId.2", "i-stopped"),
        ],
    )
    .await
    .assert_error(403, "IncorrectInstanceStatus");
    assert_eq!(
        sim.calls()
            .count(Action::RebootInstances, "i-a", Outcome::Ok),
        0
    );
    // SuccessFirst: each instance answers for itself.
    let reply = c
        .v3(
            "StopInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-stopped"),
                ("BatchOptimization", "SuccessFirst"),
                ("ForceStop", "true"),
            ],
        )
        .await;
    let answers = reply.assert_ok()["InstanceResponses"]["InstanceResponse"].clone();
    assert_eq!(answers[0]["Code"], "200");
    assert_eq!(answers[0]["PreviousStatus"], "Running");
    assert_eq!(answers[0]["CurrentStatus"], "Stopped");
    assert_eq!(answers[1]["Code"], "IncorrectInstanceStatus");
    assert_eq!(sim.status("i-a"), Some(InstanceStatus::Stopped));
    // RebootInstances takes ForceReboot; StartInstances starts the stopped ones.
    c.v3(
        "RebootInstances",
        &[
            ("RegionId", REGION),
            ("InstanceId.1", "i-b"),
            ("ForceReboot", "TRUE"),
        ],
    )
    .await
    .assert_ok();
    c.v1(
        "POST",
        "StartInstances",
        &[
            ("RegionId", REGION),
            ("InstanceId.1", "i-a"),
            ("InstanceId.2", "i-stopped"),
        ],
    )
    .await
    .0
    .assert_ok();
    assert_eq!(sim.status("i-stopped"), Some(InstanceStatus::Running));
    assert_eq!(sim.calls().total(Action::StartInstances), 2);
}
