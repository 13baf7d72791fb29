//! The shared scenarios (`it/flows/`) against a real Kubernetes API server, in every CI run:
//! crates/envtest's kube-apiserver + etcd (one for this binary, from `KUBEBUILDER_ASSETS`), the
//! CRDs applied server-side, a fresh namespace per scenario (emptied, then deleted, afterwards),
//! the flows running concurrently. ECS is the local simulator. A `Warning` header from the
//! server about any of a scenario's requests fails it.
//!
//! ```sh
//! KUBEBUILDER_ASSETS=$(realpath ../shared/envtest/bin) cargo test --test real_cluster
//! # a cluster of your own instead (kind, say), the one KUBECONFIG points at:
//! REAL_CLUSTER=kubeconfig KUBECONFIG=~/.kube/config cargo test --test real_cluster
//! ```
//!
//! Without `KUBEBUILDER_ASSETS` (and not `CI=true`) each flow prints a skip line and passes;
//! with `CI=true` a missing server fails. `.github/workflows/real-cluster.yml` also runs it on kind.

#[path = "it/support/mod.rs"]
mod support;

scenario_tests!(crate::support::scenario::Backend::Cluster);

#[path = "it/flows/mod.rs"]
mod flows;
