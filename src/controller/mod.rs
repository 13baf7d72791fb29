//! The reconciler: observe → decide → act → record.

pub mod backoff;
pub mod batch;
pub mod cli;
pub mod connect;
pub mod decide;
pub mod events;
pub mod health;
pub mod leader;
pub mod metered;
pub mod observe;
pub mod reboot_cmd;
pub mod reconcile;
pub mod record;
pub mod runtime;
