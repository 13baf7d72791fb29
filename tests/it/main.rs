//! The integration tests, one binary (each test binary links the product, kubesim and the
//! simulator: one link instead of fifteen). Find a behaviour's test by its folder:
//!
//! - `flows/`: the operator scenarios shared with the real-cluster suite
//!   (`tests/real_cluster.rs`), one file per topic: power, credentials, ECS errors, reboot
//!   tokens, leadership, schedules;
//! - `scenarios/`: those that need kubesim's fault injection or a large fleet: restarts,
//!   tenancy, fleet batching, leader election;
//! - `cli/`: the commands and `kubectl` against them: help, reboot, `run`'s life cycle,
//!   schedule preview, the kubectl suite;
//! - `deploy/`: the manifests under `deploy/` and their RBAC;
//! - `ecs/`: the ECS side: the official SDKs against the simulator, the `ecs` command's
//!   signatures, hostile endpoints;
//! - `support/`: what they share (the `Scenario` a flow runs in, the SDKs' Python).

mod support;

scenario_tests!(crate::support::scenario::Backend::Local);

mod cli;
mod deploy;
mod ecs;
mod flows;
mod scenarios;
