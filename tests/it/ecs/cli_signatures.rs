//! The `ecs` CLI against a server that verifies signatures with the official SDKs' own code
//! (`tests/it/ecs/sdk/verify_server.py`): every command, both signature versions, accepted; a wrong
//! secret refused with the one-line error an operator reads.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const ACCESS_KEY_ID: &str = "LTAI5tCliSignatureTest";
const ACCESS_KEY_SECRET: &str = "cli-signature-test-secret";
const INSTANCE: &str = "i-bp67acfmxazb4ph1234";

/// The verifying server; killed when dropped.
struct VerifyServer {
    child: Child,
    url: String,
}

impl VerifyServer {
    fn start() -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ecs/sdk/verify_server.py");
        let mut child = Command::new(crate::support::python::sdk_python())
            .arg(script)
            .args([ACCESS_KEY_ID, ACCESS_KEY_SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the verify server starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the verify server prints its port");
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for VerifyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the real binary with only the credentials we give it (no chain surprises).
fn ecs(server: &VerifyServer, secret: &str, version: &str, args: &[&str]) -> Output {
    ecs_command(server, secret, version, args)
        .output()
        .expect("the CLI runs")
}

fn ecs_command(server: &VerifyServer, secret: &str, version: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecs-power-controller"));
    command
        .arg("ecs")
        .args(args)
        .args(["--region", "cn-hangzhou", "--ecs-endpoint", &server.url])
        .args(["--signature-version", version])
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_is_accepted_by_the_official_sdk_verifier_with_v3_and_v1() {
    let server = VerifyServer::start();
    let commands: [&[&str]; 6] = [
        &[
            "describe",
            "--instance-id",
            INSTANCE,
            "--instance-id",
            "i-second",
            "--output",
            "json",
        ],
        &["start", "--instance-id", INSTANCE, "--init-local-disk"],
        &[
            "stop",
            "--instance-id",
            INSTANCE,
            "--force",
            "--stopped-mode",
            "StopCharging",
        ],
        &["reboot", "--instance-id", INSTANCE, "--force"],
        &["describe", "--instance-id", INSTANCE],
        &["reboot", "--instance-id", INSTANCE, "--dry-run"],
    ];
    for version in ["v3", "v1"] {
        for args in commands {
            let out = ecs(&server, ACCESS_KEY_SECRET, version, args);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(out.status.success(), "{version} {args:?} failed: {stderr}");
            assert!(
                stderr.is_empty(),
                "{version} {args:?} wrote to stderr: {stderr}"
            );
            match args[0] {
                "describe" if args.contains(&"json") => {
                    let lines: Vec<serde_json::Value> = stdout
                        .lines()
                        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
                        .collect();
                    assert_eq!(lines.len(), 2);
                    assert_eq!(lines[0]["InstanceId"], INSTANCE);
                    assert_eq!(lines[0]["Status"], "Running");
                    assert_eq!(lines[0]["StartTime"], "2026-11-22T08:00Z");
                    assert_eq!(lines[0]["LockReasons"], serde_json::json!([]));
                }
                "describe" => assert!(
                    stdout.contains(INSTANCE) && stdout.contains("Running"),
                    "{stdout}"
                ),
                _ if args.contains(&"--dry-run") => {
                    assert!(stdout.starts_with("dry run passed"), "{stdout}")
                }
                _ => assert!(
                    stdout.contains("accepted for i-bp67acfmxazb4ph1234"),
                    "{stdout}"
                ),
            }
        }
    }
}

#[test]
fn temporary_credentials_sign_their_security_token_in_both_versions() {
    let server = VerifyServer::start();
    for version in ["v3", "v1"] {
        let out = ecs_command(
            &server,
            ACCESS_KEY_SECRET,
            version,
            &["describe", "--instance-id", INSTANCE],
        )
        .env("ALIBABA_CLOUD_SECURITY_TOKEN", "CAIS+sts/token==")
        .output()
        .expect("the CLI runs");
        assert!(out.status.success(), "{version}: {}", text(&out.stderr));
    }
}

#[test]
fn a_wrong_secret_is_refused_with_one_line_naming_the_code() {
    let server = VerifyServer::start();
    for version in ["v3", "v1"] {
        let out = ecs(
            &server,
            "not-the-secret",
            version,
            &["stop", "--instance-id", INSTANCE],
        );
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("SignatureDoesNotMatch: "), "{stderr}");
        assert!(stderr.contains("(RequestId "), "{stderr}");
        assert!(!stderr.contains("not-the-secret"), "{stderr}");
    }
}
