//! What a cluster operator installs and watches, checked with the tools operators use: the Helm
//! chart with Helm 3 and Helm 4 (lint, every documented variant, the same objects as
//! `deploy/base`, accepted by a real API server), the alerts with promtool, the Argo CD health
//! checks with Lua 5.1, the dashboard and the alerts against the metrics a running controller
//! exports, and the Flux example against a real API server.
//!
//! The tools: `bash .ci/install-tools` puts helm3, helm4 and kubectl in target/tools and
//! installs promtool and lua5.1 (Debian). HELM3, HELM4, PROMTOOL, LUA and KUBECTL override where
//! each is found. The API server: KUBEBUILDER_ASSETS naming shared/envtest/bin (its start.sh
//! beside it). Outside CI a missing tool skips its test with one line saying how to get it;
//! with CI set, a missing tool fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ecs_power_controller::api::{CRDS, crd_yaml};
use ecs_power_controller::controller::Config;
use ecs_power_controller::demo::Sandbox;
use serde_json::{Value, json};

const CHART: &str = "charts/ecs-power-controller";
const RUNBOOKS: &str =
    "https://github.com/ecs-power-controller/ecs-power-controller/blob/main/docs/runbooks.md";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every document of a YAML text (empty documents dropped).
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("{what} does not parse as YAML: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn yaml(path: &str) -> Value {
    let mut docs = yaml_docs(&read(path), path);
    assert_eq!(docs.len(), 1, "{path}: expected one document");
    docs.remove(0)
}

// ---- finding the tools ----

/// A tool: `env` names an override; then target/tools/`name`; then `path_name` on PATH. `None`
/// (after one line saying what is skipped) outside CI; a failure in CI.
fn tool(env: &str, name: &str, path_name: Option<&str>, skipped: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let local = repo().join("target/tools").join(name);
    if local.is_file() {
        return Some(local);
    }
    if let Some(found) = path_name.and_then(on_path) {
        return Some(found);
    }
    let how = format!(
        "{name} not found (set {env}, or run `bash .ci/install-tools`, which puts helm3/helm4/kubectl in target/tools and apt-installs promtool and lua5.1)"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and {how}: {skipped} cannot be skipped"
    );
    eprintln!("SKIPPED {skipped}: {how}");
    None
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Both Helm majors operators run, by label.
fn helms(skipped: &str) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    for (label, env, name) in [("helm 3", "HELM3", "helm3"), ("helm 4", "HELM4", "helm4")] {
        if let Some(path) = tool(env, name, None, skipped) {
            let version = run_ok(
                Command::new(&path).args(["version", "--short"]),
                "helm version",
            );
            let major = if label == "helm 3" { "v3." } else { "v4." };
            assert!(
                version.trim().starts_with(major),
                "{} is {version}, not {label}",
                path.display()
            );
            out.push((label, path));
        }
    }
    out
}

fn kubectl(skipped: &str) -> Option<PathBuf> {
    tool("KUBECTL", "kubectl", Some("kubectl"), skipped)
}

/// Runs `cmd`, returning stdout; panics with stderr when it fails.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `cmd` expecting a failure; returns stderr and stdout.
fn run_fails(cmd: &mut Command, what: &str) -> String {
    let out = cmd.current_dir(repo()).output().expect("runs");
    assert!(!out.status.success(), "{what} succeeded but should fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

// ---- the chart ----

/// `helm template` of the chart with `--include-crds`, release `release` in namespace
/// `ecs-power-controller`, and `--set`-style `values`, parsed.
fn template(helm: &Path, release: &str, values: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(helm);
    cmd.args([
        "template",
        release,
        CHART,
        "--namespace",
        "ecs-power-controller",
        "--include-crds",
    ]);
    for v in values {
        cmd.args(["--set", v]);
    }
    let text = run_ok(&mut cmd, &format!("helm template {values:?}"));
    yaml_docs(&text, "helm template output")
}

/// The documented variants (charts/ecs-power-controller/README.md), as `--set` values, with
/// what each must render.
fn variants() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("defaults", vec![]),
        (
            "one replica, no leader election",
            vec!["replicaCount=1", "leaderElection.enabled=false"],
        ),
        (
            "tuned run flags",
            vec![
                "controller.qps=20",
                "controller.concurrency=1024",
                "controller.resync=10m",
                "controller.selector=shard=a",
                "controller.logFormat=text",
            ],
        ),
        (
            "one watched namespace",
            vec!["controller.watchNamespace=team-a"],
        ),
        (
            "both tenancy guards",
            vec![
                "controller.sharedCredentialsSelector=ecs.powerctl.io/shared-credentials=allowed",
                "controller.instanceTagGuard=ecs.powerctl.io/namespaces",
            ],
        ),
        (
            "credentials from an existing Secret",
            vec!["credentials.secret.existingSecret=ecs-ak"],
        ),
        (
            "credentials Secret created by the chart",
            vec![
                "credentials.secret.accessKeyId=LTAI5texample",
                "credentials.secret.accessKeySecret=not-a-real-secret",
            ],
        ),
        (
            "RRSA through the pod identity webhook",
            vec![
                "credentials.rrsa.enabled=true",
                "credentials.rrsa.roleName=ecs-power-controller",
            ],
        ),
        (
            "RRSA set by the chart",
            vec![
                "credentials.rrsa.enabled=true",
                "credentials.rrsa.injectEnv=true",
                "credentials.rrsa.roleArn=acs:ram::1234567890:role/ecs-power-controller",
                "credentials.rrsa.oidcProviderArn=acs:ram::1234567890:oidc-provider/ack-rrsa-c123",
            ],
        ),
        (
            "monitoring: ServiceMonitor, PrometheusRule, dashboard",
            vec![
                "metrics.serviceMonitor.enabled=true",
                "prometheusRule.enabled=true",
                "grafanaDashboard.enabled=true",
            ],
        ),
        (
            "namespace created by the chart",
            vec!["namespace.create=true"],
        ),
        (
            "no aggregated user roles",
            vec!["rbac.aggregatedRoles=false"],
        ),
    ]
}

fn names(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().map(key).collect()
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", names(objects)))
}

fn container(objects: &[Value]) -> &Value {
    &object(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objects: &[Value]) -> Vec<String> {
    container(objects)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn env_names(objects: &[Value]) -> BTreeSet<String> {
    container(objects)["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|v| v["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn helm_3_and_4_lint_the_chart_strictly_with_every_documented_variant() {
    for (label, helm) in helms("helm lint of the chart") {
        for (variant, values) in variants() {
            let mut cmd = Command::new(&helm);
            cmd.args(["lint", "--strict", CHART]);
            for v in &values {
                cmd.args(["--set", v]);
            }
            let out = run_ok(&mut cmd, &format!("{label} lint --strict ({variant})"));
            assert!(
                out.contains("1 chart(s) linted, 0 chart(s) failed"),
                "{label} lint ({variant}):\n{out}"
            );
        }
    }
}

#[test]
fn each_documented_variant_renders_what_it_promises_with_helm_3_and_4() {
    for (label, helm) in helms("helm template of the variants") {
        let render = |values: &[&str]| template(&helm, "ecs-power-controller", values);
        for (variant, values) in variants() {
            let objects = render(&values);
            let args = args(&objects);
            let env = env_names(&objects);
            let kinds = names(&objects);
            let ctx = format!("{label}, {variant}: {args:?} {kinds:?}");
            match variant {
                "defaults" => {
                    assert_eq!(
                        args,
                        ["run", "--leader-elect", "--log-format=json"],
                        "{ctx}"
                    );
                    assert_eq!(
                        object(&objects, "Deployment")["spec"]["replicas"],
                        2,
                        "{ctx}"
                    );
                    assert_eq!(
                        container(&objects)["image"],
                        "ecs-power-controller:0.1.0",
                        "{ctx}"
                    );
                    assert!(!kinds.iter().any(|k| k.starts_with("Secret/")), "{ctx}");
                }
                "one replica, no leader election" => {
                    assert_eq!(args, ["run", "--log-format=json"], "{ctx}");
                    assert!(
                        !kinds.iter().any(|k| k.contains("leader-election")),
                        "{ctx}"
                    );
                }
                "tuned run flags" => assert_eq!(
                    args,
                    [
                        "run",
                        "--leader-elect",
                        "--log-format=text",
                        "--qps=20",
                        "--concurrency=1024",
                        "--resync=10m",
                        "--selector=shard=a"
                    ],
                    "{ctx}"
                ),
                "one watched namespace" => {
                    assert!(args.contains(&"--namespace=team-a".to_string()), "{ctx}");
                    let role = objects
                        .iter()
                        .find(|o| {
                            o["kind"] == "Role" && o["metadata"]["name"] == "ecs-power-controller"
                        })
                        .unwrap_or_else(|| panic!("no Role for the watched namespace: {ctx}"));
                    assert_eq!(role["metadata"]["namespace"], "team-a");
                    assert!(!kinds.contains("ClusterRole/ecs-power-controller"), "{ctx}");
                }
                "both tenancy guards" => {
                    assert!(args.contains(&"--shared-credentials-selector=ecs.powerctl.io/shared-credentials=allowed".to_string()), "{ctx}");
                    assert!(
                        args.contains(
                            &"--instance-tag-guard=ecs.powerctl.io/namespaces".to_string()
                        ),
                        "{ctx}"
                    );
                    assert!(
                        kinds.contains("ClusterRole/ecs-power-controller-namespaces"),
                        "{ctx}"
                    );
                    assert!(
                        kinds.contains("ClusterRoleBinding/ecs-power-controller-namespaces"),
                        "{ctx}"
                    );
                }
                "credentials from an existing Secret" => {
                    assert!(
                        env.contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
                            && env.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
                        "{ctx}"
                    );
                    assert!(
                        container(&objects)
                            .to_string()
                            .contains("\"name\":\"ecs-ak\""),
                        "{ctx}"
                    );
                    assert!(!kinds.iter().any(|k| k.starts_with("Secret/")), "{ctx}");
                }
                "credentials Secret created by the chart" => {
                    assert!(
                        kinds.contains("Secret/ecs-power-controller-credentials"),
                        "{ctx}"
                    );
                    // The key reaches the pod through the Secret, never as a literal value.
                    assert!(
                        !object(&objects, "Deployment")
                            .to_string()
                            .contains("not-a-real-secret"),
                        "{ctx}"
                    );
                }
                "RRSA through the pod identity webhook" => {
                    assert_eq!(
                        object(&objects, "ServiceAccount")["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"],
                        "ecs-power-controller",
                        "{ctx}"
                    );
                    assert!(!env.contains("ALIBABA_CLOUD_ROLE_ARN"), "{ctx}");
                }
                "RRSA set by the chart" => {
                    for var in [
                        "ALIBABA_CLOUD_ROLE_ARN",
                        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                    ] {
                        assert!(env.contains(var), "{var}: {ctx}");
                    }
                    let volume =
                        &object(&objects, "Deployment")["spec"]["template"]["spec"]["volumes"][0];
                    assert_eq!(
                        volume["projected"]["sources"][0]["serviceAccountToken"]["audience"],
                        "sts.aliyuncs.com",
                        "{ctx}"
                    );
                }
                "monitoring: ServiceMonitor, PrometheusRule, dashboard" => {
                    assert!(
                        kinds.contains("ServiceMonitor/ecs-power-controller"),
                        "{ctx}"
                    );
                    let rule = object(&objects, "PrometheusRule");
                    assert_eq!(
                        rule["spec"],
                        yaml(&format!("{CHART}/files/alerts.yaml")),
                        "{ctx}"
                    );
                    let dashboard = object(&objects, "ConfigMap");
                    assert_eq!(
                        dashboard["metadata"]["labels"]["grafana_dashboard"], "1",
                        "{ctx}"
                    );
                    let json: Value = serde_json::from_str(
                        dashboard["data"]["ecs-power-controller.json"]
                            .as_str()
                            .unwrap(),
                    )
                    .unwrap();
                    assert_eq!(json["uid"], "ecs-power-controller", "{ctx}");
                }
                "namespace created by the chart" => {
                    let ns = object(&objects, "Namespace");
                    assert_eq!(
                        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
                        "restricted",
                        "{ctx}"
                    );
                }
                "no aggregated user roles" => {
                    assert!(
                        !kinds.contains("ClusterRole/ecs-power-controller-view"),
                        "{ctx}"
                    );
                    assert!(
                        !kinds.contains("ClusterRole/ecs-power-controller-edit"),
                        "{ctx}"
                    );
                }
                other => panic!("variant {other} has no expectation"),
            }
        }
        // A second release in the same namespace gets its own names and its own Lease.
        let other = template(&helm, "night-shift", &[]);
        assert!(names(&other).contains("Deployment/night-shift-ecs-power-controller"));
        assert!(
            args(&other).contains(&"--lease-name=night-shift-ecs-power-controller".to_string())
        );
        // The runbook links follow the operator's copy of the docs.
        let rule = template(
            &helm,
            "ecs-power-controller",
            &[
                "prometheusRule.enabled=true",
                "prometheusRule.runbookBaseUrl=https://wiki.example.com/runbooks",
            ],
        );
        let text = object(&rule, "PrometheusRule").to_string();
        assert!(
            text.contains("https://wiki.example.com/runbooks#ecspowercontrollerstalled")
                && !text.contains(RUNBOOKS),
            "{label}"
        );
    }
}

#[test]
fn helm_3_and_4_render_the_same_objects() {
    let helms = helms("the Helm 3/4 comparison");
    if helms.len() < 2 {
        return;
    }
    for (variant, values) in variants() {
        let three = template(&helms[0].1, "ecs-power-controller", &values);
        let four = template(&helms[1].1, "ecs-power-controller", &values);
        assert_eq!(three, four, "helm 3 and helm 4 differ for {variant}");
    }
}

#[test]
fn a_typo_or_a_wrong_type_in_values_fails_the_install_not_the_pod() {
    for (label, helm) in helms("the values schema") {
        for (values, says) in [
            ("controler.qps=3", "controler"),
            ("controller.qps=-1", "qps"),
            ("controller.logFormat=yaml", "logFormat"),
            ("controller.resync=5 minutes", "resync"),
            ("image.pullPolicy=Sometimes", "pullPolicy"),
            ("metrics.serviceMonitor.enable=true", "enable"),
        ] {
            let err = run_fails(
                Command::new(&helm).args(["template", "x", CHART, "--set", values]),
                &format!("{label} template --set {values}"),
            );
            assert!(
                err.contains("values") || err.contains("schema"),
                "{label}, {values}: not a schema error: {err}"
            );
            assert!(
                err.contains(says),
                "{label}, {values}: does not name {says}: {err}"
            );
        }
        // Both credential sources at once: refused, and an RRSA ARN without the other.
        run_fails(
            Command::new(&helm).args([
                "template",
                "x",
                CHART,
                "--set",
                "credentials.rrsa.enabled=true",
                "--set",
                "credentials.secret.existingSecret=ak",
            ]),
            "secret and rrsa together",
        );
        let err = run_fails(
            Command::new(&helm).args([
                "template",
                "x",
                CHART,
                "--set",
                "credentials.rrsa.enabled=true",
                "--set",
                "credentials.rrsa.injectEnv=true",
            ]),
            "rrsa injectEnv without ARNs",
        );
        assert!(
            err.contains("credentials.rrsa.roleArn is required"),
            "{label}: {err}"
        );
    }
}

/// `kubectl kustomize deploy/base`, parsed.
fn kustomize(kubectl: &Path, dir: &str) -> Vec<Value> {
    let text = run_ok(
        Command::new(kubectl).args(["kustomize", dir]),
        &format!("kubectl kustomize {dir}"),
    );
    yaml_docs(&text, dir)
}

/// `v` with every number as a float: kustomize writes `0.0` as `0`, Helm keeps it.
fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The first path where `a` and `b` differ, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// What must not drift between the chart and deploy/base, per object.
fn essence(o: &Value) -> Value {
    let o = &numbers_as_floats(o);
    let pod = &o["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sorted_env: BTreeSet<String> = c["env"]
        .as_array()
        .map(|e| e.iter().map(|v| v.to_string()).collect())
        .unwrap_or_default();
    json!({
        "namespace": o["metadata"]["namespace"],
        "rules": o["rules"],
        "roleRef": o["roleRef"],
        "subjects": o["subjects"],
        "replicas": o["spec"]["replicas"],
        "strategy": o["spec"]["strategy"],
        "podSecurityContext": pod["securityContext"],
        "serviceAccountName": pod["serviceAccountName"],
        "args": c["args"],
        "env": sorted_env,
        "securityContext": c["securityContext"],
        "ports": c["ports"],
        "probes": [c["livenessProbe"], c["readinessProbe"]],
        "resources": c["resources"],
        "image": c["image"],
        "minAvailable": o["spec"]["minAvailable"],
        "servicePorts": if o["kind"] == "Service" { o["spec"]["ports"].clone() } else { Value::Null },
        "annotations": if o["kind"] == "Service" { o["metadata"]["annotations"].clone() } else { Value::Null },
        "podSecurity": if o["kind"] == "Namespace" {
            json!([o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], o["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"]])
        } else { Value::Null },
        "crd": if o["kind"] == "CustomResourceDefinition" { o["spec"].clone() } else { Value::Null },
        "aggregation": o["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"].as_str()
            .or(o["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"].as_str()),
    })
}

#[test]
fn the_chart_with_default_values_renders_the_objects_of_deploy_base() {
    let Some(kubectl) = kubectl("the chart/kustomize parity") else {
        return;
    };
    let base = kustomize(&kubectl, "deploy/base");
    for (label, helm) in helms("the chart/kustomize parity") {
        // Helm leaves the namespace to `--create-namespace` by default; namespace.create
        // renders it, and then the two are the same list.
        for (values, skip_namespace) in [(vec![], true), (vec!["namespace.create=true"], false)] {
            let chart = template(&helm, "ecs-power-controller", &values);
            let expected: BTreeMap<String, &Value> = base
                .iter()
                .filter(|o| !(skip_namespace && o["kind"] == "Namespace"))
                .map(|o| (key(o), o))
                .collect();
            let rendered: BTreeMap<String, &Value> = chart.iter().map(|o| (key(o), o)).collect();
            assert_eq!(
                rendered.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{label} {values:?}: the chart and deploy/base render different objects"
            );
            for (name, want) in &expected {
                let got = rendered[name];
                if let Some(diff) = first_difference(&essence(got), &essence(want), "") {
                    panic!(
                        "{label} {values:?}: {name} differs from deploy/base (chart vs base) at {diff}"
                    );
                }
                // deploy/base's label on everything (Helm installs crds/ as they are); the
                // chart's selector is its own.
                if got["kind"] == "CustomResourceDefinition" {
                    continue;
                }
                assert_eq!(
                    got["metadata"]["labels"]["app.kubernetes.io/part-of"], "ecs-power-controller",
                    "{label}: {name}"
                );
            }
        }
    }
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    for (name, crd) in CRDS {
        let generated = crd_yaml(&crd()).expect("renders");
        let path = format!("{CHART}/crds/{name}.yaml");
        assert!(
            read(&path) == generated,
            "{path} differs from the generated CRD: `cargo run -- crd {name} > {path}` (and crds/{name}.yaml)"
        );
    }
    let files = std::fs::read_dir(repo().join(CHART).join("crds"))
        .unwrap()
        .count();
    assert_eq!(
        files,
        CRDS.len(),
        "{CHART}/crds holds a file that is not a generated CRD"
    );
}

#[test]
fn the_alerts_and_the_dashboard_are_the_same_in_the_chart_and_in_deploy() {
    let rule = yaml("deploy/prometheus/prometheus-rule.yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"],
        yaml(&format!("{CHART}/files/alerts.yaml")),
        "deploy/prometheus/prometheus-rule.yaml's spec differs from {CHART}/files/alerts.yaml"
    );
    assert!(
        read("deploy/grafana/ecs-power-controller.json")
            == read(&format!("{CHART}/files/dashboard.json")),
        "{CHART}/files/dashboard.json differs from deploy/grafana/ecs-power-controller.json: cp the latter"
    );
}

// ---- a real API server ----

/// The test binary's shared kube-apiserver and etcd (crates/envtest, from `KUBEBUILDER_ASSETS`):
/// only the Namespaces and CRDs are applied for real, the rest is a server-side dry run.
struct ApiServer {
    kubeconfig: PathBuf,
}

impl ApiServer {
    fn start(skipped: &str) -> Option<ApiServer> {
        match envtest::Envtest::shared() {
            Ok(Some(env)) => Some(ApiServer {
                kubeconfig: env.kubeconfig_path().to_path_buf(),
            }),
            Ok(None) => {
                eprintln!(
                    "SKIPPED {skipped}: set KUBEBUILDER_ASSETS (a directory with kube-apiserver and etcd)"
                );
                None
            }
            Err(e) => panic!("{skipped} cannot be skipped: {e}"),
        }
    }

    fn kubectl(&self, kubectl: &Path, args: &[&str], stdin: &str) -> Result<String, String> {
        let mut child = Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Applies Namespaces and CRDs for real (what the rest needs to exist), then every other
    /// object server-side with `--dry-run=server`: the API server validates each against its
    /// schema (`--validate=strict`: an unknown field is an error), admission included, and
    /// stores nothing. Objects of kinds the server does not
    /// serve (prometheus-operator's) are returned, not sent.
    fn apply(&self, kubectl: &Path, objects: &[Value], what: &str) -> Vec<String> {
        let served = |o: &Value| {
            !o["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("monitoring.coreos.com/")
        };
        // A YAML stream of JSON documents (a `List` would be validated by kubectl itself,
        // which does not know nullable enums).
        let as_list = |items: Vec<&Value>| {
            items
                .iter()
                .map(|o| format!("---\n{o}\n"))
                .collect::<String>()
        };
        let first: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Namespace" || o["kind"] == "CustomResourceDefinition")
            .collect();
        if !first.is_empty() {
            self.kubectl(
                kubectl,
                &[
                    "apply",
                    "--server-side",
                    "--validate=strict",
                    "--force-conflicts",
                    "-f",
                    "-",
                ],
                &as_list(first),
            )
            .unwrap_or_else(|e| panic!("{what}: applying the namespaces and CRDs: {e}"));
            self.kubectl(
                kubectl,
                &[
                    "wait",
                    "--for=condition=Established",
                    "crd",
                    "--all",
                    "--timeout=30s",
                ],
                "",
            )
            .unwrap_or_else(|e| panic!("{what}: CRDs not established: {e}"));
        }
        let rest: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] != "Namespace" && o["kind"] != "CustomResourceDefinition")
            .filter(|o| served(o))
            .collect();
        let count = rest.len();
        let out = self
            .kubectl(
                kubectl,
                &[
                    "apply",
                    "--server-side",
                    "--validate=strict",
                    "--dry-run=server",
                    "-f",
                    "-",
                ],
                &as_list(rest),
            )
            .unwrap_or_else(|e| panic!("{what}: the API server refuses it:\n{e}"));
        assert_eq!(
            out.lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            count,
            "{what}: not every object was accepted:\n{out}"
        );
        objects.iter().filter(|o| !served(o)).map(key).collect()
    }
}

#[test]
fn the_chart_and_the_flux_example_are_accepted_by_a_real_api_server() {
    let skipped = "the server-side dry-run of the chart and the Flux example";
    let Some(kubectl) = kubectl(skipped) else {
        return;
    };
    let helms = helms(skipped);
    let Some(server) = ApiServer::start(skipped) else {
        return;
    };
    let base = kustomize(&kubectl, "deploy/base");
    server.apply(&kubectl, &base, "kubectl kustomize deploy/base");
    for (label, helm) in &helms {
        for (variant, values) in variants() {
            let mut values = values.clone();
            // The namespace exists (deploy/base applied it): as after --create-namespace.
            values.retain(|v| *v != "namespace.create=true");
            let mut objects = template(helm, "ecs-power-controller", &values);
            if variant.contains("watched namespace") {
                objects.insert(0, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}));
            }
            let unsent = server.apply(&kubectl, &objects, &format!("{label}, {variant}"));
            if variant.starts_with("monitoring") {
                // No prometheus-operator on this API server: its two objects are checked by
                // shape above (and the PrometheusRule by promtool), not here.
                let unsent: BTreeSet<String> = unsent.into_iter().collect();
                assert_eq!(
                    unsent,
                    [
                        "PrometheusRule/ecs-power-controller",
                        "ServiceMonitor/ecs-power-controller"
                    ]
                    .map(String::from)
                    .into(),
                    "{label}"
                );
            } else {
                assert!(unsent.is_empty(), "{label}, {variant}: {unsent:?}");
            }
        }
    }
    // Flux applies ./deploy/base, then (dependsOn) ./deploy/flux/instances: the instances are
    // accepted once the first has installed the CRDs.
    let instances = kustomize(&kubectl, "deploy/flux/instances");
    server.apply(&kubectl, &instances, "deploy/flux/instances");
}

#[test]
fn the_flux_example_installs_the_controller_first_and_waits_for_the_instances() {
    let Some(kubectl) = kubectl("the Flux example's rendering") else {
        return;
    };
    let objects = kustomize(&kubectl, "deploy/flux");
    let kustomizations: BTreeMap<&str, &Value> = objects
        .iter()
        .filter(|o| o["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1")
        .map(|o| (o["metadata"]["name"].as_str().unwrap(), o))
        .collect();
    let sources: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["apiVersion"] == "source.toolkit.fluxcd.io/v1")
        .map(key)
        .collect();
    assert_eq!(
        kustomizations.keys().copied().collect::<Vec<_>>(),
        ["ecs-instances", "ecs-power-controller"]
    );
    for (name, k) in &kustomizations {
        let spec = &k["spec"];
        assert_eq!(
            spec["wait"], true,
            "{name} must wait (kstatus) for what it applies"
        );
        assert_eq!(spec["prune"], true, "{name}");
        let source = format!(
            "{}/{}",
            spec["sourceRef"]["kind"].as_str().unwrap(),
            spec["sourceRef"]["name"].as_str().unwrap()
        );
        assert!(
            sources.contains(&source),
            "{name}: {source} not in {sources:?}"
        );
        let path = spec["path"].as_str().unwrap().trim_start_matches("./");
        assert!(
            repo().join(path).join("kustomization.yaml").is_file(),
            "{name}: path {path} is not a kustomization in this repository"
        );
        // Flux renders the path as kustomize does.
        assert!(
            !kustomize(&kubectl, path).is_empty(),
            "{name}: {path} renders nothing"
        );
        for d in spec["dependsOn"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap();
            assert!(
                kustomizations.contains_key(dep),
                "{name} depends on unknown {dep}"
            );
        }
    }
    assert_eq!(
        kustomizations["ecs-power-controller"]["spec"]["path"],
        "./deploy/base"
    );
    assert_eq!(
        kustomizations["ecs-instances"]["spec"]["dependsOn"],
        json!([{"name": "ecs-power-controller"}])
    );
    let instances = kustomize(&kubectl, "deploy/flux/instances");
    assert!(instances.iter().any(|o| o["kind"] == "EcsInstance"));
    assert!(
        !instances
            .iter()
            .any(|o| o["kind"] == "CustomResourceDefinition"),
        "the CRDs come from the controller's Kustomization"
    );
}

// ---- alerts ----

fn alerts() -> Vec<Value> {
    let groups = yaml(&format!("{CHART}/files/alerts.yaml"));
    groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn promtool_checks_the_alerts_and_every_alert_fires_and_stays_quiet_in_its_unit_tests() {
    let Some(promtool) = tool(
        "PROMTOOL",
        "promtool",
        Some("promtool"),
        "promtool check/test rules",
    ) else {
        return;
    };
    let rules = format!("{CHART}/files/alerts.yaml");
    let tests = format!("{CHART}/files/alerts_test.yaml");
    let out = run_ok(
        Command::new(&promtool).args(["check", "rules", &rules]),
        "promtool check rules",
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", alerts().len())),
        "{out}"
    );
    run_ok(
        Command::new(&promtool).args(["test", "rules", &tests]),
        "promtool test rules",
    );
    // Every alert has a test where it fires and one where it stays quiet.
    let unit = yaml(&tests);
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in unit["tests"].as_array().unwrap() {
        for a in t["alert_rule_test"].as_array().unwrap() {
            let name = a["alertname"].as_str().unwrap().to_string();
            if a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()) {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let names: BTreeSet<String> = alerts()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fires, names, "alerts without a test that fires them");
    assert_eq!(quiet, names, "alerts without a test where they stay quiet");
}

#[test]
fn every_alert_says_what_happened_and_links_a_runbook_section() {
    let runbooks = read("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let all = alerts();
    assert!(all.len() >= 9, "{all:?}");
    for a in &all {
        let name = a["alert"].as_str().unwrap();
        for field in ["summary", "description", "runbook_url"] {
            assert!(
                a["annotations"][field]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{name}: no {field}"
            );
        }
        let url = a["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix(&format!("{RUNBOOKS}#"))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not into docs/runbooks.md"));
        assert!(
            anchors.contains(anchor),
            "{name}: docs/runbooks.md has no section #{anchor} ({anchors:?})"
        );
        assert!(
            ["critical", "warning"].contains(&a["labels"]["severity"].as_str().unwrap_or("")),
            "{name}"
        );
    }
}

// ---- metric names in PromQL ----

/// The metric names an expression reads: identifiers that are not functions, keywords,
/// label names (inside `{...}` or `by/without (...)`), string contents or durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "absent",
        "absent_over_time",
        "histogram_quantile",
        "label_replace",
        "label_join",
        "vector",
        "scalar",
        "time",
        "timestamp",
        "abs",
        "ceil",
        "floor",
        "round",
        "clamp",
        "clamp_min",
        "clamp_max",
        "sort",
        "sort_desc",
        "min_over_time",
        "max_over_time",
        "avg_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "quantile_over_time",
        "changes",
        "resets",
        "predict_linear",
        "inf",
        "nan",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut in_braces = 0;
    let mut in_brackets = false;
    let mut after_grouping = false;
    let mut in_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            '{' => in_braces += 1,
            '}' => in_braces -= 1,
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            '(' if after_grouping => {
                in_label_list = true;
                after_grouping = false;
            }
            ')' if in_label_list => in_label_list = false,
            '$' => {
                // A Grafana variable ($job, $__rate_interval) is not a metric.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let grouping = [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ];
            if grouping.contains(&word.as_str()) {
                after_grouping = true;
                continue;
            }
            after_grouping = false;
            if in_braces == 0 && !in_brackets && !in_label_list {
                let rest = chars[i..].iter().collect::<String>();
                let is_call = rest.trim_start().starts_with('(');
                if WORDS.contains(&word.as_str()) {
                    // A function, an aggregation or a keyword.
                } else if is_call {
                    panic!(
                        "unknown PromQL function {word} in {expr}: add it to WORDS if it is one"
                    );
                } else {
                    out.insert(word);
                }
            }
            continue;
        }
        if c.is_ascii_digit() {
            // A number or a duration (5m, 1h30m): skip it whole.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    out
}

/// The sample names an exposition offers: each `# TYPE` family with the suffixes of its type.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            out.insert(format!("{name}{s}"));
        }
    }
    out
}

#[test]
fn the_promql_reader_finds_metrics_and_ignores_everything_else() {
    let found = metric_names(
        r#"histogram_quantile(0.99, sum by (le, action) (rate(ecs_power_controller_ecs_call_duration_seconds_bucket{job=~"$job", code!="OK"}[$__rate_interval]))) / on (job) group_left up offset 5m > bool 0.5 unless absent(x_total{a="rate(b)"})"#,
    );
    assert_eq!(
        found,
        [
            "ecs_power_controller_ecs_call_duration_seconds_bucket",
            "up",
            "x_total"
        ]
        .map(String::from)
        .into()
    );
}

/// Every PromQL expression of the dashboard, with its panel's title.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/ecs-power-controller.json")).expect("JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            out.push((title.clone(), t["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

#[test]
fn the_dashboard_shows_what_operators_look_for() {
    let titles: BTreeSet<String> = dashboard_expressions()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    for wanted in [
        "Fleet by condition",
        "Power actions",
        "ECS calls by code",
        "ECS latency percentiles",
        "ECS throttling",
        "Reconciles by result",
        "Leader",
        "Schedule savings over the range (instance-hours)",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted}: {titles:?}");
    }
}

/// The metric families a controller exports once each has a sample (prometheus-client writes
/// no `# TYPE` line for a family without one).
const FAMILIES: &[&str] = &[
    "ecs_power_controller_reconciles",
    "ecs_power_controller_ecs_calls",
    "ecs_power_controller_ecs_call_duration_seconds",
    "ecs_power_controller_objects",
    "ecs_power_controller_schedule_held_stopped_instance_seconds",
    "ecs_power_controller_stalled_objects",
    "ecs_power_controller_reboots_pending",
    "ecs_power_controller_leader",
    "ecs_power_controller_drift_corrections",
];

#[tokio::test]
async fn the_dashboard_and_the_alerts_read_only_metrics_a_running_controller_exports() {
    use ecs_client::InstanceStatus;
    use ecs_power_controller::api::{EcsInstance, EcsPowerSchedule};
    use kube::api::{Api, PostParams};

    // A controller at work on a fleet where every metric has something to say: an instance
    // kept running, one a schedule holds stopped, one that follows a missing schedule
    // (Stalled), and a paused one with a reboot waiting; the running one is stopped behind the
    // controller's back once it is Ready (drift).
    let mut sim = ecs_sim::SimConfig::instant();
    sim.instances = vec![
        ecs_sim::InstanceSpec::new("i-bp1metrics000001", "cn-hangzhou")
            .status(InstanceStatus::Running),
        ecs_sim::InstanceSpec::new("i-bp1metrics000002", "cn-hangzhou")
            .status(InstanceStatus::Stopped),
        {
            // Booted before the reboot below is asked for.
            let mut spec = ecs_sim::InstanceSpec::new("i-bp1metrics000003", "cn-hangzhou")
                .status(InstanceStatus::Running);
            spec.start_time = Some("2026-11-01T00:00Z".into());
            spec
        },
    ];
    let sb = Sandbox::start(sim).await.expect("sandbox");
    let ns = sb.namespace.clone();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let schedule: EcsPowerSchedule = serde_json::from_value(json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1", "kind": "EcsPowerSchedule",
        "metadata": {"name": "closed", "namespace": ns},
        "spec": {"timeZone": "UTC",
                 "running": [{"days": ["Mon"], "from": "08:00", "to": "09:00"}],
                 "exceptions": [{"date": today.to_string(), "powerState": "Stopped"},
                                {"date": today.tomorrow().unwrap().to_string(), "powerState": "Stopped"}]}
    }))
    .unwrap();
    Api::<EcsPowerSchedule>::namespaced(sb.client.clone(), &ns)
        .create(&PostParams::default(), &schedule)
        .await
        .expect("schedule created");
    let instances = Api::<EcsInstance>::namespaced(sb.client.clone(), &ns);
    for obj in [
        json!({"metadata": {"name": "web-1"},
               "spec": {"instanceId": "i-bp1metrics000001", "regionId": "cn-hangzhou", "powerState": "Running"}}),
        json!({"metadata": {"name": "dev-1"},
               "spec": {"instanceId": "i-bp1metrics000002", "regionId": "cn-hangzhou", "scheduleRef": {"name": "closed"}}}),
        json!({"metadata": {"name": "lost-1"},
               "spec": {"instanceId": "i-bp1metrics000004", "regionId": "cn-hangzhou", "scheduleRef": {"name": "missing"}}}),
        json!({"metadata": {"name": "held-1", "annotations": {"ecs.powerctl.io/paused": "true"}},
               "spec": {"instanceId": "i-bp1metrics000003", "regionId": "cn-hangzhou", "powerState": "Running",
                        // A time token written as the object is created, after the last boot:
                        // a request (a plain token present at first sight is adopted as done).
                        "reboot": {"token": jiff::Timestamp::now().to_string()}}}),
    ] {
        let mut obj = obj;
        obj["apiVersion"] = json!("ecs.powerctl.io/v1alpha1");
        obj["kind"] = json!("EcsInstance");
        obj["metadata"]["namespace"] = json!(ns);
        let obj: EcsInstance = serde_json::from_value(obj).unwrap();
        instances
            .create(&PostParams::default(), &obj)
            .await
            .expect("instance created");
    }
    let controller = sb
        .spawn_controller(Config {
            namespace: Some(ns.clone()),
            // Drift is found by the next look.
            resync: Duration::from_secs(1),
            ..Config::default()
        })
        .expect("controller");
    for _ in 0..300 {
        let web = instances.get("web-1").await.expect("web-1");
        let ready = web
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.sim
        .set_status("i-bp1metrics000001", InstanceStatus::Stopped)
        .expect("the instance is known");
    // What /metrics serves (its handler writes `Metrics::encode`), once every family has a
    // sample: the gauges are refreshed every 10 s.
    let missing = |scrape: &str| -> Vec<&str> {
        FAMILIES
            .iter()
            .copied()
            .filter(|f| !scrape.contains(&format!("# TYPE {f} ")))
            .collect()
    };
    let mut scrape = controller.metrics.encode();
    for _ in 0..300 {
        if missing(&scrape).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        scrape = controller.metrics.encode();
    }
    assert!(
        missing(&scrape).is_empty(),
        "no sample of {:?} after 30 s:\n{scrape}",
        missing(&scrape)
    );
    let mut exported = exported(&scrape);
    // Prometheus adds `up` to every scrape target.
    exported.insert("up".to_string());

    let mut read: Vec<(String, String)> = dashboard_expressions()
        .into_iter()
        .map(|(title, e)| (format!("dashboard panel {title}"), e))
        .collect();
    read.extend(alerts().iter().map(|a| {
        (
            format!("alert {}", a["alert"].as_str().unwrap()),
            a["expr"].as_str().unwrap().to_string(),
        )
    }));
    let mut used = BTreeSet::new();
    for (what, expr) in &read {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{what} reads {name}, which the controller does not export: {expr}\nexported: {exported:?}"
            );
            used.insert(name);
        }
    }
    // And the checker is not blind: a renamed metric is caught.
    assert!(!exported.contains("ecs_power_controller_reconciliations_total"));
    for metric in [
        "ecs_power_controller_objects",
        "ecs_power_controller_stalled_objects",
        "ecs_power_controller_reboots_pending",
        "ecs_power_controller_leader",
        "ecs_power_controller_schedule_held_stopped_instance_seconds_total",
        "ecs_power_controller_ecs_call_duration_seconds_bucket",
    ] {
        assert!(used.contains(metric), "nothing reads {metric}");
    }
    controller.stop().await.expect("stops");
    sb.shutdown().await;
}

// ---- Argo CD health checks ----

const ARGOCD: &str = "deploy/argocd/resource_customizations/ecs.powerctl.io";

/// A JSON value as a Lua 5.1 table literal (null becomes nil, as in Argo CD).
fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            32..=126 => out.push(b as char),
            // Control characters and UTF-8 bytes: Lua 5.1's decimal escapes.
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out + "\""
}

/// Runs `health.lua` on `obj` as Argo CD does (the global `obj`, the chunk's return value).
fn argocd_health(lua: &Path, health: &Path, obj: &Value) -> (String, String) {
    let dir = std::env::temp_dir().join(format!(
        "ecs-power-controller-lua-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let obj_file = dir.join("obj.lua");
    std::fs::write(&obj_file, format!("return {}\n", lua_literal(obj))).unwrap();
    let script = format!(
        "obj = dofile({}); local hs = dofile({}); io.write(hs.status, '\\n', hs.message or '')",
        lua_string(obj_file.to_str().unwrap()),
        lua_string(health.to_str().unwrap())
    );
    let out = run_ok(
        Command::new(lua).args(["-e", &script]),
        &format!("lua5.1 {}", health.display()),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (status, message) = out.split_once('\n').expect("status and message");
    (status.to_string(), message.to_string())
}

#[test]
fn the_argo_cd_health_checks_judge_their_testdata_as_argo_cd_expects() {
    let Some(lua) = tool("LUA", "lua5.1", Some("lua5.1"), "the Argo CD health checks") else {
        return;
    };
    let mut statuses = BTreeSet::new();
    for kind in ["EcsInstance", "EcsPowerSchedule"] {
        let dir = repo().join(ARGOCD).join(kind);
        let tests = yaml(&format!("{ARGOCD}/{kind}/health_test.yaml"));
        for t in tests["tests"].as_array().unwrap() {
            let input = t["inputPath"].as_str().unwrap();
            let obj = yaml(&format!("{ARGOCD}/{kind}/{input}"));
            assert_eq!(obj["kind"], kind, "{input}");
            let (status, message) = argocd_health(&lua, &dir.join("health.lua"), &obj);
            assert_eq!(
                (status.as_str(), message.as_str()),
                (
                    t["healthStatus"]["status"].as_str().unwrap(),
                    t["healthStatus"]["message"].as_str().unwrap()
                ),
                "{kind} {input}"
            );
            statuses.insert(format!("{kind}/{status}"));
        }
        // Every testdata file is a test case.
        let listed: BTreeSet<String> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["inputPath"].as_str().unwrap().to_string())
            .collect();
        for f in std::fs::read_dir(dir.join("testdata")).unwrap() {
            let name = format!("testdata/{}", f.unwrap().file_name().to_string_lossy());
            assert!(
                listed.contains(&name),
                "{kind}: {name} is not in health_test.yaml"
            );
        }
    }
    for wanted in [
        "EcsInstance/Healthy",
        "EcsInstance/Progressing",
        "EcsInstance/Degraded",
        "EcsInstance/Suspended",
        "EcsPowerSchedule/Healthy",
        "EcsPowerSchedule/Progressing",
        "EcsPowerSchedule/Degraded",
    ] {
        assert!(
            statuses.contains(wanted),
            "no test case is {wanted}: {statuses:?}"
        );
    }
}

#[test]
fn the_argocd_cm_snippet_carries_the_tested_health_checks() {
    let cm = yaml("deploy/argocd/argocd-cm.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().unwrap();
    for kind in ["EcsInstance", "EcsPowerSchedule"] {
        let key = format!("resource.customizations.health.ecs.powerctl.io_{kind}");
        let lua = read(&format!("{ARGOCD}/{kind}/health.lua"));
        assert!(
            data.get(&key).and_then(Value::as_str) == Some(lua.as_str()),
            "deploy/argocd/argocd-cm.yaml's {key} differs from {ARGOCD}/{kind}/health.lua: run deploy/argocd/generate-argocd-cm.sh"
        );
    }
    assert_eq!(data.len(), 2, "{data:?}");
}

#[test]
fn lua_literals_keep_every_character() {
    let v = json!({"a": [1, 2.5, true, null], "s": "quote \" back \\ new\nline ü"});
    let lit = lua_literal(&v);
    assert!(
        lit.contains(r#"["s"] = "quote \" back \\ new\010line \195\188""#),
        "{lit}"
    );
}
