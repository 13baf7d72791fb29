//! EcsHolidayCalendars as the reconciles and the schedule status see them: a cache beside the
//! schedule cache, and what a change of a calendar wakes.
//!
//! - [`CalendarCache`]: a reflector store of the calendars (no API request per reconcile).
//! - [`changes`]: the calendar watch, passed on when a calendar appears, its spec changes or
//!   it is deleted; [`users`] maps it to the schedules that use it and [`followers`] to their
//!   EcsInstances, which are reconciled at once (a deleted calendar stalls them, a recreated
//!   one lets them go on: no polling).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use tracing::warn;

use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule};
use crate::controller::config::Config;
use crate::controller::k8s::cluster::scoped_api;
use crate::controller::k8s::schedule_cache::{self, Listed, ScheduleCache};

/// The calendars of the current controller run (each run watches afresh, as the schedules).
pub(crate) struct CalendarCache(RwLock<(Store<EcsHolidayCalendar>, Listed)>);

/// What fills a [`CalendarCache`] for one run (see [`changes`]).
pub(crate) struct CalendarWriter {
    writer: reflector::store::Writer<EcsHolidayCalendar>,
    listed: watch::Sender<bool>,
}

impl Default for CalendarCache {
    fn default() -> Self {
        Self(RwLock::new((reflector::store().0, Listed::new().1)))
    }
}

impl CalendarCache {
    /// A new, empty store for a run; its writer fills it.
    pub(crate) fn fresh(&self) -> CalendarWriter {
        let (reader, writer) = reflector::store();
        let (sender, listed) = Listed::new();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (reader, listed);
        CalendarWriter {
            writer,
            listed: sender,
        }
    }

    fn current(&self) -> (Store<EcsHolidayCalendar>, Listed) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Returns once the calendars have been listed (a calendar not found before that may just
    /// not be known yet).
    pub(crate) async fn ready(&self) {
        self.current().1.wait().await;
    }

    /// The calendar `name` in `namespace`, if it exists.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<EcsHolidayCalendar>> {
        self.current()
            .0
            .get(&ObjectRef::new(name).within(namespace))
    }
}

/// The calendar watch of one run, fanned out to what a calendar change wakes.
pub(crate) struct CalendarWatch {
    /// The EcsInstances to reconcile at once: the followers of the schedules that use a
    /// calendar that appeared, changed or was deleted.
    pub(crate) followers: BoxStream<'static, ObjectRef<EcsInstance>>,
    /// Those schedules, for their status controller.
    pub(crate) users: mpsc::UnboundedReceiver<ObjectRef<EcsPowerSchedule>>,
}

impl CalendarWatch {
    /// Starts filling `cache`'s calendars afresh for a run whose schedule store is already
    /// fresh (see [`ScheduleCache::fresh`]) and whose instances are in `instances`.
    pub(crate) fn start(
        client: Client,
        config: &Config,
        cache: &ScheduleCache,
        instances: Store<EcsInstance>,
    ) -> Self {
        let schedules = cache.store();
        let (sender, users) = mpsc::unbounded();
        let followers = changes(
            client,
            config.namespace.as_deref(),
            cache.calendars().fresh(),
        )
        .filter_map(move |change| {
            let woken = match change {
                Ok(calendar) => {
                    for schedule in self::users(&schedules, &calendar) {
                        // The receiver is gone only when the run is stopping.
                        let _ = sender.unbounded_send(schedule);
                    }
                    Some(futures::stream::iter(followers(
                        &schedules, &instances, &calendar,
                    )))
                }
                Err(err) => {
                    warn!(error = %err, "watching EcsHolidayCalendars; retrying");
                    None
                }
            };
            std::future::ready(woken)
        })
        .flatten()
        .boxed();
        Self { followers, users }
    }
}

/// The calendar watch, reflected into `writer`: yields a calendar when it is new, its spec
/// changed (a new `generation`) or it was deleted. Its status writes pass nothing on.
pub(crate) fn changes(
    client: Client,
    namespace: Option<&str>,
    writer: CalendarWriter,
) -> impl Stream<Item = Result<EcsHolidayCalendar, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<ObjectRef<EcsHolidayCalendar>, Option<i64>> = HashMap::new();
    watcher(
        scoped_api::<EcsHolidayCalendar>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|obj| obj.managed_fields_mut().clear())
    .reflect(writer.writer)
    .filter_map(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => {
                let generation = c.metadata.generation;
                let previous = seen.insert(ObjectRef::from_obj(&c), generation);
                (previous != Some(generation)).then_some(Ok(c))
            }
            Ok(watcher::Event::Delete(c)) => {
                seen.remove(&ObjectRef::from_obj(&c));
                Some(Ok(c))
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

/// The schedules in `schedules` that use `calendar` (same namespace, named in
/// `spec.calendars`).
pub(crate) fn users(
    schedules: &Store<EcsPowerSchedule>,
    calendar: &EcsHolidayCalendar,
) -> Vec<ObjectRef<EcsPowerSchedule>> {
    let (namespace, name) = (calendar.namespace(), calendar.name_any());
    schedules
        .state()
        .iter()
        .filter(|s| s.namespace() == namespace && s.spec.calendars.iter().any(|c| c.name == name))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The instances in `instances` that follow a schedule that uses `calendar`.
pub(crate) fn followers(
    schedules: &Store<EcsPowerSchedule>,
    instances: &Store<EcsInstance>,
    calendar: &EcsHolidayCalendar,
) -> Vec<ObjectRef<EcsInstance>> {
    users(schedules, calendar)
        .iter()
        .filter_map(|schedule| schedules.get(schedule))
        .flat_map(|schedule| schedule_cache::followers(instances, &schedule))
        .collect()
}
