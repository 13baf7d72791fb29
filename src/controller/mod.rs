//! The controller: observe → decide → act → record, and what runs it.
//!
//! One reconcile, in order: `reconcile` (a `Reconciler` and its pass) resolves the desired
//! state through `desired` (a fixed `powerState`, or an EcsPowerSchedule and its overrides),
//! asks `admission` whether the object may use ECS at all (one owner per instance from
//! `owners`, the namespaces allowed the shared credentials from `namespaces`, the tag guard),
//! reads the credentials through `cluster`, observes through `observe` (batched by `batch`,
//! metered by `metered`, connected by `connect`, read fleet by fleet by `fleet`), asks `decide` for a step (which reboot tokens
//! are already done is `tokens`'s), has `record` build the next status (its conditions from
//! `conditions`, its backoff from `backoff`) and writes it
//! through `cluster`; when a Kubernetes write fails, `api_backoff` spaces the retries.
//! `runtime` wires kube-runtime's Controller and `leader` election around it, with `schedules`
//! (the schedule cache and watch, the EcsPowerSchedule status controller, the savings metric);
//! `config` is everything configurable; `run_cmd` and `reboot_cmd` are the `run` and `reboot`
//! commands.
//!
//! Dependencies point one way (no cycles): the commands → runtime → schedules, namespaces,
//! reconcile → record → desired, conditions → admission → owners; conditions → decide →
//! tokens, config; connect → fleet → batch,
//! metered, observe.

pub(crate) mod admission;
pub(crate) mod api_backoff;
pub(crate) mod backoff;
pub(crate) mod batch;
pub(crate) mod bounded;
pub(crate) mod cluster;
pub(crate) mod conditions;
pub(crate) mod config;
pub(crate) mod connect;
pub(crate) mod decide;
pub(crate) mod desired;
pub(crate) mod events;
pub(crate) mod fleet;
pub(crate) mod leader;
pub(crate) mod metered;
pub(crate) mod namespaces;
pub(crate) mod observe;
pub(crate) mod owners;
pub(crate) mod reboot_cmd;
pub(crate) mod reconcile;
pub(crate) mod record;
pub(crate) mod run_cmd;
pub(crate) mod runtime;
pub(crate) mod schedules;
pub(crate) mod secret_changes;
pub(crate) mod tokens;

pub use config::{BatchSettings, Config, LeaseSettings, Timings};
pub use reboot_cmd::{RebootError, RebootRequested, request_reboot};
pub use runtime::RunError;
