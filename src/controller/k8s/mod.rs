//! The Kubernetes side: kube-runtime's Controller and what triggers a reconcile
//! ([`runtime`]), the [`cluster::Cluster`] a reconcile writes through, events
//! ([`events`]), leader election ([`leader`]), Secret changes ([`secret_changes`]) and the
//! EcsPowerSchedule and EcsHolidayCalendar caches the reconciles read ([`schedule_cache`],
//! [`calendar_cache`]), the other EcsInstances ordering reads and what their changes wake
//! ([`start_order`]), the metrics read from the watch cache ([`store_metrics`]), and readiness
//! false while the API server refuses the credentials ([`unauthorized`]).

pub(crate) mod calendar_cache;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod events;
pub(crate) mod leader;
pub(crate) mod reflected;
pub(crate) mod runtime;
pub(crate) mod schedule_cache;
pub(crate) mod secret_changes;
pub(crate) mod start_order;
pub(crate) mod store_metrics;
pub(crate) mod unauthorized;
