//! The no-cluster quick start (`demo`) and the local stack it runs on.

pub(crate) mod demo_cmd;
mod sandbox;

pub(crate) use sandbox::apply_crds;
pub use sandbox::{RunningController, Sandbox, SandboxError, delete_namespace_and_contents};
