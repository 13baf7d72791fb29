//! What one fleet (credential set, region) knows: the managed instances, the last reading of
//! each, which object saw what, and which read is due next. No I/O: the reader asks
//! [`Fleet::next_read`] what to read, reads it, and hands the answer to [`Fleet::apply`], which
//! says whom to trigger.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use super::FleetSettings;
use crate::api::EcsInstance;
use crate::controller::ecs::observe::Freshness;
use ecs_client::client::MAX_IDS_PER_CALL;
use ecs_client::{EcsApi, Instance, InstanceStatus};

/// What ECS said of an instance, and when the request that said it was sent.
#[derive(Clone, Debug)]
struct Reading {
    /// `None`: ECS does not know the instance.
    instance: Option<Instance>,
    sent_at: Instant,
}

/// An object that looks at the instance, and what it last saw (as a fingerprint).
#[derive(Clone, Debug)]
struct Watcher {
    /// What the object's last reconcile was answered (`None`: not yet answered).
    answered: Option<u64>,
    /// What it was last triggered for, so one change triggers it once.
    triggered: Option<u64>,
    last_lookup: Instant,
}

#[derive(Clone, Debug, Default)]
struct Member {
    reading: Option<Reading>,
    /// The last power call about the instance returned at this instant: a reading sent before it
    /// no longer tells the instance's state.
    acted_at: Option<Instant>,
    /// A page with this id was refused as malformed: it is read on its own, by its reconciles,
    /// until a read of it succeeds.
    unreadable: bool,
    watchers: HashMap<ObjectRef<EcsInstance>, Watcher>,
}

impl Member {
    fn in_transition(&self) -> bool {
        self.reading.as_ref().is_some_and(|r| {
            r.instance.as_ref().is_some_and(|i| {
                matches!(
                    i.status,
                    InstanceStatus::Pending | InstanceStatus::Starting | InstanceStatus::Stopping
                )
            })
        })
    }

    /// The reading, if it may answer a look that needs `freshness` at `now`. A view older than
    /// `stale_after` still answers while `reading_well` (the fleet's last page succeeded: the
    /// pass is only slow, held back by the quota or by the latency path, and any change it finds
    /// triggers the object).
    fn usable(
        &self,
        freshness: Freshness,
        now: Instant,
        stale_after: Duration,
        reading_well: bool,
    ) -> Option<&Reading> {
        let reading = self.reading.as_ref()?;
        if self.unreadable || self.acted_at.is_some_and(|acted| reading.sent_at < acted) {
            return None;
        }
        let fresh = match freshness {
            Freshness::View => {
                reading_well || now.saturating_duration_since(reading.sent_at) <= stale_after
            }
            Freshness::After(since) => reading.sent_at >= since,
        };
        fresh.then_some(reading)
    }
}

/// What the reader is to do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// One DescribeInstances of these ids (at most 100).
    Read(Vec<String>),
    /// Nothing is due before this instant.
    Sleep(Instant),
    /// Nobody looks at any instance of the fleet any more.
    Empty,
}

/// One fleet's state.
pub(super) struct Fleet {
    pub(super) region: String,
    /// The handle of the latest lookup (every lookup of the fleet signs with the same key).
    pub(super) ecs: Arc<dyn EcsApi>,
    members: BTreeMap<String, Member>,
    /// The current full pass: pages not yet read, one every `page_interval`.
    pass: VecDeque<Vec<String>>,
    pass_started: Instant,
    page_interval: Duration,
    next_page_at: Instant,
    /// Pages of instances in transition, read before anything of the full pass.
    polls: VecDeque<Vec<String>>,
    next_poll_at: Instant,
    /// The last periodic page succeeded (`None`: none was read yet).
    last_page_ok: Option<bool>,
}

/// A fingerprint of what a look answers: equal fingerprints, nothing new to decide on.
pub(super) fn fingerprint(instance: Option<&Instance>) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(i) = instance {
        i.instance_id.hash(&mut h);
        i.status.hash(&mut h);
        i.start_time.hash(&mut h);
        i.stopped_mode.hash(&mut h);
        i.expired_time.hash(&mut h);
        for lock in &i.locks {
            lock.reason.hash(&mut h);
        }
    }
    h.finish()
}

impl Fleet {
    /// A fleet whose first full pass starts one resync from `now` (its first members were just
    /// read by the lookups that registered them).
    pub(super) fn new(
        region: String,
        ecs: Arc<dyn EcsApi>,
        now: Instant,
        settings: &FleetSettings,
    ) -> Self {
        Self {
            region,
            ecs,
            members: BTreeMap::new(),
            pass: VecDeque::new(),
            pass_started: now,
            page_interval: Duration::ZERO,
            next_page_at: now + settings.resync,
            polls: VecDeque::new(),
            next_poll_at: now + settings.transition_poll,
            last_page_ok: None,
        }
    }

    /// `object` looks at `id` (registering both): the reading, when it is fresh enough for
    /// `freshness`; then the object counts as having seen it.
    pub(super) fn look(
        &mut self,
        id: &str,
        object: &ObjectRef<EcsInstance>,
        freshness: Freshness,
        now: Instant,
        settings: &FleetSettings,
    ) -> Option<Option<Instance>> {
        let stale_after = settings.stale_after();
        let reading_well = self.last_page_ok == Some(true);
        let member = self.register(id, object, now);
        let reading = member.usable(freshness, now, stale_after, reading_well)?;
        let instance = reading.instance.clone();
        if let Some(watcher) = member.watchers.get_mut(object) {
            watcher.answered = Some(fingerprint(instance.as_ref()));
        }
        Some(instance)
    }

    /// `object` looks at `id` at `now`: both are managed from now on.
    fn register(&mut self, id: &str, object: &ObjectRef<EcsInstance>, now: Instant) -> &mut Member {
        let member = self.members.entry(id.to_string()).or_default();
        member
            .watchers
            .entry(object.clone())
            .or_insert_with(|| Watcher {
                answered: None,
                triggered: None,
                last_lookup: now,
            })
            .last_lookup = now;
        member
    }

    /// `object` may no longer use ECS (a gate refused it): it stops counting as a reader of any
    /// instance, and an instance nobody else reads leaves the pages still to be sent.
    pub(super) fn forget(&mut self, object: &ObjectRef<EcsInstance>) {
        self.members.retain(|_, m| {
            m.watchers.remove(object);
            !m.watchers.is_empty()
        });
        let members = &self.members;
        for page in self.pass.iter_mut().chain(self.polls.iter_mut()) {
            page.retain(|id| members.contains_key(id));
        }
        self.pass.retain(|page| !page.is_empty());
        self.polls.retain(|page| !page.is_empty());
    }

    /// A read made for `object`'s own look, sent at `sent_at`, answered `instance`: kept as the
    /// reading (unless a later one is there) and counted as seen by `object`. Other objects of
    /// the same instance are triggered if it is news to them.
    pub(super) fn looked(
        &mut self,
        id: &str,
        object: &ObjectRef<EcsInstance>,
        instance: Option<&Instance>,
        sent_at: Instant,
        now: Instant,
    ) -> Vec<ObjectRef<EcsInstance>> {
        let answered = fingerprint(instance);
        let member = self.register(id, object, now);
        if let Some(watcher) = member.watchers.get_mut(object) {
            watcher.answered = Some(answered);
        }
        let found: Vec<Instance> = instance.into_iter().cloned().collect();
        self.apply(&[id.to_string()], found, sent_at)
    }

    /// The answer of a DescribeInstances of `ids` sent at `sent_at`: each id not in `found` is
    /// unknown to ECS. Returns the objects to reconcile: those whose instance now differs from
    /// what they last saw.
    pub(super) fn apply(
        &mut self,
        ids: &[String],
        found: Vec<Instance>,
        sent_at: Instant,
    ) -> Vec<ObjectRef<EcsInstance>> {
        let mut found: HashMap<String, Instance> = found
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect();
        let mut triggers = Vec::new();
        for id in ids {
            let instance = found.remove(id);
            let Some(member) = self.members.get_mut(id) else {
                continue;
            };
            member.unreadable = false;
            // An older request answered late: what a later one said stands.
            if member.reading.as_ref().is_some_and(|r| r.sent_at > sent_at) {
                continue;
            }
            let print = fingerprint(instance.as_ref());
            member.reading = Some(Reading { instance, sent_at });
            for (object, watcher) in &mut member.watchers {
                let news = watcher.answered.is_some_and(|seen| seen != print);
                if news && watcher.triggered != Some(print) {
                    watcher.triggered = Some(print);
                    triggers.push(object.clone());
                }
            }
        }
        triggers
    }

    /// A periodic page succeeded (`true`) or failed.
    pub(super) fn page_read(&mut self, ok: bool) {
        self.last_page_ok = Some(ok);
    }

    /// A power call about `id` returned at `now`.
    pub(super) fn acted(&mut self, id: &str, now: Instant) {
        if let Some(member) = self.members.get_mut(id) {
            member.acted_at = Some(now);
        }
    }

    /// ECS refused a read of `id` on its own as malformed.
    pub(super) fn unreadable(&mut self, id: &str) {
        if let Some(member) = self.members.get_mut(id) {
            member.unreadable = true;
        }
    }

    /// What to read at `now`: due transition polls first, then the full pass's next page (a
    /// pass starts every resync and spreads its pages evenly over it). A new pass first drops
    /// the objects that have not looked for [`FleetSettings::idle_after`] and those `gone`
    /// says were deleted.
    pub(super) fn next_read(
        &mut self,
        now: Instant,
        settings: &FleetSettings,
        gone: impl Fn(&ObjectRef<EcsInstance>) -> bool,
    ) -> Next {
        if now >= self.next_poll_at {
            self.next_poll_at = now + settings.transition_poll;
            // Read in the last half period (by a reconcile's own look): not due yet.
            let recent = now.checked_sub(settings.transition_poll / 2);
            let moving: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| m.in_transition() && !m.unreadable)
                .filter(|(_, m)| {
                    let read_at = m.reading.as_ref().map(|r| r.sent_at);
                    recent.is_none_or(|recent| read_at.is_none_or(|at| at <= recent))
                })
                .map(|(id, _)| id.clone())
                .collect();
            self.polls.extend(pages(moving));
        }
        if let Some(page) = self.polls.pop_front() {
            return Next::Read(page);
        }
        if self.pass.is_empty() && now >= self.pass_started + settings.resync {
            self.start_pass(now, settings, gone);
        }
        if self.members.is_empty() {
            return Next::Empty;
        }
        if !self.pass.is_empty() && now >= self.next_page_at {
            self.next_page_at = now + self.page_interval;
            if let Some(page) = self.pass.pop_front() {
                return Next::Read(page);
            }
        }
        let pass_due = if self.pass.is_empty() {
            self.pass_started + settings.resync
        } else {
            self.next_page_at
        };
        Next::Sleep(pass_due.min(self.next_poll_at))
    }

    fn start_pass(
        &mut self,
        now: Instant,
        settings: &FleetSettings,
        gone: impl Fn(&ObjectRef<EcsInstance>) -> bool,
    ) {
        let idle_after = settings.idle_after();
        self.members.retain(|_, m| {
            m.watchers.retain(|object, w| {
                now.saturating_duration_since(w.last_lookup) <= idle_after && !gone(object)
            });
            !m.watchers.is_empty()
        });
        let ids: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.unreadable)
            .map(|(id, _)| id.clone())
            .collect();
        self.pass = pages(ids).collect();
        self.pass_started = now;
        self.next_page_at = now;
        let count = u32::try_from(self.pass.len().max(1)).unwrap_or(u32::MAX);
        self.page_interval = settings.resync / count;
    }
}

/// Sorted ids in full pages of 100.
fn pages(ids: Vec<String>) -> impl Iterator<Item = Vec<String>> {
    let mut ids = ids.into_iter().peekable();
    std::iter::from_fn(move || {
        ids.peek()?;
        Some(ids.by_ref().take(MAX_IDS_PER_CALL).collect())
    })
}
