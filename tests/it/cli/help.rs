//! Every flag and argument of every command says what it is for in `--help`: the binary's
//! commands (`run`, `reboot`, `ecs ...`, `demo`...) and the `kubectl ecsi` plugin.

use clap::CommandFactory;
use ecs_power_controller::Cli;
use ecs_power_controller::cli::plugin::PluginCli;

/// `path: --flag` for each argument without help text, in `cmd` and its subcommands.
fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    let path = format!("{path} {}", cmd.get_name()).trim().to_string();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let documented = arg
            .get_help()
            .or(arg.get_long_help())
            .is_some_and(|h| !h.to_string().trim().is_empty());
        if !documented {
            let name = arg
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| id.to_string());
            out.push(format!("{path}: {name}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() != "help" {
            undocumented(sub, &path, out);
        }
    }
}

#[test]
fn every_flag_of_every_command_has_help_text() {
    let mut missing = Vec::new();
    undocumented(&Cli::command(), "", &mut missing);
    undocumented(&PluginCli::command(), "", &mut missing);
    assert!(
        missing.is_empty(),
        "flags without help text:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_command_says_what_it_does() {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        if cmd.get_about().is_none() {
            out.push(path.clone());
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &path, out);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "", &mut missing);
    walk(&PluginCli::command(), "", &mut missing);
    assert!(
        missing.is_empty(),
        "commands without a description: {missing:?}"
    );
}

/// `override --for` longer than 7 days is refused with the bound in the message, before any
/// cluster is asked (none is configured here).
#[test]
fn an_override_longer_than_seven_days_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecs-power-controller"))
        .args(["override", "dev-1", "--state", "Running", "--for", "8d"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--for 192h") && stderr.contains("at most 7 days"),
        "{stderr}"
    );
}
