//! The reconciler: observe → decide → act → record.

pub mod backoff;
pub mod decide;
pub mod health;
