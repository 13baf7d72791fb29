//! ecs-power-controller: keeps Alibaba Cloud ECS instances in the power state their
//! `EcsInstance` objects declare.
//!
//! Layout by concern: [`api`] (the CRD types), [`controller`] (decide, reconcile, status,
//! backoff), [`telemetry`] (logs and metrics). The ECS client lives in the `ecs-client` crate.
//! With the default `dev-tools` feature: [`demo`] (the no-cluster quick start and the
//! [`demo::Sandbox`] the tests share) and [`bench`], built on the `ecs-sim` and `kubesim` crates.

pub mod api;
#[cfg(feature = "dev-tools")]
pub mod bench;
pub mod cli;
pub mod controller;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod plugin;
pub mod telemetry;
