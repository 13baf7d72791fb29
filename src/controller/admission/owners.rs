//! One owner per ECS instance: which EcsInstance may act on a `(regionId, instanceId)` when
//! several name it, kept as an index of the watch cache.
//!
//! Two objects naming one VM, one `Running` and one `Stopped`, would start and stop it for
//! ever, each Ready in turn. So one of them owns the instance and every other one makes no ECS
//! call at all. The rule ([`owner`], pure), in order:
//!
//! 1. **An object that has claimed the instance beats any that has not.** An object records
//!    its claim in `status.claimedAt`: in its first status write as the owner, and at the latest
//!    before its first mutating call (the reconcile's `claim_instance` step). An object that
//!    finds another one owns the instance clears its own claim. So once an object has acted on
//!    the instance, no other object takes it over while it exists.
//! 2. **Among claimed objects, the first claim**: the one this index saw first (claims the
//!    controller saw written arrive in the order the API server stored them), then, for claims
//!    first seen together (one list, after a restart), the earliest `claimedAt`.
//! 3. **Among unclaimed objects, the oldest**: `creationTimestamp` (whole seconds), then the
//!    order this index first saw them (the order the API server stored them, so two objects
//!    created within one second keep their order), then namespace, then name.
//!
//! Acting needs more than being the owner in the cache at one moment: the cache may not yet
//! have an object created just before (a lagging watch, a relist). So an object about to make
//! its first mutating call writes its claim first (conditional on the version it decided from),
//! waits until this index has seen that claim (the watch delivers events in the order the API
//! server stored them, so the index has then seen every object created before the claim, and
//! every claim written before it), and acts only if it still owns the instance
//! ([`OwnerIndex::owner_once_seen`]). An index no watch feeds (unit tests) answers at once.
//!
//! [`OwnerIndex`] is maintained from the EcsInstance watch (the same events that fill the
//! reflector store), so the check is a map lookup, not a List or a scan of the store per
//! reconcile. When the members of an instance change (an owner deleted, an object pointed at
//! another instance, a claim that changes the owner), the index names the objects to reconcile
//! at once, so the next owner takes over without waiting for a resync (a claim wakes the others,
//! never the object that wrote it). Other status writes change no membership and wake nobody.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::Notify;

use crate::api::EcsInstance;

/// The ECS instance an EcsInstance names: `(regionId, instanceId)`.
pub(crate) type InstanceKey = (String, String);

/// The instance `obj` names.
pub(crate) fn instance_key(obj: &EcsInstance) -> InstanceKey {
    (obj.spec.region_id.clone(), obj.spec.instance_id.clone())
}

/// The claim `obj` has recorded (`status.claimedAt`), if any.
pub(crate) fn recorded_claim(obj: &EcsInstance) -> Option<Timestamp> {
    obj.status
        .as_ref()
        .and_then(|s| s.claimed_at.as_ref())
        .map(|t| t.0)
}

/// A claim made `now`, as `status.claimedAt` keeps it (to the microsecond): the index
/// recognises a claim it sees by its exact value.
pub(crate) fn claim_time(now: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
}

/// Whether an object has claimed its instance, and how its claim ranks: ordered so that a claim
/// comes before no claim, and the first claim first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Standing {
    /// `status.claimedAt` is `at`; `seen` is when the index first saw this claim (its
    /// sequence number: claims first seen together share one).
    Claimed {
        seen: u64,
        at: Timestamp,
    },
    Unclaimed,
}

/// An EcsInstance's place in the queue for its instance ([`owner`]: the smallest owns).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Candidate {
    standing: Standing,
    /// `creationTimestamp` (an object without one, never seen from an API server, comes last).
    created: Timestamp,
    /// When the index first saw the object (its sequence number: objects first seen in one
    /// list share one).
    arrival: u64,
    namespace: String,
    name: String,
}

/// A sequence number for what the index has not seen.
const UNSEEN: u64 = u64::MAX;

impl Candidate {
    /// `obj` as the index would rank it if it saw it now: `seen` and `arrival` are the index's
    /// sequence numbers for its claim and for itself.
    fn new(obj: &EcsInstance, claim: Option<Timestamp>, seen: u64, arrival: u64) -> Self {
        Self {
            standing: match claim {
                Some(at) => Standing::Claimed { seen, at },
                None => Standing::Unclaimed,
            },
            created: obj
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::MAX, |t| t.0),
            arrival,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        }
    }

    /// `obj`, never seen by the index: behind every object and every claim it has seen.
    pub(crate) fn of(obj: &EcsInstance) -> Self {
        Self::new(obj, recorded_claim(obj), UNSEEN, UNSEEN)
    }

    /// Whether this is `obj`.
    pub(crate) fn is(&self, obj: &EcsInstance) -> bool {
        self.name == obj.name_any() && self.namespace == obj.namespace().unwrap_or_default()
    }

    /// `namespace/name`, as messages name the owner.
    pub(crate) fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn claim(&self) -> Option<Timestamp> {
        match self.standing {
            Standing::Claimed { at, .. } => Some(at),
            Standing::Unclaimed => None,
        }
    }

    fn object_ref(&self) -> ObjectRef<EcsInstance> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// The owner among `me` and the other candidates for the same instance (see the module docs).
pub(crate) fn owner<'a>(
    me: &'a Candidate,
    others: impl IntoIterator<Item = &'a Candidate>,
) -> &'a Candidate {
    others.into_iter().fold(me, |best, c| best.min(c))
}

/// Who names which instance, from the watch.
#[derive(Default)]
pub(crate) struct OwnerIndex {
    members: Mutex<Members>,
    /// A watch feeds the index ([`follow`]): waiting for it to see a claim makes sense.
    fed: AtomicBool,
    /// Woken at every event applied.
    applied: Notify,
}

/// Each object's instance and place.
type ByObject = HashMap<ObjectRef<EcsInstance>, (InstanceKey, Candidate)>;

#[derive(Default)]
struct Members {
    by_object: ByObject,
    by_key: HashMap<InstanceKey, BTreeSet<Candidate>>,
    /// The objects of a relist in progress (between `Init` and `InitDone`), and the sequence
    /// number of what it shows for the first time.
    relist: Option<(u64, ByObject)>,
    /// The last sequence number handed out.
    sequence: u64,
}

impl OwnerIndex {
    /// The owner of the instance `obj` names: `obj` itself, or the object it duplicates.
    pub(crate) fn owner_of(&self, obj: &EcsInstance) -> Candidate {
        self.lock().owner_of(obj, None)
    }

    /// After `obj` recorded its claim made `at`: waits (at most `within`) until the index has
    /// seen that claim, then the owner of the instance `obj` names. `None`: not seen in time.
    /// An index no watch feeds answers at once, as if it had seen it.
    pub(crate) async fn owner_once_seen(
        &self,
        obj: &EcsInstance,
        at: Timestamp,
        within: Duration,
    ) -> Option<Candidate> {
        if !self.fed.load(Ordering::SeqCst) {
            return Some(self.lock().owner_of(obj, Some(at)));
        }
        let object = ObjectRef::from_obj(obj);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let applied = self.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            {
                let members = self.lock();
                let seen = members
                    .by_object
                    .get(&object)
                    .is_some_and(|(key, c)| *key == instance_key(obj) && c.claim() == Some(at));
                if seen {
                    return Some(members.owner_of(obj, None));
                }
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                return None;
            }
        }
    }

    /// Applies one watch event; returns the objects to reconcile now because the members of
    /// their instance changed (the new owner among them).
    pub(crate) fn apply(&self, event: &watcher::Event<EcsInstance>) -> Vec<ObjectRef<EcsInstance>> {
        let woken = {
            let mut members = self.lock();
            match event {
                watcher::Event::Apply(obj) => members.upsert(obj),
                watcher::Event::Delete(obj) => {
                    let changed = members.remove(&ObjectRef::from_obj(obj));
                    members.wake(changed)
                }
                watcher::Event::Init => {
                    let sequence = members.next();
                    members.relist = Some((sequence, HashMap::new()));
                    Vec::new()
                }
                watcher::Event::InitApply(obj) => {
                    members.relisted(obj);
                    Vec::new()
                }
                watcher::Event::InitDone => {
                    let changed = members.finish_relist();
                    members.wake(changed)
                }
            }
        };
        self.applied.notify_waiters();
        woken
    }

    /// A watch feeds the index from now on.
    pub(crate) fn fed_by_watch(&self) {
        self.fed.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Feeds `index` from the EcsInstance watch `events` (after the reflector, so the store and the
/// index change together); returns the events, unchanged, and the objects to wake.
pub(crate) fn follow<S>(
    events: S,
    index: Arc<OwnerIndex>,
) -> (
    impl Stream<Item = S::Item> + Send + 'static,
    impl Stream<Item = ObjectRef<EcsInstance>> + Send + 'static,
)
where
    S: Stream<Item = Result<watcher::Event<EcsInstance>, watcher::Error>> + Send + 'static,
{
    index.fed_by_watch();
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let events = events.inspect(move |event| {
        if let Ok(event) = event {
            for object in index.apply(event) {
                // The receiver goes only with the controller run that polls both streams.
                let _ = wake.unbounded_send(object);
            }
        }
    });
    (events, woken)
}

impl Members {
    fn next(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// The owner of `obj`'s instance, `obj` ranked as the index has seen it (with the claim
    /// `claim` when given: one the index has not seen yet).
    fn owner_of(&self, obj: &EcsInstance, claim: Option<Timestamp>) -> Candidate {
        let key = instance_key(obj);
        let me = match (self.by_object.get(&ObjectRef::from_obj(obj)), claim) {
            (Some((k, c)), None) if *k == key => c.clone(),
            (Some((k, c)), Some(at)) if *k == key && c.claim() == Some(at) => c.clone(),
            (Some((k, c)), Some(at)) if *k == key => {
                Candidate::new(obj, Some(at), UNSEEN, c.arrival)
            }
            (_, Some(at)) => Candidate::new(obj, Some(at), UNSEEN, UNSEEN),
            (_, None) => Candidate::of(obj),
        };
        let others = self
            .by_key
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|c| !c.is(obj));
        owner(&me, others).clone()
    }

    /// `obj` ranked with what the index knew of it (`previous`), its new sightings numbered
    /// `sequence`.
    fn candidate(obj: &EcsInstance, previous: Option<&Candidate>, sequence: u64) -> Candidate {
        let claim = recorded_claim(obj);
        let seen = match previous.map(|p| p.standing) {
            Some(Standing::Claimed { seen, at }) if Some(at) == claim => seen,
            _ => sequence,
        };
        let arrival = previous.map_or(sequence, |p| p.arrival);
        Candidate::new(obj, claim, seen, arrival)
    }

    /// Adds or moves an object; returns the objects to wake: those naming the instances whose
    /// members changed, or, when only the object's claim changed (a status write), the others
    /// naming its instance if that changed its owner. Never the object itself for a change of
    /// its claim: its own pass wrote it, and an immediate second pass would decide on a copy
    /// that may not have the rest of that pass's status yet.
    fn upsert(&mut self, obj: &EcsInstance) -> Vec<ObjectRef<EcsInstance>> {
        let object = ObjectRef::from_obj(obj);
        let key = instance_key(obj);
        let previous = self.by_object.get(&object).cloned();
        let claim_only = match &previous {
            Some((known, p)) if *known == key => {
                if Self::candidate(obj, Some(p), UNSEEN) == *p {
                    return Vec::new();
                }
                true
            }
            _ => false,
        };
        let owner_before = self.owner_ref(&key);
        let sequence = self.next();
        let candidate = Self::candidate(obj, previous.as_ref().map(|(_, c)| c), sequence);
        let mut changed = self.remove(&object);
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(candidate.clone());
        changed.push(key.clone());
        self.by_object
            .insert(object.clone(), (key.clone(), candidate));
        if !claim_only {
            return self.wake(changed);
        }
        if self.owner_ref(&key) == owner_before {
            return Vec::new();
        }
        let mut woken = self.wake(changed);
        woken.retain(|o| *o != object);
        woken
    }

    /// Who owns `key` now.
    fn owner_ref(&self, key: &InstanceKey) -> Option<ObjectRef<EcsInstance>> {
        self.by_key
            .get(key)
            .and_then(BTreeSet::first)
            .map(Candidate::object_ref)
    }

    /// An object of the relist in progress.
    fn relisted(&mut self, obj: &EcsInstance) {
        let object = ObjectRef::from_obj(obj);
        let previous = self.by_object.get(&object).map(|(_, c)| c.clone());
        let sequence = match &self.relist {
            Some((sequence, _)) => *sequence,
            None => self.next(),
        };
        let entry = (
            instance_key(obj),
            Self::candidate(obj, previous.as_ref(), sequence),
        );
        self.relist
            .get_or_insert_with(|| (sequence, HashMap::new()))
            .1
            .insert(object, entry);
    }

    fn remove(&mut self, object: &ObjectRef<EcsInstance>) -> Vec<InstanceKey> {
        let Some((key, candidate)) = self.by_object.remove(object) else {
            return Vec::new();
        };
        if let Some(candidates) = self.by_key.get_mut(&key) {
            candidates.remove(&candidate);
            if candidates.is_empty() {
                self.by_key.remove(&key);
            }
        }
        vec![key]
    }

    /// Replaces the members with the relisted ones; returns the instances whose members differ.
    fn finish_relist(&mut self) -> Vec<InstanceKey> {
        let listed = self.relist.take().map(|(_, l)| l).unwrap_or_default();
        let before = std::mem::take(&mut self.by_key);
        self.by_object = listed;
        for (key, candidate) in self.by_object.values() {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(candidate.clone());
        }
        let mut changed: Vec<InstanceKey> = before
            .iter()
            .filter(|(key, candidates)| self.by_key.get(*key) != Some(candidates))
            .map(|(key, _)| key.clone())
            .collect();
        changed.extend(
            self.by_key
                .keys()
                .filter(|key| !before.contains_key(*key))
                .cloned(),
        );
        changed
    }

    /// The objects naming instances in `changed` (an object whose own event this is is named
    /// too: the controller's queue merges the two triggers).
    fn wake(&self, mut changed: Vec<InstanceKey>) -> Vec<ObjectRef<EcsInstance>> {
        changed.sort();
        changed.dedup();
        changed
            .iter()
            .filter_map(|key| self.by_key.get(key))
            .flatten()
            .map(Candidate::object_ref)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceSpec, PowerState};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

    fn object(namespace: &str, name: &str, id: &str, created: &str) -> EcsInstance {
        let mut obj = EcsInstance::new(name, EcsInstanceSpec::minimal(id, PowerState::Running));
        obj.metadata.namespace = Some(namespace.into());
        obj.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        obj
    }

    fn names(refs: Vec<ObjectRef<EcsInstance>>) -> Vec<String> {
        let mut names: Vec<String> = refs
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        names.sort();
        names
    }

    const T1: &str = "2026-11-27T01:00:00Z";
    const T2: &str = "2026-11-27T02:00:00Z";

    /// `obj` with its claim recorded at `at`.
    fn claimed(mut obj: EcsInstance, at: &str) -> EcsInstance {
        obj.status.get_or_insert_with(Default::default).claimed_at =
            Some(MicroTime(at.parse().unwrap()));
        obj
    }

    fn ts(at: &str) -> Timestamp {
        at.parse().unwrap()
    }

    #[test]
    fn the_rule_a_claim_first_then_the_first_claim_then_the_oldest_then_arrival_then_the_name() {
        let old = object("team-b", "z", "i-a", T1);
        let young = object("team-a", "a", "i-a", T2);
        let c = |obj: &EcsInstance, claim: Option<&str>, seen: u64, arrival: u64| {
            Candidate::new(obj, claim.map(ts), seen, arrival)
        };
        // Unclaimed: the oldest, whatever the names or the arrival.
        let (o, y) = (c(&old, None, 0, 9), c(&young, None, 0, 1));
        assert_eq!(owner(&y, [&o]), &o);
        assert_eq!(owner(&o, [&y]), &o);
        // Created in the same second: the one seen first, whatever the names.
        let zz = object("team-a", "zz-own", "i-a", T1);
        let aa = object("team-a", "aa-own", "i-a", T1);
        let (z, a) = (c(&zz, None, 0, 1), c(&aa, None, 0, 2));
        assert_eq!(owner(&a, [&z]), &z);
        // Seen together (one list): namespace, then name.
        let (z, a) = (c(&zz, None, 0, 5), c(&aa, None, 0, 5));
        assert_eq!(owner(&z, [&a]), &a);
        let other_ns = object("team-0", "zz", "i-a", T1);
        let n = c(&other_ns, None, 0, 5);
        assert_eq!(owner(&a, [&n]), &n);
        // A claim beats any object without one, however old.
        let y = c(&young, Some(T2), 7, 9);
        assert_eq!(owner(&o, [&y]), &y);
        // Between claims: the one seen first; claims seen together: the earlier claim.
        let (first, second) = (c(&young, Some(T2), 3, 9), c(&old, Some(T1), 4, 1));
        assert_eq!(owner(&second, [&first]), &first);
        let (later, earlier) = (c(&young, Some(T2), 3, 9), c(&old, Some(T1), 3, 1));
        assert_eq!(owner(&later, [&earlier]), &earlier);
        assert_eq!(owner(&o, []), &o);
        assert_eq!(o.display(), "team-b/z");
        assert!(o.is(&old) && !o.is(&young));
    }

    /// Issue 24 item 4: `zz-own` then `aa-own`, 0.5 s apart (the same `creationTimestamp`
    /// second). The name must not reverse the order they were created in; and once `zz-own`
    /// has claimed the instance, an object the index sees only later (a lagging watch) never
    /// takes it over, older or not.
    #[test]
    fn objects_created_within_one_second_keep_their_order_and_a_claim_keeps_the_instance() {
        for (first, second) in [("zz-own", "aa-own"), ("aa-own", "zz-own")] {
            let index = OwnerIndex::default();
            let a = object("team-a", first, "i-a", T1);
            let b = object("team-a", second, "i-a", T1);
            index.apply(&watcher::Event::Apply(a.clone()));
            index.apply(&watcher::Event::Apply(b.clone()));
            assert_eq!(index.owner_of(&b).display(), format!("team-a/{first}"));
            assert_eq!(index.owner_of(&a).display(), format!("team-a/{first}"));
        }

        let index = OwnerIndex::default();
        let late = object("team-a", "db", "i-a", T2);
        index.apply(&watcher::Event::Apply(late.clone()));
        let late = claimed(late, T2);
        assert!(
            index.apply(&watcher::Event::Apply(late.clone())).is_empty(),
            "a claim that changes no owner wakes nobody (its own pass wrote it)"
        );
        let older = object("team-0", "db", "i-a", T1);
        index.apply(&watcher::Event::Apply(older.clone()));
        assert_eq!(index.owner_of(&older).display(), "team-a/db");
        // The older object claims too (a controller that had not seen the first claim): the
        // claim seen first keeps the instance, although its time is later.
        let older = claimed(older, T1);
        index.apply(&watcher::Event::Apply(older.clone()));
        assert_eq!(index.owner_of(&older).display(), "team-a/db");
        // Withdrawn: the older one owns again, and is woken (not the one that withdrew).
        let mut withdrawn = late.clone();
        withdrawn.status.as_mut().unwrap().claimed_at = None;
        assert_eq!(
            names(index.apply(&watcher::Event::Apply(withdrawn))),
            ["team-0/db"]
        );
        assert_eq!(index.owner_of(&late).display(), "team-0/db");

        // After a restart (one list), the claims are seen together: the earlier one owns.
        let restarted = OwnerIndex::default();
        restarted.apply(&watcher::Event::Init);
        for obj in [&older, &late] {
            restarted.apply(&watcher::Event::InitApply((*obj).clone()));
        }
        restarted.apply(&watcher::Event::InitDone);
        assert_eq!(restarted.owner_of(&late).display(), "team-0/db");
    }

    /// The wait of an object about to act: answered once the index has seen its claim, with the
    /// owner then; not at all when the claim does not arrive in time; at once without a watch.
    #[tokio::test(start_paused = true)]
    async fn the_owner_is_answered_once_the_index_has_seen_the_claim() {
        let within = Duration::from_secs(5);
        let mine = object("team-a", "zz-own", "i-a", T1);
        let at = ts("2026-11-27T01:00:00.5Z");

        // No watch (unit tests): the claim counts as seen.
        let unfed = OwnerIndex::default();
        let owner = unfed.owner_once_seen(&mine, at, within).await.unwrap();
        assert!(owner.is(&mine));

        let index = Arc::new(OwnerIndex::default());
        index.fed_by_watch();
        index.apply(&watcher::Event::Apply(mine.clone()));
        // The claim never arrives: no answer.
        assert!(index.owner_once_seen(&mine, at, within).await.is_none());

        // An older object arrives first, then the claim: the claim still wins (it is the
        // only one), and the answer comes when the claim does.
        let waiting = tokio::spawn({
            let (index, mine) = (index.clone(), mine.clone());
            async move { index.owner_once_seen(&mine, at, within).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        let older = object("team-0", "db", "i-a", "2026-11-27T00:00:00Z");
        index.apply(&watcher::Event::Apply(older));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        let mut seen = mine.clone();
        seen.status.get_or_insert_with(Default::default).claimed_at = Some(MicroTime(at));
        index.apply(&watcher::Event::Apply(seen));
        assert!(waiting.await.unwrap().unwrap().is(&mine));

        // Another claim seen before this one: it owns.
        let index = OwnerIndex::default();
        index.fed_by_watch();
        let other = claimed(object("team-b", "db", "i-a", T2), T2);
        index.apply(&watcher::Event::Apply(other));
        let mine = claimed(mine, "2026-11-27T01:00:00.5Z");
        index.apply(&watcher::Event::Apply(mine.clone()));
        let owner = index.owner_once_seen(&mine, at, within).await.unwrap();
        assert_eq!(owner.display(), "team-b/db");
    }

    #[test]
    fn a_duplicate_sees_the_owner_and_the_next_one_is_woken_when_the_owner_goes() {
        let index = OwnerIndex::default();
        let owner_obj = object("team-a", "db", "i-a", T1);
        let duplicate = object("team-b", "db", "i-a", T2);
        let elsewhere = object("team-c", "web", "i-other", T1);

        // A new object is named with whoever shares its instance.
        assert_eq!(
            names(index.apply(&watcher::Event::Apply(owner_obj.clone()))),
            ["team-a/db"]
        );
        assert_eq!(
            names(index.apply(&watcher::Event::Apply(duplicate.clone()))),
            ["team-a/db", "team-b/db"]
        );
        assert_eq!(
            names(index.apply(&watcher::Event::Apply(elsewhere.clone()))),
            ["team-c/web"]
        );
        assert_eq!(index.owner_of(&duplicate).display(), "team-a/db");
        assert_eq!(index.owner_of(&owner_obj).display(), "team-a/db");
        assert_eq!(index.owner_of(&elsewhere).display(), "team-c/web");

        // A status write (same instance, same claim) changes nothing and wakes nobody.
        let mut written = duplicate.clone();
        written.metadata.resource_version = Some("42".into());
        assert!(index.apply(&watcher::Event::Apply(written)).is_empty());

        // The owner is deleted: the duplicate is woken and now owns.
        assert_eq!(
            names(index.apply(&watcher::Event::Delete(owner_obj.clone()))),
            ["team-b/db"]
        );
        assert_eq!(index.owner_of(&duplicate).display(), "team-b/db");
    }

    #[test]
    fn an_owner_pointed_elsewhere_hands_over_and_a_relist_wakes_only_what_changed() {
        let index = OwnerIndex::default();
        let first = object("team-a", "db", "i-a", T1);
        let second = object("team-b", "db", "i-a", T2);
        index.apply(&watcher::Event::Apply(first.clone()));
        index.apply(&watcher::Event::Apply(second.clone()));

        let mut moved = first.clone();
        moved.spec.instance_id = "i-b".into();
        assert_eq!(
            names(index.apply(&watcher::Event::Apply(moved.clone()))),
            ["team-a/db", "team-b/db"]
        );
        assert_eq!(index.owner_of(&second).display(), "team-b/db");

        // A relist that finds the same objects wakes nobody; one that misses the owner of a
        // shared instance (deleted while the watch was down) wakes the rest.
        let third = object("team-c", "db", "i-b", T2);
        index.apply(&watcher::Event::Apply(third.clone()));
        for objects in [vec![&moved, &second, &third], vec![&second, &third]] {
            index.apply(&watcher::Event::Init);
            for obj in &objects {
                index.apply(&watcher::Event::InitApply((*obj).clone()));
            }
            let woken = names(index.apply(&watcher::Event::InitDone));
            if objects.len() == 3 {
                assert!(woken.is_empty(), "{woken:?}");
            } else {
                assert_eq!(woken, ["team-c/db"]);
            }
        }
        assert_eq!(index.owner_of(&third).display(), "team-c/db");
    }
}
