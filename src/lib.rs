//! ecs-power-controller: keeps Alibaba Cloud ECS instances in the power state their
//! `EcsInstance` objects declare.
//!
//! Layout by concern: [`api`] (the CRD types), [`ecs`] (signing, client, credentials, errors),
//! [`controller`] (decide, reconcile, status, backoff), [`sim`] (the local ECS simulator),
//! [`telemetry`] (logs and metrics).

pub mod api;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod ecs;
pub mod kubesim;
pub mod sim;
pub mod telemetry;
