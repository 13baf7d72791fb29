//! The scenarios an operator cares about, written once and run on two backends: the in-process
//! Kubernetes API server (`tests/it`, every `cargo test`) and a real cluster
//! (`tests/real_cluster.rs`). The ECS side is always the local simulator, so its faults work on
//! both. One file per topic.
//!
//! Each `flow!(name, async |s| …)` is one test per backend: the crate that includes this module
//! defines `flow!` first (see `support::scenario_tests!`); `s` is a fresh `Scenario`, torn down
//! when the flow ends or panics.
//!
//! No flow asserts how long something took: a loaded machine only makes things slower, so the
//! only timing checks here are lower bounds ("not before the window ends"). When a retry is due,
//! how long a backoff lasts, when a lease expires: those are unit tests of the pure functions
//! that decide them (`reconcile::ecs_retry`, `reconcile::decide`, `k8s::leader`).

use std::time::Duration;

mod calendars;
mod credentials;
mod ecs_errors;
mod leadership;
mod ordering;
mod power;
mod reboot_tokens;
pub(crate) mod schedules;

/// How long a flow watches for calls that must not come (they would come at once).
const QUIET: Duration = Duration::from_millis(500);
