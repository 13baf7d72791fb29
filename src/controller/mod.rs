//! The reconciler: observe → decide → act → record.
