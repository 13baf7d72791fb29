//! The Kubernetes side: kube-runtime's Controller and what triggers a reconcile
//! ([`runtime`]), the [`cluster::Cluster`] a reconcile writes through, events
//! ([`events`]), leader election ([`leader`]), Secret changes ([`secret_changes`]) and the
//! EcsPowerSchedule cache the reconciles read ([`schedule_cache`]), and the metrics read from
//! the watch cache ([`store_metrics`]), and readiness false while the API server refuses the
//! credentials ([`unauthorized`]).

pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod events;
pub(crate) mod leader;
pub(crate) mod runtime;
pub(crate) mod schedule_cache;
pub(crate) mod secret_changes;
pub(crate) mod store_metrics;
pub(crate) mod unauthorized;
