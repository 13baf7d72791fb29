//! ecs-power-controller: keeps Alibaba Cloud ECS instances in the power state their
//! `EcsInstance` objects declare.
//!
//! Layout by concern: [`api`] (the CRD types), [`controller`] (decide, reconcile, status,
//! backoff), [`schedule`] (power schedules: windows, exceptions, overrides; pure),
//! `telemetry` (logs and metrics). The ECS client lives in the `ecs-client` crate.
//! With the default `dev-tools` feature: [`demo`] (the no-cluster quick start and the
//! [`demo::Sandbox`] the tests share) and `bench`, built on the `ecs-sim` and `kubesim` crates.
//!
//! Almost everything is `pub(crate)`. What is public is what the binary and the integration
//! tests need:
//! - [`Cli`], the command line `main` parses and runs;
//! - [`api`], the CRD types (the resource's contract with its users), and [`schedule`], the
//!   pure evaluation of an EcsPowerSchedule;
//! - [`controller::Config`] and its parts, to run the controller with test timings;
//!   [`controller::request_reboot`], the `reboot` command's library half, and
//!   [`override_cmd::request_override`], the `override` command's;
//! - [`plugin`], the `kubectl ecsi` plugin `main` dispatches to when invoked as `kubectl-ecsi`;
//! - [`demo::Sandbox`], the local stack the scenario tests stand on, and
//!   [`telemetry::Metrics`], which a running controller exposes.

pub mod api;
#[cfg(feature = "dev-tools")]
mod bench;
mod command;
pub mod controller;
mod crd_cmd;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod override_cmd;
pub mod plugin;
pub mod schedule;
mod schedule_cmd;
mod target;
pub mod telemetry;

pub use command::Cli;
