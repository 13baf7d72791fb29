//! Everything that talks to ECS: the seam a reconcile observes and acts through
//! ([`observe`]), a connection per credential set ([`connect`]), call metrics
//! ([`call_metrics`]), batching many objects' calls into one ([`batch`]) and the fleet-wide
//! observer that reads every instance once per resync ([`fleet`]).

pub(crate) mod batch;
pub(crate) mod call_metrics;
pub(crate) mod connect;
pub(crate) mod fleet;
pub(crate) mod observe;
