//! The reconciler: observe → decide → act → record.

pub mod decide;
