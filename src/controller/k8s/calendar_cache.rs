//! EcsHolidayCalendars as the reconciles and the schedule status see them: a cache beside the
//! schedule cache, and what a change of a calendar wakes.
//!
//! - [`CalendarCache`]: a reflector store of the calendars (no API request per reconcile).
//! - [`CalendarWatch`]: the calendar watch, passed on when a calendar appears, its spec changes
//!   or it is deleted; [`users`] maps it to the schedules that use it and [`followers`] to their
//!   EcsInstances, which are reconciled at once (a deleted calendar stalls them, a recreated
//!   one lets them go on: no polling).

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tracing::warn;

use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule};
use crate::controller::config::Config;
use crate::controller::k8s::reflected::{Reflected, spec_changes};
use crate::controller::k8s::schedule_cache::{self, ScheduleCache};

/// The calendars of the current controller run (each run watches afresh, as the schedules).
pub(crate) type CalendarCache = Reflected<EcsHolidayCalendar>;

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
        let followers = spec_changes(
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
