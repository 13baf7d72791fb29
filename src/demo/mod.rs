//! The no-cluster quick start (`demo`) and the local stack it runs on.

pub mod cli;
pub mod sandbox;

pub use sandbox::{RunningController, Sandbox, SandboxError};
