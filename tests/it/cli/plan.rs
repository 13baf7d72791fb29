//! `ecs-power-controller plan` offline (`--file`): the demo's objects (`deploy/examples`, what
//! `demo` applies) as a table, JSON and YAML, and the refusals of bad flags. The same command
//! against a cluster, through `kubectl ecsi plan`, is in `kubectl.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples")
}

fn plan(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("plan")
        .args(args)
        .env_remove("KUBECONFIG")
        // No ~/.kube/config either: "no cluster" is the same everywhere.
        .env("HOME", "/nonexistent")
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

/// Christmas Eve 2026 (a Thursday) in Shanghai: office hours close at 20:00 (12:00Z); Christmas
/// Day is an exception, stopped all day, so nothing opens on Friday.
const FROM: &str = "2026-12-24T00:00:00Z";

/// What `plan -o json` says of the demo's objects on Christmas Eve; also what `kubectl ecsi plan
/// -o json` says of them in a cluster (`kubectl.rs`).
pub(crate) fn assert_demo_plan(document: &Value, namespace: &str) {
    assert_eq!(
        document["apiVersion"], "cli.ecs.powerctl.io/v1",
        "{document:#}"
    );
    assert_eq!(document["kind"], "PowerPlan");
    assert_eq!(document["from"], FROM);
    assert_eq!(document["until"], "2026-12-25T00:00:00Z");
    let changes = document["changes"].as_array().unwrap();
    assert_eq!(
        changes[0],
        json!({
            "time": "2026-12-24T12:00:00Z",
            "localTime": "2026-12-24T20:00:00+08:00",
            "timeZone": "Asia/Shanghai",
            "namespace": namespace,
            "name": "dev-1",
            "instanceId": "i-bp1demoschedule1",
            "powerState": "Stopped",
            "schedule": "office-hours",
            "cause": {"type": "WindowCloses", "index": 0},
            "why": "schedule office-hours: running[0] closes",
            "dryRun": false,
            "after": [],
            "waitsFor": [],
        }),
        "{document:#}"
    );
    // The two tiers of ordered.yaml: the application stops first, then the database.
    assert_eq!(
        order(document, |_| true),
        [
            ("2026-12-24T12:00:00Z", "dev-1", &json!([])),
            ("2026-12-24T12:00:00Z", "shop-app", &json!([])),
            ("2026-12-24T12:00:00Z", "shop-db", &json!(["shop-app"])),
        ],
        "{document:#}"
    );
    let unchanged = document["unchanged"].as_array().unwrap();
    let state_of = |name: &str| {
        unchanged
            .iter()
            .find(|u| u["name"] == name)
            .map(|u| (u["state"].clone(), u["reason"].clone()))
            .unwrap_or_else(|| panic!("{name} is not in {document:#}"))
    };
    assert_eq!(
        state_of("maintenance-1"),
        (json!("Paused"), json!("Paused"))
    );
    assert_eq!(
        state_of("web-1"),
        (json!("Fixed"), json!("FixedPowerState"))
    );
    // Every example instance once, in one list or the other.
    let mut listed: Vec<&str> = unchanged
        .iter()
        .chain(document["changes"].as_array().unwrap())
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(listed, example_instances(), "{document:#}");
}

/// (time, name, after) of each change of the instances `named` picks, in the plan's order.
fn order(document: &Value, named: impl Fn(&str) -> bool) -> Vec<(&str, &str, &Value)> {
    document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| named(c["name"].as_str().unwrap()))
        .map(|c| {
            (
                c["time"].as_str().unwrap(),
                c["name"].as_str().unwrap(),
                &c["after"],
            )
        })
        .collect()
}

/// The names of the EcsInstances in `deploy/examples`, sorted.
fn example_instances() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        names.extend(
            documents
                .iter()
                .filter(|d| d["kind"] == "EcsInstance")
                .map(|d| d["metadata"]["name"].as_str().unwrap().to_string()),
        );
    }
    names.sort();
    names
}

/// Labour Day 2027 (a Saturday) is a day of the example calendar `cn-holidays`: it cuts
/// office-hours' Friday night window at midnight. What `plan --from 2027-04-30T00:00:00Z -o
/// json` says of dev-1: (UTC, state, cause) of each change; and shop-db's start order.
pub(crate) const LABOUR_DAY_FROM: &str = "2027-04-30T00:00:00Z";

pub(crate) fn assert_labour_day(document: &Value) {
    let changes: Vec<(&str, &str, Value)> = document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "dev-1")
        .map(|c| {
            (
                c["time"].as_str().unwrap(),
                c["powerState"].as_str().unwrap(),
                c["cause"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "2027-04-30T12:00:00Z",
                "Stopped",
                json!({"type": "WindowCloses", "index": 0})
            ),
            (
                "2027-04-30T14:00:00Z",
                "Running",
                json!({"type": "WindowOpens", "index": 1})
            ),
            (
                "2027-04-30T16:00:00Z",
                "Stopped",
                json!({"type": "Calendar", "calendar": "cn-holidays", "date": "2027-05-01", "day": "Labour Day"})
            ),
        ],
        "{document:#}"
    );
    assert_eq!(
        order(document, |name| name.starts_with("shop-")),
        [
            ("2027-04-30T12:00:00Z", "shop-app", &json!([])),
            ("2027-04-30T12:00:00Z", "shop-db", &json!(["shop-app"])),
            ("2027-04-30T14:00:00Z", "shop-db", &json!([])),
            ("2027-04-30T14:00:00Z", "shop-app", &json!(["shop-db"])),
            ("2027-04-30T16:00:00Z", "shop-app", &json!([])),
            ("2027-04-30T16:00:00Z", "shop-db", &json!(["shop-app"])),
        ],
        "{document:#}"
    );
}

#[test]
fn the_demos_objects_plan_offline_as_a_table_json_and_yaml() {
    let dir = examples();
    let dir = dir.to_str().unwrap();
    let out = plan(&["-f", dir, "--from", FROM, "--for", "24h", "-o", "json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let document: Value = serde_json::from_str(&stdout).unwrap();
    assert_demo_plan(&document, "default");

    // YAML: the same document.
    let out = plan(&["-f", dir, "--from", FROM, "-o", "yaml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let yaml: Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(yaml, document);

    // The table (the default); the default range is 24 hours.
    let out = plan(&["-f", dir, "--from", FROM]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines[..4],
        [
            format!(
                "Power changes of the EcsInstances in {dir}, after 2026-12-24 00:00Z until 2026-12-25 00:00Z: 3"
            ),
            String::new(),
            "LOCAL UTC ECSINSTANCE INSTANCE STATE WHY".to_string(),
            "Thu 2026-12-24 20:00 CST (+08:00) 2026-12-24 12:00Z default/dev-1 i-bp1demoschedule1 Stopped schedule office-hours: running[0] closes".to_string(),
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("\nNothing will happen until a person acts (1):\n  default/maintenance-1  i-bp1demopaused001  Paused: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nA fixed spec.powerState, no change ("),
        "{stdout}"
    );

    // The calendar of the file: Labour Day stops the Friday night window at midnight.
    let out = plan(&["-f", dir, "--from", LABOUR_DAY_FROM, "-o", "json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_labour_day(&serde_json::from_str(&stdout).unwrap());
    let out = plan(&["-f", dir, "--from", LABOUR_DAY_FROM]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("  Stopped  calendar cn-holidays: Labour Day\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  Stopped  calendar cn-holidays: Labour Day; after shop-app\n"),
        "{stdout}"
    );

    // Another namespace of the files: nothing in it.
    let out = plan(&["-f", dir, "--from", FROM, "-n", "shop"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.ends_with(": 0\n"), "{stdout}");
}

#[test]
fn bad_flags_are_refused_naming_the_flag_and_the_fix() {
    let dir = examples();
    let dir = dir.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--for", "0s"],
            "invalid value '0s' for '--for <DURATION>': \"0s\" is not a range ahead: give a positive duration, e.g. --for 24h",
        ),
        (
            vec!["--for", "400d"],
            "invalid value '400d' for '--for <DURATION>': \"400d\" is more than 366 days: plan at most --for 366d",
        ),
        (
            vec!["--for", "tomorrow"],
            "invalid value 'tomorrow' for '--for <DURATION>': \"tomorrow\" is not a duration (e.g. 90m, 3h, 2d)",
        ),
        (
            vec!["-o", "xml"],
            "invalid value 'xml' for '--output <OUTPUT>'",
        ),
        (
            vec!["-A"],
            "--file reads objects from files, not from a cluster: drop -A",
        ),
        (
            vec!["--from", "yesterday"],
            "invalid value 'yesterday' for '--from <FROM>'",
        ),
    ] {
        let out = plan(&[&["-f", dir][..], &args].concat());
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // -n and -A together.
    let out = plan(&["-n", "shop", "-A"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("'--namespace <NAMESPACE>' cannot be used with '--all-namespaces'"),
        "{stderr}"
    );
    // No cluster and no file: says how to get one or the other.
    let out = plan(&[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("(set KUBECONFIG, or plan from manifests with --file)"),
        "{stderr}"
    );
}
