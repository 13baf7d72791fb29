//! `ecs-power-controller schedule preview (NAME | --file FILE) [--days N] [--from T]`, run as an
//! operator runs it: offline on a file before applying it, or on the object in the cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ecs_power_controller::api::{EcsHolidayCalendar, EcsPowerSchedule};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kubesim::{KubeSim, KubeSimOptions};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/schedule.yaml")
}

/// A scratch directory for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("schedule-preview-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn preview(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["schedule", "preview"])
        .args(args)
        .env_remove("KUBECONFIG")
        // As in the distroless image: no zoneinfo on disk; the bundled database answers.
        .env("TZDIR", "/nonexistent/zoneinfo")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table row that mentions `needle`, with runs of spaces collapsed.
fn row(stdout: &str, needle: &str) -> String {
    stdout
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle}:\n{stdout}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_example_previews_offline_around_christmas() {
    let file = example();
    let out = preview(&[
        "--file",
        file.to_str().unwrap(),
        "--from",
        "2026-12-24T00:00:00Z",
        "--days",
        "3",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(
            "EcsPowerSchedule office-hours (Asia/Shanghai): Running now, at Thu 2026-12-24 08:00 CST (+08:00)\n"
        ),
        "{stdout}"
    );
    assert_eq!(
        row(&stdout, "2026-12-24 12:00Z"),
        "Thu 2026-12-24 20:00 CST (+08:00) 2026-12-24 12:00Z Stopped running[0] closes"
    );
    // Christmas (a Friday) is stopped all day, its night window included: nothing changes,
    // and the table still says why the Friday stays dark.
    assert_eq!(
        row(&stdout, "exception 2026-12-25"),
        "Fri 2026-12-25 00:00 CST (+08:00) 2026-12-24 16:00Z - exception 2026-12-25 (exceptions[0]): Stopped all day, as it already was"
    );
    assert!(!stdout.contains("2026-12-25 08:00"), "{stdout}");
    assert!(!stdout.contains("running[1] opens"), "{stdout}");
    // Three days: the next opening (Monday 08:00) is outside the range.
    assert!(
        !stdout.lines().skip(1).any(|l| l.contains("Running")),
        "{stdout}"
    );
}

/// The example's calendar (same file): National Day and its week are stopped, and the WHY
/// column names the calendar and the day; a calendar missing from the file, or with a date that
/// does not exist, is an error naming it.
#[test]
fn the_example_previews_with_the_calendar_of_its_file() {
    let file = example();
    let out = preview(&[
        "--file",
        file.to_str().unwrap(),
        "--from",
        "2027-09-30T00:00:00Z",
        "--days",
        "5",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        row(&stdout, "2027-09-30 12:00Z"),
        "Thu 2027-09-30 20:00 CST (+08:00) 2027-09-30 12:00Z Stopped running[0] closes"
    );
    assert_eq!(
        row(&stdout, "National Day:"),
        "Fri 2027-10-01 00:00 CST (+08:00) 2027-09-30 16:00Z - calendar cn-holidays: National Day: Stopped all day, as it already was"
    );
    // Monday 2027-10-04 is a calendar day too: no window opens all week.
    assert!(
        !stdout.lines().skip(1).any(|l| l.contains("Running")),
        "{stdout}"
    );

    let dir = scratch("calendars");
    let missing = dir.join("schedule.yaml");
    let schedule = std::fs::read_to_string(&file).unwrap();
    let only_the_schedule = schedule.split("\n---\n").nth(1).unwrap();
    std::fs::write(&missing, only_the_schedule).unwrap();
    let out = preview(&["--file", missing.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: EcsPowerSchedule office-hours uses EcsHolidayCalendar cn-holidays (spec.calendars[0]), which is not in {}: add it to the file (a document of kind EcsHolidayCalendar), or remove it from spec.calendars",
            missing.display()
        )
    );

    std::fs::write(&missing, schedule.replace("2027-05-01", "2027-02-30")).unwrap();
    let out = preview(&["--file", missing.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "error: EcsPowerSchedule office-hours is invalid:",
            "  EcsHolidayCalendar cn-holidays spec.days[1].date: \"2027-02-30\" is not a date YYYY-MM-DD",
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_schedule_in_berlin_shows_the_spring_dst_change() {
    let dir = scratch("berlin");
    let file = dir.join("schedule.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsPowerSchedule
metadata: {name: nightly, namespace: ops}
spec:
  timeZone: Europe/Berlin
  running:
    - days: [Sun]
      from: "02:30"
      to: "05:00"
---
apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsInstance
metadata: {name: batch-1, namespace: ops}
spec: {instanceId: i-bp1batch0001, regionId: eu-central-1, powerState: Stopped}
"#,
    )
    .unwrap();
    let out = preview(&[
        "-f",
        file.to_str().unwrap(),
        "--from",
        "2026-03-28T12:00:00Z",
        "--days",
        "2",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        row(&stdout, "clocks go forward"),
        "Sun 2026-03-29 03:00 CEST (+02:00) 2026-03-29 01:00Z - DST: clocks go forward 1h (CET +01 to CEST +02)"
    );
    assert_eq!(
        row(&stdout, "opens"),
        "Sun 2026-03-29 03:30 CEST (+02:00) 2026-03-29 01:30Z Running running[0] opens; 02:30 is skipped by the DST change: moved 1h later"
    );
    assert_eq!(
        row(&stdout, "closes"),
        "Sun 2026-03-29 05:00 CEST (+02:00) 2026-03-29 03:00Z Stopped running[0] closes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_file_is_refused_with_every_field_named() {
    let dir = scratch("invalid");
    let file = dir.join("schedule.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsPowerSchedule
metadata: {name: broken}
spec:
  timeZone: Europe/Berlln
  running:
    - days: [Mon]
      from: "08:00"
      to: "20:00"
    - days: [Tue]
      from: "08:00"
      to: "25:00"
  exceptions:
    - {date: "2026-12-25", powerState: Stopped}
    - {date: "2026-12-25", powerState: Running}
"#,
    )
    .unwrap();
    let out = preview(&["--file", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "error: EcsPowerSchedule broken is invalid:",
            "  spec.timeZone: \"Europe/Berlln\" is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)",
            "  spec.running[1].to: \"25:00\" is not a time of day HH:MM (00:00 to 23:59, or 24:00 for the end of the day)",
            "  spec.exceptions[1].date: 2026-12-25 is already listed at spec.exceptions[0]: one entry per day",
        ]
    );

    // A shape error (a day that does not exist) names its field too.
    std::fs::write(
        &file,
        "kind: EcsPowerSchedule\nmetadata: {name: typo}\nspec:\n  timeZone: UTC\n  running: [{days: [Mon, Tues], from: \"08:00\", to: \"20:00\"}]\n",
    )
    .unwrap();
    let out = preview(&["--file", file.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: spec.running[0].days[1]: unknown variant `Tues`"),
        "{stderr}"
    );

    // A misspelt field is refused with its name, as the API server refuses it (serde alone
    // dropped it: the exceptions vanished from the preview without a word).
    for (body, field) in [
        (
            "  timeZone: UTC\n  running: [{days: [Mon], from: \"08:00\", to: \"20:00\"}]\n  exeptions: [{date: \"2026-12-25\", powerState: Stopped}]\n",
            "spec.exeptions",
        ),
        (
            "  timeZone: UTC\n  running: [{days: [Mon], from: \"08:00\", to: \"20:00\", form: \"09:00\"}]\n",
            "spec.running[0].form",
        ),
    ] {
        std::fs::write(
            &file,
            format!("kind: EcsPowerSchedule\nmetadata: {{name: typo}}\nspec:\n{body}"),
        )
        .unwrap();
        let out = preview(&["--file", file.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{stdout}");
        assert!(
            stderr.starts_with(&format!("error: {field}: unknown field (expected one of ")),
            "{stderr}"
        );
        assert!(
            stderr.contains("`kubectl apply` refuses it too"),
            "{stderr}"
        );
    }

    // No schedule in the file at all.
    let out = preview(&[
        "--file",
        example()
            .parent()
            .unwrap()
            .join("running.yaml")
            .to_str()
            .unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("running.yaml holds no EcsPowerSchedule"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_in_the_cluster_previews_by_name() {
    let sim = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    let client = sim.client().unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &EcsPowerSchedule::crd())
        .await
        .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &EcsHolidayCalendar::crd())
        .await
        .unwrap();
    let ops = Namespace {
        metadata: ObjectMeta {
            name: Some("ops".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ops)
        .await
        .unwrap();
    let dir = scratch("cluster");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    previews_the_example_by_name(&client, &kubeconfig, "ops").await;
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

/// The same on a real API server (crates/envtest's): the CRDs applied server-side, the
/// schedule in a namespace of its own, `preview` reading it with the admin kubeconfig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_a_real_api_server_previews_by_name() {
    let Some(server) = crate::support::scenario::real_server_or_skip("schedule preview") else {
        return;
    };
    let (sandbox, warnings) = crate::support::scenario::real_sandbox(server, Vec::new()).await;
    previews_the_example_by_name(
        &sandbox.client,
        &server.kubeconfig_path(),
        &sandbox.namespace,
    )
    .await;
    sandbox.shutdown().await;
    assert_eq!(warnings.take(), Vec::new(), "the server's warnings");
}

/// `schedule preview office-hours -n NAMESPACE` after the example schedule is created there;
/// without `-n`, the kubeconfig's namespace (`default`), where there is none.
async fn previews_the_example_by_name(client: &kube::Client, kubeconfig: &Path, namespace: &str) {
    let text_of_example = std::fs::read_to_string(example()).unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text_of_example).unwrap();
    let mut calendar: EcsHolidayCalendar = serde_json::from_value(documents[0].clone()).unwrap();
    calendar.metadata.namespace = Some(namespace.into());
    let calendars = Api::<EcsHolidayCalendar>::namespaced(client.clone(), namespace);
    let mut schedule: EcsPowerSchedule = serde_json::from_value(documents[1].clone()).unwrap();
    schedule.metadata.namespace = Some(namespace.into());
    Api::<EcsPowerSchedule>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();
    // The child talks to kubesim, which runs on this test's runtime: wait for it off-runtime.
    let run = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["schedule", "preview"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn");
        tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
    };

    // Its calendar is not there yet: the error names it, and how to list the calendars.
    let out = run(&["office-hours", "-n", namespace]).await.unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "EcsPowerSchedule office-hours uses EcsHolidayCalendar cn-holidays (spec.calendars[0]), which does not exist in namespace {namespace} (list them with `kubectl get ecshc -n {namespace}`)"
        )),
        "{stderr}"
    );
    calendars
        .create(&PostParams::default(), &calendar)
        .await
        .unwrap();

    let out = run(&[
        "office-hours",
        "-n",
        namespace,
        "--from",
        "2026-11-27T10:00:00Z",
        "--days",
        "1",
    ])
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        row(&stdout, "2026-11-27 12:00Z"),
        "Fri 2026-11-27 20:00 CST (+08:00) 2026-11-27 12:00Z Stopped running[0] closes"
    );
    assert_eq!(
        row(&stdout, "running[1] opens"),
        "Fri 2026-11-27 22:00 CST (+08:00) 2026-11-27 14:00Z Running running[1] opens"
    );

    let out = run(&[
        "office-hours",
        "-n",
        namespace,
        "--from",
        "2027-09-30T10:00:00Z",
        "--days",
        "2",
    ])
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        row(&stdout, "National Day:"),
        "Fri 2027-10-01 00:00 CST (+08:00) 2027-09-30 16:00Z - calendar cn-holidays: National Day: Stopped all day, as it already was"
    );

    // Without -n: the kubeconfig's namespace (default), where there is none.
    let out = run(&["office-hours"]).await.unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("EcsPowerSchedule default/office-hours not found"),
        "{stderr}"
    );
}

/// `-o json` and `-o yaml`: the documented document (docs/schedules.md), the same in both.
#[test]
fn the_preview_prints_the_documented_json_and_yaml() {
    let file = example();
    let args = |format: &'static str| {
        [
            "--file",
            file.to_str().unwrap(),
            "--from",
            "2026-12-24T00:00:00Z",
            "--days",
            "3",
            "-o",
            format,
        ]
        .map(String::from)
    };
    let out = preview(&args("json").each_ref().map(String::as_str));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["apiVersion"], "cli.ecs.powerctl.io/v1");
    assert_eq!(json["kind"], "SchedulePreview");
    assert_eq!(json["schedule"], "office-hours");
    assert_eq!(json["powerState"], "Running");
    assert_eq!(
        json["entries"][0],
        serde_json::json!({
            "time": "2026-12-24T12:00:00Z",
            "localTime": "2026-12-24T20:00:00+08:00",
            "event": "Transition",
            "powerState": "Stopped",
            "cause": {"type": "WindowCloses", "index": 0},
            "why": "running[0] closes",
        })
    );
    assert_eq!(json["entries"][1]["event"], "ExceptionDay");
    assert_eq!(json["next"]["time"], "2026-12-28T00:00:00Z");

    let out = preview(&args("yaml").each_ref().map(String::as_str));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let yaml: serde_json::Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(yaml, json);
}
