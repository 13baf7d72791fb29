//! EcsPowerSchedules at run time: the cache EcsInstance reconciles read them from, what a
//! schedule change re-triggers, the schedule's own status, and the savings metric.
//!
//! - [`ScheduleCache`]: a reflector store of the schedules, read by every reconcile of an
//!   instance that follows one (no API request per reconcile).
//! - [`changes`]: the schedule watch, passed on when a schedule's spec changes or it is deleted;
//!   [`followers`] maps it to the instances that follow it, which are reconciled at once.
//! - [`status_controller`]: writes each schedule's `status` (what it says now, its next
//!   transition, how many instances follow it, Ready or Stalled), requeued at the next
//!   transition. It is triggered by instances that start or stop following the schedule
//!   ([`FollowerChanges`]), so the count is current without a second watch of EcsInstances.
//! - [`held_stopped`]: which instances a schedule keeps stopped (the runtime counts their
//!   instance-seconds in the same periodic pass over the store as the condition gauge).
//!
//! All of it runs in the leader-elected part of the controller, next to the EcsInstance
//! controller.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::cluster::FIELD_MANAGER;
use super::conditions::{self, Stall, Verdict};
use super::config::Config;
use super::decide::elapsed;
use super::desired::Schedules;
use crate::api::schedule::{EcsPowerScheduleStatus, NextTransition};
use crate::api::{EcsInstance, EcsPowerSchedule, OverrideState, PowerState};
use crate::schedule::Schedule;

/// That a watch has delivered its first full list, for any number of waiters. (kube's
/// `Store::wait_until_ready` is a oneshot channel underneath: of several tasks waiting on one
/// store only the last to poll is woken, so a reconcile waiting beside the Controller's own
/// runner could wait forever.)
#[derive(Clone)]
pub(crate) struct Listed(watch::Receiver<bool>);

impl Listed {
    /// The signal and the sender that raises it (`send_replace(true)`).
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (sender, receiver) = watch::channel(false);
        (sender, Self(receiver))
    }

    /// Returns once listed (or when the watch is gone: the run is stopping).
    pub(crate) async fn wait(&self) {
        let _ = self.0.clone().wait_for(|listed| *listed).await;
    }
}

/// The schedules the reconciles read: the store of the current controller run. Each run (each
/// leadership term) watches afresh, so the cache swaps its store when a run starts.
pub(crate) struct ScheduleCache(RwLock<(Store<EcsPowerSchedule>, Listed)>);

/// What fills a [`ScheduleCache`] for one run (see [`changes`]).
pub(crate) struct ScheduleWriter {
    writer: reflector::store::Writer<EcsPowerSchedule>,
    listed: watch::Sender<bool>,
}

impl Default for ScheduleCache {
    fn default() -> Self {
        Self(RwLock::new((reflector::store().0, Listed::new().1)))
    }
}

impl ScheduleCache {
    /// A new, empty store for a run; its writer fills it.
    pub(crate) fn fresh(&self) -> ScheduleWriter {
        let (reader, writer) = reflector::store();
        let (sender, listed) = Listed::new();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (reader, listed);
        ScheduleWriter {
            writer,
            listed: sender,
        }
    }

    fn current(&self) -> (Store<EcsPowerSchedule>, Listed) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Schedules for ScheduleCache {
    async fn ready(&self) {
        self.current().1.wait().await;
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<EcsPowerSchedule>> {
        self.current()
            .0
            .get(&ObjectRef::new(name).within(namespace))
    }
}

fn schedules_api(client: Client, namespace: Option<&str>) -> Api<EcsPowerSchedule> {
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// The schedule watch, reflected into `writer`: yields a schedule when its spec changed (a new
/// `generation`) or it was deleted. Its status writes pass nothing on.
pub(crate) fn changes(
    client: Client,
    namespace: Option<&str>,
    writer: ScheduleWriter,
) -> impl Stream<Item = Result<EcsPowerSchedule, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<ObjectRef<EcsPowerSchedule>, Option<i64>> = HashMap::new();
    watcher(schedules_api(client, namespace), watcher::Config::default())
        .default_backoff()
        .modify(|obj| obj.managed_fields_mut().clear())
        .reflect(writer.writer)
        .filter_map(move |event| {
            let changed = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    let generation = s.metadata.generation;
                    let previous = seen.insert(ObjectRef::from_obj(&s), generation);
                    (previous != Some(generation)).then_some(Ok(s))
                }
                Ok(watcher::Event::Delete(s)) => {
                    seen.remove(&ObjectRef::from_obj(&s));
                    Some(Ok(s))
                }
                Ok(watcher::Event::InitDone) => {
                    writer.listed.send_replace(true);
                    None
                }
                Ok(watcher::Event::Init) => None,
                Err(err) => Some(Err(err)),
            };
            std::future::ready(changed)
        })
}

/// The instances in `store` that follow `schedule`.
pub(crate) fn followers(
    store: &Store<EcsInstance>,
    schedule: &EcsPowerSchedule,
) -> Vec<ObjectRef<EcsInstance>> {
    let (namespace, name) = (schedule.namespace(), schedule.name_any());
    store
        .state()
        .iter()
        .filter(|obj| obj.namespace() == namespace && followed(obj).as_deref() == Some(&name))
        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
        .collect()
}

fn followed(obj: &EcsInstance) -> Option<String> {
    obj.spec.schedule_ref.as_ref().map(|r| r.name.clone())
}

/// Tells the schedule status controller which schedules gained or lost a follower. Inspects the
/// EcsInstance watch *after* it is reflected, so the store a status reconcile counts from
/// already holds the change; it remembers which schedule each instance followed to know what
/// changed.
pub(crate) struct FollowerChanges {
    following: HashMap<ObjectRef<EcsInstance>, String>,
    /// Instances seen since a re-list began: those not seen again were deleted meanwhile.
    relisted: Option<HashSet<ObjectRef<EcsInstance>>>,
    sender: mpsc::UnboundedSender<ObjectRef<EcsPowerSchedule>>,
    /// Raised at the first full list: the store counts every follower from then on.
    listed: watch::Sender<bool>,
}

impl FollowerChanges {
    /// The inspector, the stream of schedules to look at again, and the signal that the
    /// instances have been listed.
    pub(crate) fn new() -> (
        Self,
        mpsc::UnboundedReceiver<ObjectRef<EcsPowerSchedule>>,
        Listed,
    ) {
        let (sender, receiver) = mpsc::unbounded();
        let (listed_sender, listed) = Listed::new();
        let changes = Self {
            following: HashMap::new(),
            relisted: None,
            sender,
            listed: listed_sender,
        };
        (changes, receiver, listed)
    }

    pub(crate) fn inspect(&mut self, event: &Result<watcher::Event<EcsInstance>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Init) => self.relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(obj)) => {
                if let Some(seen) = &mut self.relisted {
                    seen.insert(ObjectRef::from_obj(obj));
                }
                self.follows(ObjectRef::from_obj(obj), followed(obj));
            }
            Ok(watcher::Event::InitDone) => {
                self.listed.send_replace(true);
                let seen = self.relisted.take().unwrap_or_default();
                let gone: Vec<_> = self
                    .following
                    .keys()
                    .filter(|r| !seen.contains(*r))
                    .cloned()
                    .collect();
                for r in gone {
                    self.follows(r, None);
                }
            }
            Ok(watcher::Event::Apply(obj)) => self.follows(ObjectRef::from_obj(obj), followed(obj)),
            Ok(watcher::Event::Delete(obj)) => self.follows(ObjectRef::from_obj(obj), None),
            Err(_) => {}
        }
    }

    /// `instance` follows `schedule` now: the schedules it left and joined are looked at.
    fn follows(&mut self, instance: ObjectRef<EcsInstance>, schedule: Option<String>) {
        let namespace = instance.namespace.clone().unwrap_or_default();
        let before = match &schedule {
            Some(name) => self.following.insert(instance, name.clone()),
            None => self.following.remove(&instance),
        };
        if before == schedule {
            return;
        }
        for name in [before, schedule].into_iter().flatten() {
            // The receiver is gone only when the run is stopping.
            let _ = self
                .sender
                .unbounded_send(ObjectRef::new(&name).within(&namespace));
        }
    }
}

/// What the schedule status controller shares.
struct StatusContext {
    client: Client,
    instances: Store<EcsInstance>,
    instances_listed: Listed,
    offset: jiff::SignedDuration,
    resync: Duration,
}

#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("EcsPowerSchedule {0} has no namespace")]
    NoNamespace(String),
    #[error("writing status: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the schedule status controller until it is dropped (with the EcsInstance controller's
/// run). `followers_changed` names the schedules an instance started or stopped following;
/// `instances` is the EcsInstance store.
pub(crate) async fn status_controller(
    client: Client,
    config: &Config,
    instances: Store<EcsInstance>,
    instances_listed: Listed,
    followers_changed: impl Stream<Item = ObjectRef<EcsPowerSchedule>> + Send + 'static,
) {
    let api = schedules_api(client.clone(), config.namespace.as_deref());
    let ctx = Arc::new(StatusContext {
        client,
        instances,
        instances_listed,
        offset: config.schedule_clock_offset,
        resync: config.resync,
    });
    Controller::new(api, watcher::Config::default())
        .reconcile_on(followers_changed)
        .run(reconcile_status, status_error, ctx)
        .for_each(|result| {
            match result {
                Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                Err(err) => warn!(error = %err, "schedule status controller"),
            }
            std::future::ready(())
        })
        .await;
}

async fn reconcile_status(
    obj: Arc<EcsPowerSchedule>,
    ctx: Arc<StatusContext>,
) -> Result<Action, StatusError> {
    let namespace = obj
        .namespace()
        .ok_or_else(|| StatusError::NoNamespace(obj.name_any()))?;
    ctx.instances_listed.wait().await;
    let now = Timestamp::now()
        .checked_add(ctx.offset)
        .unwrap_or(Timestamp::MAX);
    let count = followers(&ctx.instances, &obj).len();
    let (status, next) = status_at(&obj, u32::try_from(count).unwrap_or(u32::MAX), now);
    if obj.status.as_ref() != Some(&status) {
        let api: Api<EcsPowerSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        // Conditional on the version the status was computed from: a cache that trails the
        // API server never overwrites a newer spec's status (409: look again soon).
        let patch = json!({
            "metadata": { "resourceVersion": obj.resource_version() },
            "status": status,
        });
        match api
            .patch_status(&obj.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                debug!(schedule = %obj.name_any(), "changed since it was read; looking again");
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(err) => return Err(err.into()),
        }
    }
    let delay = next.map_or(ctx.resync, |at| elapsed(at, now).min(ctx.resync));
    Ok(Action::requeue(delay))
}

fn status_error(obj: Arc<EcsPowerSchedule>, err: &StatusError, _: Arc<StatusContext>) -> Action {
    warn!(schedule = %obj.name_any(), error = %err, "schedule status not written; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The status of `obj` at `now`, followed by `instances` EcsInstances, and when it next changes.
pub(crate) fn status_at(
    obj: &EcsPowerSchedule,
    instances: u32,
    now: Timestamp,
) -> (EcsPowerScheduleStatus, Option<Timestamp>) {
    let generation = obj.metadata.generation;
    let previous = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let (power_state, next_transition, verdict) = match Schedule::compile(&obj.spec) {
        Ok(schedule) => {
            let state = schedule.state_at(now);
            let next = schedule.next_transition(now);
            let message = match &next {
                Some(t) => format!(
                    "{} now; {} from {} ({} local).",
                    state.as_str(),
                    t.power_state.as_str(),
                    t.at,
                    schedule
                        .zone()
                        .to_datetime(t.at)
                        .strftime("%a %Y-%m-%d %H:%M")
                ),
                None => format!("{} now; the state never changes.", state.as_str()),
            };
            let next = next.map(|t| NextTransition {
                power_state: t.power_state,
                time: Time(t.at),
            });
            let verdict = Verdict::Ready {
                reason: "ScheduleValid",
                message,
            };
            (Some(state), next, verdict)
        }
        Err(invalid) => {
            let verdict = Verdict::Stalled {
                why: Stall::ScheduleInvalid,
                message: format!(
                    "{invalid}. The EcsInstances that follow it are neither started nor stopped until it is fixed."
                ),
            };
            (None, None, verdict)
        }
    };
    let at = next_transition.as_ref().map(|t| t.time.0);
    let status = EcsPowerScheduleStatus {
        observed_generation: generation,
        power_state,
        next_transition,
        instances: Some(instances),
        conditions: conditions::conditions(&verdict, generation, previous, now)
            .into_iter()
            .filter(|c| c.type_ != conditions::RECONCILING)
            .collect(),
    };
    (status, at)
}

/// The namespace and schedule of an instance its schedule holds stopped: it follows a
/// schedule, no override is active, and both the desired and the actual state are Stopped.
/// (The runtime's periodic pass over the store adds the seconds to the savings counter.)
pub(crate) fn held_stopped(obj: &EcsInstance) -> Option<(String, String)> {
    let schedule = followed(obj)?;
    let status = obj.status.as_ref()?;
    let overridden = status
        .power_override
        .as_ref()
        .is_some_and(|o| o.state == OverrideState::Active);
    let stopped = status.desired_power_state == Some(PowerState::Stopped)
        && status.instance_status == Some(ecs_client::InstanceStatus::Stopped);
    (stopped && !overridden).then(|| (obj.namespace().unwrap_or_default(), schedule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceStatus, OverrideStatus};
    use crate::controller::desired::tests::{office_hours, scheduled};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn schedule(spec: crate::api::EcsPowerScheduleSpec) -> EcsPowerSchedule {
        let mut obj = EcsPowerSchedule::new("office-hours", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.generation = Some(3);
        obj
    }

    #[test]
    fn a_valid_schedule_says_what_now_and_what_next() {
        let (status, next) = status_at(&schedule(office_hours()), 12, at("2026-11-27T03:00:00Z"));
        assert_eq!(status.power_state, Some(PowerState::Running));
        assert_eq!(status.instances, Some(12));
        assert_eq!(status.observed_generation, Some(3));
        let t = status.next_transition.unwrap();
        assert_eq!(
            (t.power_state, t.time.0),
            (PowerState::Stopped, at("2026-11-27T12:00:00Z"))
        );
        assert_eq!(next, Some(at("2026-11-27T12:00:00Z")));
        let types: Vec<_> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(types, [("Ready", "True"), ("Stalled", "False")]);
        assert!(
            status.conditions[0]
                .message
                .contains("Fri 2026-11-27 20:00"),
            "{}",
            status.conditions[0].message
        );
    }

    #[test]
    fn an_invalid_schedule_is_stalled_with_the_field_named() {
        let mut spec = office_hours();
        spec.running[0].to = "25:00".into();
        let (status, next) = status_at(&schedule(spec), 0, at("2026-11-27T03:00:00Z"));
        assert_eq!(
            (status.power_state, &status.next_transition, next),
            (None, &None, None)
        );
        let stalled = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "ScheduleInvalid")
        );
        assert!(
            stalled.message.contains("spec.running[0].to"),
            "{}",
            stalled.message
        );
    }

    /// Joining, moving, leaving and vanishing during a re-list each name the schedules whose
    /// follower count changed; a status-only change names none.
    #[test]
    fn follower_changes_name_the_schedules_left_and_joined() {
        let (mut changes, mut names, _) = FollowerChanges::new();
        let mut drain = || {
            let mut out = Vec::new();
            while let Ok(r) = names.try_recv() {
                out.push(r.name);
            }
            out
        };
        let instance = |name: &str, schedule: &str| {
            let mut obj = EcsInstance::new(name, scheduled("i-a", schedule));
            obj.metadata.namespace = Some("team".into());
            obj
        };
        let apply = |obj: &EcsInstance| Ok(watcher::Event::Apply(obj.clone()));

        changes.inspect(&apply(&instance("web-1", "a")));
        assert_eq!(drain(), ["a"]);
        let mut same = instance("web-1", "a");
        same.status = Some(EcsInstanceStatus::default());
        changes.inspect(&apply(&same));
        assert!(drain().is_empty());
        changes.inspect(&apply(&instance("web-1", "b")));
        assert_eq!(drain(), ["a", "b"]);
        changes.inspect(&Ok(watcher::Event::Delete(instance("web-1", "b"))));
        assert_eq!(drain(), ["b"]);

        // web-2 is deleted while the watch is down: the re-list does not show it.
        changes.inspect(&apply(&instance("web-2", "c")));
        changes.inspect(&apply(&instance("web-3", "c")));
        drain();
        changes.inspect(&Ok(watcher::Event::Init));
        changes.inspect(&Ok(watcher::Event::InitApply(instance("web-3", "c"))));
        changes.inspect(&Ok(watcher::Event::InitDone));
        assert_eq!(drain(), ["c"]);
    }

    #[test]
    fn only_instances_a_schedule_keeps_stopped_count_as_held() {
        let mut obj = EcsInstance::new("web-1", scheduled("i-a", "office-hours"));
        obj.metadata.namespace = Some("team".into());
        let stopped = EcsInstanceStatus {
            desired_power_state: Some(PowerState::Stopped),
            instance_status: Some(ecs_client::InstanceStatus::Stopped),
            ..EcsInstanceStatus::default()
        };
        obj.status = Some(stopped.clone());
        assert_eq!(
            held_stopped(&obj),
            Some(("team".into(), "office-hours".into()))
        );

        // Held by an override, not by the schedule.
        obj.status = Some(EcsInstanceStatus {
            power_override: Some(OverrideStatus {
                state: OverrideState::Active,
                power_state: Some(PowerState::Stopped),
                until: None,
                message: None,
            }),
            ..stopped.clone()
        });
        assert_eq!(held_stopped(&obj), None);

        // Still stopping; or a fixed powerState.
        obj.status = Some(EcsInstanceStatus {
            instance_status: Some(ecs_client::InstanceStatus::Stopping),
            ..stopped.clone()
        });
        assert_eq!(held_stopped(&obj), None);
        let mut fixed = EcsInstance::new(
            "web-2",
            crate::api::EcsInstanceSpec::minimal("i-b", PowerState::Stopped),
        );
        fixed.status = Some(stopped);
        assert_eq!(held_stopped(&fixed), None);
    }
}
