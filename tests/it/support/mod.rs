//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod counting;
pub mod proxy;
pub mod python;
pub mod scenario;

/// Defines the `flow!` macro the shared flows (`flows/`) are written with,
/// `flow!(name, async |s| { … })`: one `#[tokio::test]` per flow, on `$backend`, with the extra
/// attributes given. Invoke it at the crate root, after `mod support;` and before `mod flows;`:
/// a flow's name is written once, and both runners (`tests/it` on kubesim, `tests/real_cluster.rs`
/// on a real API server) get every flow.
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
    };
}
