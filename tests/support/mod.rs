//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports, unused_macros)]

#[macro_use]
pub mod flows;
pub mod python;
pub mod scenario;
