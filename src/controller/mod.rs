//! The controller: observe → decide → act → record, and what runs it.
//!
//! One reconcile, in order: `reconcile` (a `Reconciler` and its pass) reads the credentials
//! through `cluster`, observes through `observe` (batched by `batch`, metered by
//! `metered`, connected by `connect`, read fleet by fleet by `fleet`), asks `decide` for a step, has `record` build the
//! next status (its conditions from `conditions`, its backoff from `backoff`) and writes it
//! through `cluster`; when a Kubernetes write fails, `api_backoff` spaces the retries.
//! `runtime` wires kube-runtime's Controller and `leader` election around it; `config` is
//! everything configurable; `run_cmd` and `reboot_cmd` are the `run` and `reboot` commands.
//!
//! Dependencies point one way (no cycles): the commands → runtime → reconcile → record →
//! conditions → decide → config; connect → fleet → batch, metered, observe.

pub(crate) mod api_backoff;
pub(crate) mod backoff;
pub(crate) mod batch;
pub(crate) mod bounded;
pub(crate) mod cluster;
pub(crate) mod conditions;
pub(crate) mod config;
pub(crate) mod connect;
pub(crate) mod decide;
pub(crate) mod events;
pub(crate) mod fleet;
pub(crate) mod leader;
pub(crate) mod metered;
pub(crate) mod observe;
pub(crate) mod reboot_cmd;
pub(crate) mod reconcile;
pub(crate) mod record;
pub(crate) mod run_cmd;
pub(crate) mod runtime;
pub(crate) mod secret_changes;

pub use config::{BatchSettings, Config, LeaseSettings, Timings};
pub use reboot_cmd::{RebootError, RebootRequested, request_reboot};
pub use runtime::RunError;
