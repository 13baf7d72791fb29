//! The shared scenarios (`it/flows/`) against a real cluster: the one `KUBECONFIG` points at,
//! with the CRD applied server-side and a fresh namespace per scenario (deleted afterwards). ECS
//! is the local simulator. Ignored unless asked for:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test --test real_cluster -- --ignored
//! ```
//!
//! `.github/workflows/real-cluster.yml` runs it on kind.

#[path = "it/support/mod.rs"]
mod support;

scenario_tests!(
    crate::support::scenario::Backend::Cluster,
    #[ignore = "needs a cluster: KUBECONFIG=… cargo test --test real_cluster -- --ignored"]
);

#[path = "it/flows/mod.rs"]
mod flows;
