//! The commands, as an operator runs them: `--help`, `reboot`, `run`'s life cycle,
//! `schedule preview`, `plan`, the kubectl suite (kubectl v1.32 against the demo's API server), and
//! the commands against a hostile API server.

mod help;
mod hostile_api_server;
mod kubectl;
mod plan;
mod reboot;
mod run_lifecycle;
mod schedule_preview;
