//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod python;
pub mod scenario;

/// Registers every flow of `tests/support/flows.rs` as a test of the calling crate: one
/// `#[tokio::test]` per flow, on `$backend`, with the extra attributes given (the real-cluster
/// runner's `#[ignore]`). Invoke it once, at the crate root, after `mod support;`.
///
/// It defines the `flow!` macro the flows are written with, `flow!(name, async |s| { … })`, and
/// then compiles the flows with it: a flow's name is written once, and both runners (kubesim
/// and a real cluster) get every flow.
#[macro_export]
macro_rules! scenario_tests {
    ($backend:expr $(, #[$attr:meta])*) => {
        macro_rules! flow {
            ($name:ident, $flow:expr) => {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$attr])*
                async fn $name() {
                    $crate::support::scenario::run_flow($backend, $flow).await;
                }
            };
        }

        #[path = "support/flows.rs"]
        mod flows;

        #[path = "support/schedule_flows.rs"]
        mod schedule_flows;
    };
}
