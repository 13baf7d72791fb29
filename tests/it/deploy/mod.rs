//! What `deploy/` and the Helm chart install: every manifest parses and means what the README
//! says (`manifests`), its RBAC grants exactly what the controller calls (`rbac`), and the
//! operator package (Helm chart, alerts, dashboard, Argo CD and Flux) works with the tools
//! operators use (`operator_package`); the krew manifest of the `kubectl ecsi` plugin renders
//! into one krew accepts (`krew`).

mod krew;
mod manifests;
mod operator_package;
mod rbac;
mod service_account;
