//! ecs-power-controller: keeps Alibaba Cloud ECS instances in the power state their
//! `EcsInstance` objects declare.
//!
//! Layout by concern: [`api`] (the CRD types), [`controller`] (what runs in the cluster:
//! `k8s`, `reconcile`, `admission`, `ecs`, see its docs), [`schedule`] (evaluating an
//! EcsPowerSchedule: windows, exceptions, overrides; pure), `plan` (the coming power changes
//! of a fleet, for `plan`; pure), [`cli`] (every command, the
//! `kubectl ecsi` plugin among them), [`telemetry`] (logs and metrics). The ECS client lives
//! in the `ecs-client` crate. With the default `dev-tools` feature: [`demo`] (the no-cluster
//! quick start and the [`demo::Sandbox`] the tests share) and `bench`, built on the `ecs-sim`
//! and `kubesim` crates.
//!
//! Almost everything is `pub(crate)` (and `unreachable_pub` is denied, so it stays that way).
//! What is public is what the binary and the integration tests need:
//! - [`Cli`], the command line `main` parses and runs, and the library halves of its commands
//!   ([`cli::request_reboot`], [`cli::request_override`]) and [`cli::plugin`];
//! - [`api`], the CRD types (the resource's contract with its users), and [`schedule`], the
//!   pure evaluation of an EcsPowerSchedule;
//! - [`controller::Config`] and its parts, to run the controller with test timings;
//! - [`demo::Sandbox`], the local stack the scenario tests stand on, and
//!   [`telemetry::Metrics`], which a running controller exposes.

#![deny(unreachable_pub)]

// Every item of `api` is public (the CRD types are the resource's contract), but kube's
// `KubeSchema` derive (the `x_kube` CEL rules) copies a `pub` struct into a function body to
// build its schema, and `unreachable_pub` flags that copy.
#[allow(unreachable_pub)]
pub mod api;
#[cfg(feature = "dev-tools")]
mod bench;
pub mod cli;
pub mod controller;
#[cfg(feature = "dev-tools")]
pub mod demo;
// Ordered start and stop (`spec.startAfter`), pure: the reconcile and the `plan` command read it.
pub(crate) mod ordering;
mod plan;
pub mod schedule;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;

pub use cli::Cli;
