//! The commands, as an operator runs them: `--help`, `reboot`, `run`'s life cycle,
//! `schedule preview`, and the kubectl suite (kubectl v1.32 against the demo's API server).

mod help;
mod kubectl;
mod reboot;
mod run_lifecycle;
mod schedule_preview;
