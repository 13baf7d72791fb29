//! The official Alibaba Cloud Python SDKs cannot tell the simulator from ECS: describe, start,
//! stop and reboot flows and every seed-page error arrive as the right exception code and HTTP
//! status, with V3 signing, with V1 (`signature_algorithm='v2'`), and with the legacy
//! `aliyun-python-sdk-core`. The flows live in `tests/it/ecs/sdk/sim_flows.py`.

use std::path::Path;
use std::time::Duration;

use ecs_client::types::InstanceStatus;
use ecs_sim::{InstanceSpec, KeySpec, SimConfig, Simulator, TransitionTimes};

fn fleet() -> SimConfig {
    let region = "cn-hangzhou";
    let mut overdue = InstanceSpec::new("i-overdue", region);
    overdue.overdue = true;
    let mut expired = InstanceSpec::new("i-expired", region);
    expired.expired = true;
    let mut arrears = InstanceSpec::new("i-arrears", region).status(InstanceStatus::Running);
    arrears.overdue = true;
    let mut disk = InstanceSpec::new("i-disk", region);
    disk.disk_fault = true;
    let mut config = SimConfig::instant()
        .with_key("sdk-ak", "sdk-sk")
        .with_transitions(TransitionTimes {
            // Pending stays Pending for the whole run; everything else is instantaneous.
            pending: Duration::from_secs(3600),
            ..TransitionTimes::ZERO
        })
        .with_instance(InstanceSpec::new("i-stopped", region))
        .with_instance(InstanceSpec::new("i-running", region).status(InstanceStatus::Running))
        .with_instance(InstanceSpec::new("i-pending", region).status(InstanceStatus::Pending))
        .with_instance(
            InstanceSpec::new("i-locked", region)
                .status(InstanceStatus::Running)
                .lock("security"),
        )
        .with_instance(overdue)
        .with_instance(expired)
        .with_instance(arrears)
        .with_instance(disk);
    config.keys.push(KeySpec {
        id: "STS.sdk-ak".into(),
        secret: "sts-sk".into(),
        security_token: Some("sts-token-value".into()),
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_cannot_tell_the_simulator_from_ecs() {
    let sim = Simulator::start(fleet()).await.expect("simulator starts");
    let host = sim.addr().to_string();
    let python = crate::support::python::sdk_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ecs/sdk/sim_flows.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(host)
            .output()
            .expect("python runs")
    })
    .await
    .expect("the script's task ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK flows failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for flavour in ["tea-v3", "tea-v2", "legacy-core"] {
        assert!(stdout.contains(&format!("[{flavour}] ok")), "{stdout}");
    }
    sim.shutdown().await;
}
