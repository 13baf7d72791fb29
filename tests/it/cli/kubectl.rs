//! The real `kubectl` against a Sandbox (kubesim + simulator + the controller), as a newcomer
//! uses it after `demo --keep-running`: get with the printer columns (also `-o wide`, `-A`,
//! `-w`), explain, apply (default, strict, server-side) with bad manifests refused naming the
//! field, create/replace, patch then `kubectl wait --for=condition=Ready`, describe and
//! `kubectl events --for` showing the controller's events, create namespace and secret
//! (protobuf bodies), delete, and the `kubectl ecsi` plugin found through `PATH`.
//!
//! Every check but the namespace one and the README session also runs against a real API server
//! (crates/envtest's kube-apiserver, `…::real_api_server`), in a namespace of its own that the
//! session's kubeconfig makes kubectl's default, the examples rewritten into it; skipped with a
//! line when `KUBEBUILDER_ASSETS` is unset outside CI. The namespace check deletes a namespace and
//! expects it gone, which needs a namespace controller envtest does not have; the README session
//! is the demo's by definition.
//!
//! kubectl is on every development and CI machine of this project; when it is missing the
//! suite fails and says how to install it, it never skips.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::scenario::*;
use ecs_client::InstanceStatus;
use ecs_power_controller::demo::Sandbox;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");
const WAIT: Duration = Duration::from_secs(30);

/// kubectl on `PATH`, or a failure that says how to get it.
fn kubectl_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubectl is not on PATH. This suite drives the real kubectl (1.27 or later) \
                 against kubesim, so it cannot run without it: install kubectl (`apt-get install \
                 kubectl` from the Kubernetes apt repository, or a kubectl binary from \
                 https://kubernetes.io/docs/tasks/tools/ placed on PATH) and run `cargo test` again"
            )
        })
}

/// `kubectl ARGS` against `kubeconfig`, with its discovery cache and HOME in `dir` and the
/// plugin directory first on `path`; output piped, killed when dropped.
fn kubectl_command(
    kubectl: &Path,
    kubeconfig: &Path,
    dir: &Path,
    path: &OsString,
    args: &[impl AsRef<std::ffi::OsStr>],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(kubectl);
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", dir.join("cache"))
        .env("HOME", dir)
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `PATH` with a directory holding `kubectl-ecsi` (this binary) first.
fn path_with_plugin(plugins: &Path) -> OsString {
    std::fs::create_dir_all(plugins).unwrap();
    let link = plugins.join("kubectl-ecsi");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, link).unwrap();
    }
    let mut paths = vec![plugins.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// The first line a long-running kubectl (`get -w`) prints, and the lines after it.
async fn first_line(
    mut cmd: tokio::process::Command,
) -> (
    String,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    tokio::process::Child,
) {
    let mut child = cmd.spawn().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("kubectl printed a line in time")
        .unwrap()
        .unwrap_or_default();
    (first, lines, child)
}

/// One kubectl session: its own kubeconfig, discovery cache and `PATH` (with the plugin), and
/// the examples (`deploy/examples`) rewritten into the session's namespace.
struct Session {
    sb: Sandbox,
    kubectl: PathBuf,
    dir: PathBuf,
    path: OsString,
    /// What the real server warned the sandbox's client about (`None` on kubesim).
    warnings: Option<envtest::Warnings>,
    /// The `Warning:` lines kubectl printed, with the command.
    kubectl_warnings: std::sync::Mutex<Vec<String>>,
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Session {
    /// On kubesim (`default`), or on a real API server in a fresh namespace that the session's
    /// kubeconfig makes kubectl's default; `None` (the test is skipped) when there is no real
    /// server to run on.
    async fn start(backend: Backend, instances: Vec<ecs_sim::InstanceSpec>) -> Option<Session> {
        let kubectl = kubectl_binary();
        let dir = std::env::temp_dir().join(format!(
            "ecs-power-controller-kubectl-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (sb, warnings) = match backend {
            Backend::Local => (sandbox(Backend::Local, instances).await, None),
            Backend::Cluster => {
                let server = real_server_or_skip("kubectl on a real API server")?;
                let (sb, warnings) = real_sandbox(server, instances).await;
                (sb, Some((server, warnings)))
            }
        };
        // kubectl finds `kubectl-ecsi` on PATH; the binary answers to that name.
        let path = path_with_plugin(&dir.join("bin"));
        let kubeconfig = dir.join("kubeconfig");
        let warnings = match warnings {
            None => {
                local(&sb).write_kubeconfig(&kubeconfig).unwrap();
                None
            }
            Some((server, warnings)) => {
                std::fs::copy(server.kubeconfig_path(), &kubeconfig).unwrap();
                let set = std::process::Command::new(&kubectl)
                    .args(["config", "set-context", "--current"])
                    .arg(format!("--namespace={}", sb.namespace))
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
                    .unwrap();
                assert!(set.status.success(), "{set:?}");
                Some(warnings)
            }
        };
        let examples = dir.join("examples");
        std::fs::create_dir_all(&examples).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap().path();
            let text = std::fs::read_to_string(&entry).unwrap();
            let text = text.replace(
                "namespace: default",
                &format!("namespace: {}", sb.namespace),
            );
            std::fs::write(examples.join(entry.file_name().unwrap()), text).unwrap();
        }
        Some(Session {
            sb,
            kubectl,
            dir,
            path,
            warnings,
            kubectl_warnings: Default::default(),
        })
    }

    /// `deploy/examples/NAME` in the session's namespace (`""`: the directory).
    fn example(&self, name: &str) -> String {
        self.dir.join("examples").join(name).display().to_string()
    }

    /// The session's namespace: `default` on kubesim.
    fn ns(&self) -> &str {
        &self.sb.namespace
    }

    /// A session whose controller runs and whose `web-1` (deploy/examples/running.yaml) was
    /// applied with kubectl and is Ready.
    async fn with_web1_ready(
        backend: Backend,
        instances: Vec<ecs_sim::InstanceSpec>,
    ) -> Option<(Session, ecs_power_controller::demo::RunningController)> {
        let s = Session::start(backend, instances).await?;
        let controller = s.sb.spawn_controller(fast_options(&s.sb)).unwrap();
        s.ok(&["apply", "-f", &s.example("running.yaml")]).await;
        s.wait("condition=Ready", "ecsi/web-1").await;
        Some((s, controller))
    }

    /// `kubectl wait --for=FOR TARGET --timeout=30s`.
    async fn wait(&self, condition: &str, target: &str) {
        let r#for = format!("--for={condition}");
        self.ok(&["wait", &r#for, target, "--timeout=30s"]).await;
    }

    /// `kubectl ARGS` in this session's environment.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        kubectl_command(
            &self.kubectl,
            &self.dir.join("kubeconfig"),
            &self.dir,
            &self.path,
            args,
        )
    }

    /// `kubectl ARGS`; stdin from `input` if given.
    async fn run(&self, args: &[&str], input: Option<&str>) -> Run {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = self.command(args);
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl starts");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(text) = input {
            stdin.write_all(text.as_bytes()).await.unwrap();
        }
        drop(stdin);
        let out = tokio::time::timeout(WAIT * 2, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.kubectl_warnings.lock().unwrap().extend(
            envtest::kubectl_warnings(&stderr)
                .into_iter()
                .map(|w| format!("kubectl {args:?}: {w}")),
        );
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args, None).await;
        assert!(r.ok, "kubectl {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }

    /// `kubectl ARGS` until it succeeds (within [`WAIT`]); its stdout. For what a real server
    /// publishes a little after the CRD is Established: its schema in the OpenAPI documents
    /// that `kubectl explain` reads.
    async fn eventually_ok(&self, args: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self.run(args, None).await;
            if r.ok {
                return r.stdout;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "kubectl {args:?} failed:\n{}\n{}",
                r.stdout,
                r.stderr
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `kubectl ARGS`, which must fail; its stderr.
    async fn fails(&self, args: &[&str], input: Option<&str>) -> String {
        let r = self.run(args, input).await;
        assert!(!r.ok, "kubectl {args:?} should have failed:\n{}", r.stdout);
        r.stderr
    }

    /// Removes the session's files and shuts the sandbox down (on a real server: what the
    /// session made in its namespace, then the namespace); any warning the real server sent
    /// the sandbox's client fails the test.
    async fn end(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.sb.shutdown().await;
        if let Some(warnings) = self.warnings {
            assert_eq!(warnings.take(), Vec::new(), "the server's warnings");
            // kubectl's own warning when `apply` meets an object `create`d earlier (the apply
            // check does this on purpose) is not the server's.
            let printed: Vec<String> = self
                .kubectl_warnings
                .into_inner()
                .unwrap()
                .into_iter()
                .filter(|w| {
                    !w.contains("missing the kubectl.kubernetes.io/last-applied-configuration")
                })
                .collect();
            assert_eq!(printed, Vec::<String>::new(), "warnings kubectl printed");
        }
    }
}

/// `mod NAME { kubesim, real_api_server }`: the check `NAME(backend)` on kubesim and on a real
/// API server (crates/envtest's; skipped with a line when `KUBEBUILDER_ASSETS` is unset).
macro_rules! on_both_servers {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kubesim() {
                super::$name(Backend::Local).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real_api_server() {
                super::$name(Backend::Cluster).await;
            }
        }
    };
}

/// The instance `deploy/examples/running.yaml` and `stopped.yaml` name.
fn example_instances() -> Vec<ecs_sim::InstanceSpec> {
    vec![
        instance("i-bp1demorunning01", InstanceStatus::Running),
        instance("i-bp1demostopped01", InstanceStatus::Running),
    ]
}

/// Column headers and the row of `name` in a `kubectl get` table.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().any(|c| c == name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
        .split_whitespace()
        .collect()
}

fn headers(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

on_both_servers!(get_shows_the_printer_columns_wide_across_namespaces_and_while_watching);

async fn get_shows_the_printer_columns_wide_across_namespaces_and_while_watching(backend: Backend) {
    let Some((s, controller)) = Session::with_web1_ready(backend, example_instances()).await else {
        return;
    };

    let table = s.ok(&["get", "ecsi"]).await;
    assert_eq!(
        headers(&table),
        [
            "NAME", "INSTANCE", "REGION", "DESIRED", "SCHEDULE", "ACTUAL", "READY", "REASON", "AGE"
        ]
    );
    // web-1 follows no schedule: its SCHEDULE cell is blank (the server sends null).
    let r = row(&table, "web-1");
    assert_eq!(
        r[..7],
        [
            "web-1",
            "i-bp1demorunning01",
            "cn-hangzhou",
            "Running",
            "Running",
            "True",
            "InstanceRunning"
        ]
    );
    assert!(
        r[7].ends_with('s') || r[7].ends_with('m'),
        "an age: {}",
        r[7]
    );

    let wide = s.ok(&["get", "ecsinstances", "-o", "wide", "-A"]).await;
    assert_eq!(headers(&wide)[..2], ["NAMESPACE", "NAME"]);
    // All namespaces: on a shared real server, other sessions' web-1 too; this one's is there.
    let mine = wide
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&s.ns()) && cells.get(1) == Some(&"web-1"))
        .unwrap_or_else(|| panic!("no row for {}/web-1 in\n{wide}", s.ns()));
    assert_eq!(mine[2], "i-bp1demorunning01");

    // `get -w`: the table, then a row for each change (here: asking for Stopped).
    let (first, mut lines, child) =
        first_line(s.command(&["get", "ecsi", "web-1", "-w", "--request-timeout=0"])).await;
    assert!(first.starts_with("NAME "), "{first}");
    s.ok(&[
        "patch",
        "ecsi",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"powerState":"Stopped"}}"#,
    ])
    .await;
    let stopped = tokio::time::timeout(WAIT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the watch goes on");
            let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if cells.get(4).map(String::as_str) == Some("Stopped") && cells[5] == "True" {
                return cells;
            }
        }
    })
    .await
    .expect("the watch shows the instance stopped and Ready");
    assert_eq!(
        stopped[..4],
        ["web-1", "i-bp1demorunning01", "cn-hangzhou", "Stopped"]
    );
    drop(child);
    controller.stop().await.unwrap();
    s.end().await;
}

on_both_servers!(explain_reads_the_descriptions_from_the_crd);

async fn explain_reads_the_descriptions_from_the_crd(backend: Backend) {
    let Some(s) = Session::start(backend, Vec::new()).await else {
        return;
    };
    let out = s.eventually_ok(&["explain", "ecsi.spec.reboot"]).await;
    assert!(out.contains("KIND:       EcsInstance"), "{out}");
    assert!(out.contains("FIELD: reboot <Object>"), "{out}");
    assert!(out.contains("token\t<string> -required-"), "{out}");
    assert!(
        out.contains("Any new value asks for exactly one reboot"),
        "{out}"
    );
    let top = s.ok(&["explain", "ecsinstances"]).await;
    assert!(
        top.contains("Declares the power state of one Alibaba Cloud ECS instance."),
        "{top}"
    );
    let secret = s.ok(&["explain", "secret.stringData"]).await;
    assert!(
        secret.contains("FIELD: stringData <map[string]string>"),
        "{secret}"
    );
    s.end().await;
}

const BAD_FIELD: &str = "apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsInstance
metadata:
  name: web-9
spec:
  instanceId: i-bp1demorunning01
  regionId: cn-hangzhou
  powerState: Running
  rebooot: {token: a}
";

const BAD_VALUE: &str = "apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsInstance
metadata:
  name: web-9
spec:
  instanceId: i-bp1demorunning01
  regionId: cn-hangzhou
  powerState: Sleeping
";

on_both_servers!(apply_create_and_replace_validate_on_the_server_and_name_the_bad_field);

async fn apply_create_and_replace_validate_on_the_server_and_name_the_bad_field(backend: Backend) {
    let Some(s) = Session::start(backend, example_instances()).await else {
        return;
    };
    let running = s.example("running.yaml");
    assert_eq!(
        s.ok(&["apply", "-f", &running]).await.trim(),
        "ecsinstance.ecs.powerctl.io/web-1 created"
    );
    assert_eq!(
        s.ok(&["apply", "-f", &running]).await.trim(),
        "ecsinstance.ecs.powerctl.io/web-1 unchanged"
    );
    assert!(
        s.ok(&["apply", "--validate=strict", "-f", &running])
            .await
            .contains("unchanged")
    );
    assert!(
        s.ok(&["apply", "--server-side", "-f", &running])
            .await
            .contains("serverside-applied")
    );
    assert!(
        s.ok(&["replace", "-f", &running])
            .await
            .contains("web-1 replaced")
    );
    assert!(
        s.ok(&["create", "-f", &s.example("stopped.yaml")])
            .await
            .contains("batch-1 created")
    );

    // Unknown fields are refused by name, whichever way the manifest is sent.
    for args in [
        &["apply", "-f", "-"][..],
        &["apply", "--validate=strict", "-f", "-"],
        &["apply", "--server-side", "-f", "-"],
        &["create", "-f", "-"],
    ] {
        let err = s.fails(args, Some(BAD_FIELD)).await;
        // A real server's server-side apply words it its own way (structured-merge-diff's
        // typed patch); kubesim says it as the other paths do.
        let real_ssa = matches!(backend, Backend::Cluster) && args.contains(&"--server-side");
        let expected = if real_ssa {
            ".spec.rebooot: field not declared in schema"
        } else {
            r#"unknown field "spec.rebooot""#
        };
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // A bad value is refused with the field and what it may be.
    let err = s.fails(&["apply", "-f", "-"], Some(BAD_VALUE)).await;
    assert!(err.contains("spec.powerState"), "{err}");
    assert!(err.contains(r#"Unsupported value: "Sleeping""#), "{err}");
    // Both a fixed powerState and a schedule: the CEL rule says to pick one.
    let both = BAD_VALUE.replace("Sleeping", "Running") + "  scheduleRef: {name: office-hours}\n";
    let err = s.fails(&["apply", "-f", "-"], Some(both.as_str())).await;
    assert!(
        err.contains("set exactly one of spec.powerState") && err.contains("spec.scheduleRef"),
        "{err}"
    );
    // Only --validate=false lets the unknown field through (pruned, as a real server does).
    assert!(
        s.run(&["apply", "--validate=false", "-f", "-"], Some(BAD_FIELD))
            .await
            .ok,
        "--validate=false applies"
    );
    let stored = s
        .ok(&["get", "ecsi", "web-9", "-o", "jsonpath={.spec}"])
        .await;
    assert!(!stored.contains("rebooot"), "{stored}");

    // A kustomization applies too.
    let all = s.ok(&["apply", "-k", &s.example("")]).await;
    assert!(
        all.contains("ecsinstance.ecs.powerctl.io/app-1 created"),
        "{all}"
    );
    assert!(
        s.ok(&["delete", "-f", &running])
            .await
            .contains(r#""web-1" deleted"#)
    );
    let err = s.fails(&["get", "ecsi", "web-1"], None).await;
    assert!(err.contains("NotFound"), "{err}");
    s.end().await;
}

on_both_servers!(patch_wait_describe_and_events_show_what_the_controller_did);

async fn patch_wait_describe_and_events_show_what_the_controller_did(backend: Backend) {
    let Some((s, controller)) = Session::with_web1_ready(backend, example_instances()).await else {
        return;
    };
    s.ok(&[
        "patch",
        "ecsi",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"reboot":{"token":"kubectl-1"}}}"#,
    ])
    .await;
    s.wait("jsonpath={.status.lastRebootToken}=kubectl-1", "ecsi/web-1")
        .await;
    s.wait("condition=Ready", "ecsi/web-1").await;
    let described = s.ok(&["describe", "ecsi", "web-1"]).await;
    let events = described
        .split("\nEvents:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section:\n{described}"));
    assert!(!events.contains("<none>"), "{described}");
    assert!(events.contains("ecs-power-controller"), "{events}");
    assert!(events.contains("RequestId"), "{events}");

    // A dry run looked at again (here: after a spec edit) makes another ECS request with the
    // same kind of event: each RequestId can still be quoted to support.
    let dry_run = "apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsInstance
metadata: {name: canary-1}
spec: {instanceId: i-bp1demostopped01, regionId: cn-hangzhou, powerState: Stopped, dryRun: true}
";
    assert!(s.run(&["apply", "-f", "-"], Some(dry_run)).await.ok);
    let dry_runs = || -> Vec<String> {
        s.sb.sim
            .calls()
            .log()
            .into_iter()
            .filter(|c| c.action == Some(ecs_sim::Action::StopInstance))
            .map(|c| c.request_id)
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut edited = false;
    loop {
        let ids = dry_runs();
        let described = s.ok(&["describe", "ecsi", "canary-1"]).await;
        let events = described.split("\nEvents:").nth(1).unwrap_or_default();
        let shown = ids.iter().filter(|id| events.contains(id.as_str())).count();
        if ids.len() >= 2 && shown == ids.len() {
            break;
        }
        if ids.len() == 1 && shown == 1 && !edited {
            s.ok(&[
                "patch",
                "ecsi",
                "canary-1",
                "--type=merge",
                "-p",
                r#"{"spec":{"stop":{"force":true}}}"#,
            ])
            .await;
            edited = true;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dry-run RequestIds {ids:?}, {shown} of them in the events:{events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let for_it = s.ok(&["events", "--for", "ecsi/web-1"]).await;
    assert_eq!(
        headers(&for_it),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(for_it.contains("EcsInstance/web-1"), "{for_it}");
    let listed = s
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web-1",
        ])
        .await;
    assert!(listed.contains("ecsinstance/web-1"), "{listed}");
    controller.stop().await.unwrap();
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace_secret_and_configmap_then_delete_them() {
    // kubesim only: a real server without a namespace controller (envtest) keeps a deleted
    // namespace Terminating, so its last step (NotFound) is kubesim's alone.
    let s = Session::start(Backend::Local, Vec::new()).await.unwrap();
    assert_eq!(
        s.ok(&["create", "namespace", "team-z"]).await.trim(),
        "namespace/team-z created"
    );
    assert_eq!(
        s.ok(&[
            "create",
            "secret",
            "generic",
            "ecs-credentials",
            "-n",
            "team-z",
            "--from-literal=accessKeyId=LTAI-test",
            "--from-literal=accessKeySecret=s3cr3t"
        ])
        .await
        .trim(),
        "secret/ecs-credentials created"
    );
    assert_eq!(
        s.ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "team-z",
            "--from-literal=a=b"
        ])
        .await
        .trim(),
        "configmap/settings created"
    );
    let key = s
        .ok(&[
            "get",
            "secret",
            "ecs-credentials",
            "-n",
            "team-z",
            "-o",
            "jsonpath={.data.accessKeyId}",
        ])
        .await;
    assert_eq!(key, "TFRBSS10ZXN0", "base64 of LTAI-test");
    let namespaces = s.ok(&["get", "namespaces"]).await;
    assert_eq!(headers(&namespaces), ["NAME", "AGE"]);
    row(&namespaces, "team-z");
    s.ok(&["delete", "secret", "ecs-credentials", "-n", "team-z"])
        .await;
    s.ok(&["delete", "namespace", "team-z"]).await;
    let err = s.fails(&["get", "namespace", "team-z"], None).await;
    assert!(err.contains("NotFound"), "{err}");
    s.end().await;
}

on_both_servers!(the_ecsi_plugin_reboots_pauses_resumes_and_summarizes_through_kubectl);

async fn the_ecsi_plugin_reboots_pauses_resumes_and_summarizes_through_kubectl(backend: Backend) {
    let Some((s, controller)) = Session::with_web1_ready(
        backend,
        vec![
            instance("i-bp1demorunning01", InstanceStatus::Running),
            instance("i-bp1demolocked001", InstanceStatus::Stopped).lock("security"),
        ],
    )
    .await
    else {
        return;
    };
    let ns = s.ns().to_string();
    let locked = "apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsInstance
metadata: {name: locked-1}
spec: {instanceId: i-bp1demolocked001, regionId: cn-hangzhou, powerState: Running}
";
    assert!(s.run(&["apply", "-f", "-"], Some(locked)).await.ok);
    s.wait("condition=Stalled", "ecsi/locked-1").await;

    let help = s.ok(&["ecsi", "--help"]).await;
    assert!(help.contains("reboot") && help.contains("status"), "{help}");

    let out = s.ok(&["ecsi", "reboot", "web-1", "--hard"]).await;
    assert!(
        out.contains(&format!(
            "ecsinstance {ns}/web-1 hard reboot (power cycle) requested"
        )),
        "{out}"
    );
    let mode = s
        .ok(&["get", "ecsi", "web-1", "-o", "jsonpath={.spec.reboot.mode}"])
        .await;
    assert_eq!(mode, "Hard");

    let out = s.ok(&["ecsi", "pause", "web-1"]).await;
    assert!(
        out.contains(&format!("ecsinstance {ns}/web-1 paused")),
        "{out}"
    );
    let annotation = s
        .ok(&[
            "get",
            "ecsi",
            "web-1",
            "-o",
            r"jsonpath={.metadata.annotations.ecs\.powerctl\.io/paused}",
        ])
        .await;
    assert_eq!(annotation, "true");

    let status = s.ok(&["ecsi", "status"]).await;
    assert!(
        status.starts_with(&format!("EcsInstances in namespace {ns}: 2\n")),
        "{status}"
    );
    assert!(
        status.contains(&format!("Stalled, needs a person (1):\n  {ns}/locked-1  ")),
        "{status}"
    );
    assert!(
        status.contains(&format!("Paused (1):\n  {ns}/web-1")),
        "{status}"
    );

    assert!(s.ok(&["ecsi", "resume", "web-1"]).await.contains("resumed"));
    let annotations = s
        .ok(&[
            "get",
            "ecsi",
            "web-1",
            "-o",
            "jsonpath={.metadata.annotations}",
        ])
        .await;
    assert!(!annotations.contains("paused"), "{annotations}");

    let err = s.fails(&["ecsi", "reboot", "nope"], None).await;
    assert!(
        err.contains(&format!("EcsInstance {ns}/nope not found")),
        "{err}"
    );
    controller.stop().await.unwrap();
    s.end().await;
}

on_both_servers!(the_ecsi_plugin_plans_the_demos_objects_through_kubectl);

/// `kubectl ecsi plan` of the demo's objects (`deploy/examples`, applied with `kubectl apply
/// -k`), as JSON and as the table; no controller is needed to plan.
async fn the_ecsi_plugin_plans_the_demos_objects_through_kubectl(backend: Backend) {
    let Some(s) = Session::start(backend, Vec::new()).await else {
        return;
    };
    let ns = s.ns().to_string();
    s.ok(&["apply", "-k", &s.example("")]).await;
    let plan = [
        "ecsi",
        "plan",
        "--from",
        "2026-12-24T00:00:00Z",
        "--for",
        "24h",
    ];
    let json = s.ok(&[&plan[..], &["-o", "json"]].concat()).await;
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    super::plan::assert_demo_plan(&document, &ns);
    // The calendar comes from the cluster too.
    let json = s
        .ok(&[
            "ecsi",
            "plan",
            "--from",
            super::plan::LABOUR_DAY_FROM,
            "-o",
            "json",
        ])
        .await;
    super::plan::assert_labour_day(&serde_json::from_str(&json).unwrap());

    let table = s.ok(&plan).await;
    assert!(
        table.starts_with(&format!(
            "Power changes of the EcsInstances in namespace {ns}, after 2026-12-24 00:00Z until 2026-12-25 00:00Z: 3\n"
        )),
        "{table}"
    );
    assert!(table.contains(&format!("{ns}/dev-1")), "{table}");
    let err = s.fails(&["ecsi", "plan", "--for=-1h"], None).await;
    assert!(err.contains("--for"), "{err}");
    s.end().await;
}

/// The kubectl lines of the README's "kubectl against the demo" session.
fn readme_session() -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- kubectl session: tests/it/cli/kubectl.rs")
        .expect("the README's kubectl session marker");
    let block = readme[start..]
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the session's sh block");
    block
        .lines()
        .map(|l| l.split("  #").next().unwrap_or_default().trim())
        .filter(|l| l.starts_with("kubectl "))
        .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_session_works_against_demo_keep_running_as_written() {
    let session = readme_session();
    assert!(session.len() >= 10, "{session:?}");
    let kubectl = kubectl_binary();
    // `cargo run -- demo --keep-running`, as the README says, from the repository root.
    let mut demo = tokio::process::Command::new(BIN)
        .args(["demo", "--keep-running"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(demo.stdout.take().unwrap()));
    let kubeconfig = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let line = out
                .next_line()
                .await
                .unwrap()
                .expect("the demo keeps running");
            if let Some(path) = line.split_whitespace().find(|w| w.ends_with("/kubeconfig")) {
                return PathBuf::from(path);
            }
        }
    })
    .await
    .expect("the demo settles and prints its kubeconfig");
    // Drain the demo's output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });

    let dir = kubeconfig.parent().unwrap().join("kubectl-session");
    let path = path_with_plugin(&dir.join("bin"));
    for args in &session {
        let cmd = kubectl_command(&kubectl, &kubeconfig, &dir, &path, args);
        if args.iter().any(|a| a == "-w") {
            // A watch runs until Ctrl-C: it must print the table's header, then it is stopped.
            let (first, _, _) = first_line(cmd).await;
            assert!(first.starts_with("NAME "), "kubectl {args:?}: {first}");
            continue;
        }
        let mut cmd = cmd;
        // Longer than any `--timeout` in the session (150 s for the deferred reboot).
        let done = tokio::time::timeout(WAIT * 6, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&done.stdout);
        assert!(
            done.status.success(),
            "README line `kubectl {}` failed:\n{stdout}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&done.stderr)
        );
        match args[0].as_str() {
            "get" => assert!(stdout.contains("INSTANCE"), "{stdout}"),
            "describe" => assert!(stdout.contains("RequestId"), "{stdout}"),
            "ecsi" if args[1] == "status" => {
                assert!(stdout.contains("Stalled, needs a person"), "{stdout}")
            }
            "ecsi" if args[1] == "plan" => {
                assert!(stdout.contains("/dev-1"), "{stdout}")
            }
            _ => {}
        }
    }
    demo.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(kubeconfig.parent().unwrap());
}
