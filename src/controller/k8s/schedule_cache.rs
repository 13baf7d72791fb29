//! EcsPowerSchedules as the EcsInstance reconciles see them: a cache, and what a change of a
//! schedule (or of who follows it) wakes.
//!
//! - [`ScheduleCache`]: a reflector store of the schedules (and of the calendars they use), read
//!   by every reconcile of an instance that follows one (no API request per reconcile).
//! - [`ScheduleCache::changes`]: the schedule watch, passed on when a schedule's spec changes or
//!   it is deleted; [`followers`] maps it to the instances that follow it, which are reconciled
//!   at once.
//! - [`FollowerChanges`]: which schedules gained or lost a follower, for the schedule status
//!   controller ([`crate::controller::schedule_status`]).
//! - [`held_stopped`]: which instances a schedule keeps stopped (the runtime counts their
//!   instance-seconds in the same periodic pass over the store as the condition gauge).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use futures::channel::mpsc;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule, OverrideState, PowerState};
use crate::controller::k8s::calendar_cache::CalendarCache;
use crate::controller::k8s::reflected::{Reflected, spec_changes};
use crate::controller::listed::Listed;
use crate::controller::reconcile::desired::Schedules;

/// The schedules the reconciles read (the store of the current run), and beside them the
/// calendars the schedules use.
#[derive(Default)]
pub(crate) struct ScheduleCache {
    schedules: Reflected<EcsPowerSchedule>,
    calendars: CalendarCache,
}

impl ScheduleCache {
    /// A new, empty schedule store for a run, and the schedule watch that fills it: yields a
    /// schedule when its spec changed (a new `generation`) or it was deleted.
    pub(crate) fn changes(
        &self,
        client: Client,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Result<EcsPowerSchedule, watcher::Error>> + Send + 'static {
        spec_changes(client, namespace, self.schedules.fresh())
    }

    /// The schedule store of the current run (after [`Self::changes`]).
    pub(crate) fn store(&self) -> Store<EcsPowerSchedule> {
        self.schedules.store()
    }

    /// The calendars the schedules use.
    pub(crate) fn calendars(&self) -> &CalendarCache {
        &self.calendars
    }
}

#[async_trait]
impl Schedules for ScheduleCache {
    async fn ready(&self) -> bool {
        self.schedules.ready().await && self.calendars.ready().await
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<EcsPowerSchedule>> {
        self.schedules.get(namespace, name)
    }

    fn calendar(&self, namespace: &str, name: &str) -> Option<Arc<EcsHolidayCalendar>> {
        self.calendars.get(namespace, name)
    }
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
    use crate::testing::scheduled;

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
