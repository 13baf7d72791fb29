//! Scenarios only kubesim can stage (its fault injection, a lagging watch) or that need a
//! large fleet: restarts mid-call (`restarts`), shared-credentials tenancy and one owner per
//! instance (`tenancy`), batching at fleet scale (`fleet`), leader election across replicas
//! (`leader_election`), a DescribeInstances answer missing a row (`observation`); and those only a
//! real API server can stage: kube-apiserver restarting mid-reboot (`api_server_restart`), a watch
//! expired by etcd compaction (`watch_expiry`), API Priority and Fairness
//! rejecting with 429 (`priority_and_fairness`).

mod api_server_restart;
mod fleet;
mod leader_election;
mod observation;
mod priority_and_fairness;
mod restarts;
mod tenancy;
mod watch_expiry;
