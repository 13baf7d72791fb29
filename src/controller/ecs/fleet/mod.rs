//! The fleet observer: one reader of the cloud per (credential set, region).
//!
//! Looked at object by object, a fleet's resyncs coalesce into full DescribeInstances pages only
//! by chance (docs/performance.md). Here the observer owns the reading instead:
//!
//! - **Managed instances** are those whose reconciles looked ([`Observer::observe`] registers
//!   the instance and the object). An object is forgotten when it is deleted or when it has not
//!   looked for [`FleetSettings::idle_after`]; an object that a gate keeps from calling ECS
//!   before its observe step is never registered, and one refused later (a Namespace losing
//!   its label, a new owner) is forgotten at once ([`Observer::forget`]).
//! - **Every resync** the observer reads every managed instance in full pages of 100 ids
//!   (sorted, spread evenly over the period); **every `transition_poll`** the instances it saw
//!   Pending, Starting or Stopping. When a reading differs from what an object last saw, that
//!   object is reconciled ([`Observer::changes`], a trigger stream for kube-runtime's
//!   `reconcile_on`); otherwise nothing happens.
//! - **Lookups** ask for a [`Freshness`](crate::controller::ecs::observe::Freshness). A resync accepts the view (no ECS call at all); a spec
//!   change, a reboot token or a call about to be made needs a DescribeInstances sent after the
//!   reconcile began, which goes through the [`BatchingObserver`] (coalesced with other such
//!   lookups) and has priority: periodic pages of the region wait while one is pending, so they
//!   never take the rate-limit token it needs. After a power call about an instance (noted by
//!   [`InvalidatingEcs`]), readings sent before it answer nobody.
//!
//! Transition polls use DescribeInstances, not DescribeInstanceStatus: a settling reboot is
//! proven by StartTime and locks block calls, neither of which DescribeInstanceStatus reports,
//! so a status-only reading could not answer a lookup or tell an object that its evidence
//! changed; and the instances in transition are few, so the cheaper call would save little.
//!
//! Reading happens only while the stream of [`Observer::changes`] is polled: the controller's
//! run. A lost lease drops it, and no periodic read goes out from a replica that does not lead.

mod invalidating;
mod reader;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub(crate) use invalidating::InvalidatingEcs;

use self::state::Fleet;
use crate::api::EcsInstance;
use crate::controller::config::{BatchSettings, Config};
use crate::controller::ecs::batch::BatchingObserver;
use crate::controller::ecs::observe::{Lookup, Observer};
use crate::controller::listed::Listed;
use ecs_client::{EcsError, Instance};

/// (credentials key, region): readings are shared only within one.
type Key = (String, String);

/// What the observer reads how often.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FleetSettings {
    /// Every managed instance is read once per resync.
    pub resync: Duration,
    /// Instances in transition are read this often.
    pub transition_poll: Duration,
    /// How the lookups that need a fresh reading are coalesced.
    pub batch: BatchSettings,
}

impl FleetSettings {
    pub(crate) fn new(config: &Config, batch: BatchSettings) -> Self {
        Self {
            resync: config.resync,
            transition_poll: config.timings.transition_poll,
            batch,
        }
    }

    /// While the fleet's periodic pages fail, a view older than this answers no lookup: the
    /// reconcile reads for itself, and records ECS's error if there is one. (While they succeed,
    /// a pass slowed by the quota or held back by the latency path leaves views older than this,
    /// and they still answer: a change the pass finds triggers the object.)
    pub(crate) fn stale_after(&self) -> Duration {
        self.resync * 3
    }

    /// An object that has not looked for this long is no longer read for: objects look at least
    /// once per resync.
    pub(crate) fn idle_after(&self) -> Duration {
        self.resync * 2
    }
}

/// Periodic pages wait this long after the last fresh lookup of their region ended: a burst of
/// spec changes (a flip of the whole fleet) reaches the observer as a stream of fresh lookups
/// with short gaps between them, and a page slipped into each gap would take a rate-limit token
/// from the next one.
const HOLDOFF: Duration = Duration::from_millis(250);

/// Lookups of a region that wait for a fresh reading: periodic pages of the region wait while
/// there is one (and [`HOLDOFF`] after), so the latency path gets the rate-limit tokens first.
#[derive(Default)]
struct Priority {
    /// Per region: fresh lookups pending, and when the last one ended.
    pending: Mutex<HashMap<String, (usize, Option<Instant>)>>,
    idle: Notify,
}

/// Counts one pending fresh lookup of a region while it lives.
struct Urgent<'a> {
    priority: &'a Priority,
    region: String,
}

impl Priority {
    fn urgent(&self, region: &str) -> Urgent<'_> {
        lock(&self.pending).entry(region.to_string()).or_default().0 += 1;
        Urgent {
            priority: self,
            region: region.to_string(),
        }
    }

    /// `Err(())` while a fresh lookup of `region` is pending; `Ok(Some(t))` until `t`, the end
    /// of the hold-off after the last one; `Ok(None)` when a page may go.
    fn state(&self, region: &str) -> Result<Option<Instant>, ()> {
        match lock(&self.pending).get(region) {
            Some((n, _)) if *n > 0 => Err(()),
            Some((_, Some(ended))) if *ended + HOLDOFF > Instant::now() => {
                Ok(Some(*ended + HOLDOFF))
            }
            _ => Ok(None),
        }
    }

    /// Resolves when no fresh lookup of `region` is pending or has ended in the last
    /// [`HOLDOFF`].
    async fn idle(&self, region: &str) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.state(region) {
                Ok(None) => return,
                Ok(Some(until)) => tokio::time::sleep_until(until).await,
                Err(()) => notified.await,
            }
        }
    }
}

impl Drop for Urgent<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.priority.pending);
        if let Some((n, ended)) = pending.get_mut(&self.region) {
            *n -= 1;
            *ended = Some(Instant::now());
            if *n == 0 {
                self.priority.idle.notify_waiters();
            }
        }
    }
}

/// What the observer, its reader and the invalidating decorators share.
struct Shared {
    settings: FleetSettings,
    fleets: Mutex<HashMap<Key, Fleet>>,
    /// A fleet was created: the reader starts reading it.
    new_fleet: Notify,
    priority: Priority,
    /// Where triggers go while a controller run polls [`Observer::changes`].
    triggers: Mutex<Option<mpsc::UnboundedSender<ObjectRef<EcsInstance>>>>,
}

impl Shared {
    /// Runs `f` on the fleet of `key`, if there is one.
    fn with<T>(&self, key: &Key, f: impl FnOnce(&mut Fleet) -> T) -> Option<T> {
        lock(&self.fleets).get_mut(key).map(f)
    }

    /// Reconciles `objects` (nobody does while no run polls the changes).
    fn trigger(&self, objects: Vec<ObjectRef<EcsInstance>>) {
        if objects.is_empty() {
            return;
        }
        if let Some(tx) = lock(&self.triggers).as_ref() {
            for object in objects {
                let _ = tx.send(object);
            }
        }
    }

    /// A power call about `ids` returned: their readings so far no longer tell their state.
    fn acted(&self, key: &Key, ids: &[String]) {
        let now = Instant::now();
        self.with(key, |fleet| {
            for id in ids {
                fleet.acted(id, now);
            }
        });
    }
}

/// The fleet observer (see the module docs).
pub(crate) struct FleetObserver {
    shared: Arc<Shared>,
    /// Reads for lookups that need a fresh reading, coalesced.
    fresh: BatchingObserver,
}

impl FleetObserver {
    pub(crate) fn new(settings: FleetSettings) -> Self {
        Self {
            fresh: BatchingObserver::new(settings.batch),
            shared: Arc::new(Shared {
                settings,
                fleets: Mutex::default(),
                new_fleet: Notify::new(),
                priority: Priority::default(),
                triggers: Mutex::default(),
            }),
        }
    }

    /// `inner`, invalidating readings at its power calls so that readings sent before them answer nobody.
    pub(crate) fn invalidating(
        &self,
        inner: Arc<dyn ecs_client::EcsApi>,
        credentials_key: String,
    ) -> InvalidatingEcs {
        InvalidatingEcs::new(inner, self.shared.clone(), credentials_key)
    }

    /// Registers the lookup's instance and object; the view when it may answer.
    fn look(&self, key: &Key, lookup: &Lookup) -> Option<Option<Instance>> {
        let now = Instant::now();
        let settings = &self.shared.settings;
        let mut fleets = lock(&self.shared.fleets);
        let fleet = fleets.entry(key.clone()).or_insert_with(|| {
            self.shared.new_fleet.notify_one();
            Fleet::new(lookup.region.clone(), lookup.ecs.clone(), now, settings)
        });
        fleet.ecs = lookup.ecs.clone();
        fleet.look(
            &lookup.instance_id,
            &lookup.object,
            lookup.freshness,
            now,
            settings,
        )
    }
}

#[async_trait]
impl Observer for FleetObserver {
    async fn observe(&self, lookup: &Lookup) -> Result<Option<Instance>, EcsError> {
        let key = (lookup.credentials_key.clone(), lookup.region.clone());
        if let Some(view) = self.look(&key, lookup) {
            return Ok(view);
        }
        let sent_at = Instant::now();
        let instance = {
            let _urgent = self.shared.priority.urgent(&lookup.region);
            self.fresh.observe(lookup).await?
        };
        let triggers = self.shared.with(&key, |fleet| {
            fleet.looked(
                &lookup.instance_id,
                &lookup.object,
                instance.as_ref(),
                sent_at,
                Instant::now(),
            )
        });
        // Other objects of the same instance, to whom this reading is news.
        self.shared.trigger(triggers.unwrap_or_default());
        Ok(instance)
    }

    fn forget(&self, object: &ObjectRef<EcsInstance>) {
        for fleet in lock(&self.shared.fleets).values_mut() {
            fleet.forget(object);
        }
    }

    fn changes(
        &self,
        store: Store<EcsInstance>,
        listed: Listed,
    ) -> BoxStream<'static, ObjectRef<EcsInstance>> {
        let (tx, rx) = mpsc::unbounded_channel();
        // A new run replaces the last one's channel (a lease lost and won again).
        *lock(&self.shared.triggers) = Some(tx);
        let driver = reader::drive(self.shared.clone(), store, listed);
        let triggers =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) });
        let driver = futures::stream::once(driver).filter_map(|()| std::future::ready(None));
        futures::stream::select(triggers, driver).boxed()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the map usable; keep observing.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
