//! One owner per ECS instance: which EcsInstance may act on a `(regionId, instanceId)` when
//! several name it, kept as an index of the watch cache.
//!
//! Two objects naming one VM, one `Running` and one `Stopped`, would start and stop it for
//! ever, each Ready in turn. So the oldest one (by `creationTimestamp`; ties by namespace, then
//! name) owns the instance and every other one makes no ECS call at all. `creationTimestamp`
//! never changes, so an owner keeps its instance until it is deleted or renamed away.
//!
//! [`OwnerIndex`] is maintained from the EcsInstance watch (the same events that fill the
//! reflector store), so the check is a map lookup, not a List or a scan of the store per
//! reconcile. When the members of an instance change (an owner deleted, an object pointed at
//! another instance), the index names the objects to reconcile at once, so the next owner takes
//! over without waiting for a resync. Status writes change no membership and wake nobody.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::api::EcsInstance;

/// The ECS instance an EcsInstance names: `(regionId, instanceId)`.
pub(crate) type InstanceKey = (String, String);

/// The instance `obj` names.
pub(crate) fn instance_key(obj: &EcsInstance) -> InstanceKey {
    (obj.spec.region_id.clone(), obj.spec.instance_id.clone())
}

/// An EcsInstance's place in the queue for its instance: ordered oldest first, then by
/// namespace, then by name, so the smallest claim owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Claim {
    /// `creationTimestamp` (an object without one, never seen from an API server, comes last).
    created: Timestamp,
    namespace: String,
    name: String,
}

impl Claim {
    pub(crate) fn of(obj: &EcsInstance) -> Self {
        Self {
            created: obj
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::MAX, |t| t.0),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        }
    }

    /// `namespace/name`, as messages name the owner.
    pub(crate) fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn object_ref(&self) -> ObjectRef<EcsInstance> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// The owner among `me` and the other claims on the same instance: the oldest.
pub(crate) fn owner<'a>(me: &'a Claim, others: impl IntoIterator<Item = &'a Claim>) -> &'a Claim {
    others.into_iter().fold(me, |best, c| best.min(c))
}

/// Who names which instance, from the watch.
#[derive(Default)]
pub(crate) struct OwnerIndex {
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    by_object: HashMap<ObjectRef<EcsInstance>, (InstanceKey, Claim)>,
    by_key: HashMap<InstanceKey, BTreeSet<Claim>>,
    /// The objects of a relist in progress (between `Init` and `InitDone`).
    relist: Option<HashMap<ObjectRef<EcsInstance>, (InstanceKey, Claim)>>,
}

impl OwnerIndex {
    /// The owner of the instance `obj` names: `obj` itself, or the older object it duplicates.
    pub(crate) fn owner_of(&self, obj: &EcsInstance) -> Claim {
        let me = Claim::of(obj);
        let members = self.lock();
        match members.by_key.get(&instance_key(obj)) {
            Some(claims) => owner(&me, claims).clone(),
            None => me,
        }
    }

    /// Applies one watch event; returns the objects to reconcile now because the members of
    /// their instance changed (the new owner among them).
    pub(crate) fn apply(&self, event: &watcher::Event<EcsInstance>) -> Vec<ObjectRef<EcsInstance>> {
        let mut members = self.lock();
        let changed = match event {
            watcher::Event::Apply(obj) => members.upsert(obj),
            watcher::Event::Delete(obj) => members.remove(&ObjectRef::from_obj(obj)),
            watcher::Event::Init => {
                members.relist = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                let entry = (instance_key(obj), Claim::of(obj));
                members
                    .relist
                    .get_or_insert_default()
                    .insert(ObjectRef::from_obj(obj), entry);
                Vec::new()
            }
            watcher::Event::InitDone => members.finish_relist(),
        };
        members.wake(changed)
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
    /// Adds or moves an object; returns the instances whose members changed.
    fn upsert(&mut self, obj: &EcsInstance) -> Vec<InstanceKey> {
        let object = ObjectRef::from_obj(obj);
        let entry = (instance_key(obj), Claim::of(obj));
        if self.by_object.get(&object) == Some(&entry) {
            return Vec::new();
        }
        let mut changed = self.remove(&object);
        self.by_key
            .entry(entry.0.clone())
            .or_default()
            .insert(entry.1.clone());
        changed.push(entry.0.clone());
        self.by_object.insert(object, entry);
        changed
    }

    fn remove(&mut self, object: &ObjectRef<EcsInstance>) -> Vec<InstanceKey> {
        let Some((key, claim)) = self.by_object.remove(object) else {
            return Vec::new();
        };
        if let Some(claims) = self.by_key.get_mut(&key) {
            claims.remove(&claim);
            if claims.is_empty() {
                self.by_key.remove(&key);
            }
        }
        vec![key]
    }

    /// Replaces the members with the relisted ones; returns the instances whose members differ.
    fn finish_relist(&mut self) -> Vec<InstanceKey> {
        let listed = self.relist.take().unwrap_or_default();
        let before = std::mem::take(&mut self.by_key);
        self.by_object = listed;
        for (key, claim) in self.by_object.values() {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(claim.clone());
        }
        let mut changed: Vec<InstanceKey> = before
            .iter()
            .filter(|(key, claims)| self.by_key.get(*key) != Some(claims))
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
            .map(Claim::object_ref)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceSpec, PowerState};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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

    #[test]
    fn the_oldest_owns_and_ties_go_by_namespace_then_name() {
        let old = Claim::of(&object("team-b", "z", "i-a", T1));
        let young = Claim::of(&object("team-a", "a", "i-a", T2));
        assert_eq!(owner(&young, [&old]), &old);
        assert_eq!(owner(&old, [&young]), &old);

        let same_time_a = Claim::of(&object("team-a", "z", "i-a", T1));
        let same_time_b = Claim::of(&object("team-b", "a", "i-a", T1));
        assert_eq!(owner(&same_time_b, [&same_time_a]), &same_time_a);
        let same_ns_x = Claim::of(&object("team-a", "x", "i-a", T1));
        assert_eq!(owner(&same_time_a, [&same_ns_x]), &same_ns_x);
        assert_eq!(owner(&old, []), &old);
        assert_eq!(old.display(), "team-b/z");
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
