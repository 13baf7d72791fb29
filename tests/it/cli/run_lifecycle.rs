//! `ecs-power-controller run` as a process: a controller that cannot run ends the process
//! (so the pod restarts and is not left Running and Ready doing nothing), and its logs carry no
//! colour codes when nobody reads them on a terminal.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ecs_power_controller::api::{CRDS, CrdFn};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kubesim::{KubeSim, KubeSimOptions};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");

/// `run` as the Deployment starts it, against `kubeconfig`, stderr to a pipe.
fn run(kubeconfig: &Path, home: &Path, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["run", "--metrics-addr=127.0.0.1:0", "--log-format=text"])
        .args(extra)
        .env("POD_NAME", "ecs-power-controller-0")
        .env("POD_NAMESPACE", "default")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tRunLifecycleTest")
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "run-lifecycle-test-secret",
        )
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .env_remove("WATCH_NAMESPACE")
        .env_remove("LEADER_ELECT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the controller binary starts")
}

/// `run` against a cluster without the EcsInstance CRD for up to 5 s: its exit status (`None`:
/// still running, then killed) and stderr.
async fn run_without_the_crd() -> (Option<std::process::ExitStatus>, String) {
    let (api, dir) = cluster(&[]).await;
    let child = run(&dir.join("kubeconfig"), &dir, &[]);
    let ended = ended_within(child, Duration::from_secs(5)).await;
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    ended
}

/// An in-process API server with `crds` installed, and a directory with its kubeconfig.
async fn cluster(crds: &[(&str, CrdFn)]) -> (KubeSim, std::path::PathBuf) {
    let api = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    for (_, crd) in crds {
        Api::<CustomResourceDefinition>::all(api.client().unwrap())
            .create(&PostParams::default(), &crd())
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(format!(
        "run-lifecycle-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    api.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    (api, dir)
}

/// Waits up to `limit` for `child` to end: its exit status (`None`: still running, then
/// killed) and stderr.
async fn ended_within(
    mut child: Child,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().unwrap();
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fatal start-up error (no CRD) ends the process non-zero within 5 s, saying how to fix it,
/// rather than leaving a pod Running and Ready that does nothing.
#[tokio::test]
async fn a_fatal_start_up_error_ends_the_process_non_zero_within_5_seconds() {
    let (status, stderr) = run_without_the_crd().await;
    let Some(status) = status else {
        panic!("`run` without the CRD was still running after 5 s:\n{stderr}");
    };
    assert!(!status.success(), "exit status {status}\n{stderr}");
    assert!(
        stderr.contains("CRD is not installed") && stderr.contains("kubectl apply"),
        "{stderr}"
    );
}

/// With the EcsInstance CRD but not the EcsPowerSchedule one (an upgrade that skipped the new
/// CRD), `run` ends non-zero naming the file to apply.
#[tokio::test]
async fn a_missing_schedule_crd_is_named_with_the_fix() {
    let instances_only: Vec<_> = CRDS
        .iter()
        .filter(|(n, _)| *n == "ecsinstance")
        .copied()
        .collect();
    let (api, dir) = cluster(&instances_only).await;
    let child = run(&dir.join("kubeconfig"), &dir, &[]);
    let (status, stderr) = ended_within(child, Duration::from_secs(5)).await;
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(
        stderr.contains("EcsPowerSchedule CRD is not installed")
            && stderr.contains("crds/ecspowerschedule.yaml"),
        "{stderr}"
    );
}

/// Logs read from a file or `kubectl logs` carry no colour codes.
#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    let (_, stderr) = run_without_the_crd().await;
    assert!(stderr.contains("starting"), "the log is there: {stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in a piped log: {stderr:?}"
    );
}

/// A rolling update's SIGTERM to the leader: it stops, clears the Lease's holder so the other
/// replica need not wait out the lease, and exits 0.
#[tokio::test]
async fn sigterm_releases_the_lease_and_exits_cleanly() {
    let (api, dir) = cluster(CRDS).await;
    let leases: Api<Lease> = Api::namespaced(api.client().unwrap(), "default");
    let holder = || async {
        leases
            .get_opt("ecs-power-controller")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    let child = run(&dir.join("kubeconfig"), &dir, &["--leader-elect"]);
    let started = Instant::now();
    while holder().await.is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let (_, stderr) = ended_within(child, Duration::ZERO).await;
            panic!("never led:\n{stderr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(holder().await.as_deref(), Some("ecs-power-controller-0"));

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let (status, stderr) = ended_within(child, Duration::from_secs(20)).await;
    let status = status.unwrap_or_else(|| panic!("still running after SIGTERM:\n{stderr}"));
    assert!(status.success(), "exit status {status}\n{stderr}");
    assert_eq!(holder().await, None, "the lease is released:\n{stderr}");
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
