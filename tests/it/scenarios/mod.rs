//! Scenarios only kubesim can stage (its fault injection, a lagging watch) or that need a
//! large fleet: restarts mid-call (`restarts`), shared-credentials tenancy and one owner per
//! instance (`tenancy`), batching at fleet scale (`fleet`), leader election across replicas
//! (`leader_election`), a DescribeInstances answer missing a row (`observation`).

mod fleet;
mod leader_election;
mod observation;
mod restarts;
mod tenancy;
