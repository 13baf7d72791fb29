//! The controller: observe → decide → act → record, and what runs it.
//!
//! Four folders, one concern each (dependencies point down this list, never back):
//! - `k8s`: the Kubernetes side: kube-runtime's Controller and the streams that trigger a
//!   reconcile (`k8s::runtime`), the `k8s::cluster::Cluster` a reconcile reads Secrets from
//!   and writes status through, events, leader election, Secret changes, the schedule and
//!   calendar caches, and for `spec.startAfter` the instance cache and the wakes of held
//!   neighbours (`k8s::start_order`).
//! - `reconcile`: one object's pass, pure but for the two seams it is handed (the cluster
//!   and the ECS side): admit, resolve the desired state, read credentials, observe, decide,
//!   act, write. The rules it applies live beside it: `desired`, `decide`, `tokens`,
//!   `next_status`, `conditions`, and the two retry policies (`ecs_retry`, `api_retry`);
//!   `neighbours` is the seam ordering reads the other EcsInstances through (the rules
//!   themselves are the pure `crate::ordering`).
//! - `admission`: whether an object may use ECS at all (one owner per instance, the tenancy
//!   guards).
//! - `ecs`: everything that talks to ECS: the observer seam, a connection per credential set,
//!   call metrics, batching and the fleet observer.
//!
//! Beside them: `schedule_status` and `calendar_status`, the EcsPowerSchedule and
//! EcsHolidayCalendar status controllers; `config`, every
//! setting in one tree; `clock`, the injected time; `truncate`, the bound on outside text.

pub(crate) mod admission;
pub(crate) mod calendar_status;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod ecs;
pub(crate) mod k8s;
pub(crate) mod listed;
pub(crate) mod reconcile;
pub(crate) mod schedule_status;
pub(crate) mod truncate;

pub use config::{BatchSettings, Config, LeaseSettings, Timings};
pub use k8s::runtime::RunError;
