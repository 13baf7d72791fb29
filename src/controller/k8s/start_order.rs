//! Ordered start and stop (`spec.startAfter`) on the Kubernetes side: where the reconciles
//! read the other EcsInstances, and what a change of one wakes.
//!
//! - [`InstanceCache`]: the EcsInstance reflector store of the current run, read as the
//!   reconcile's [`Neighbours`] (no API request per reconcile).
//! - [`OrderWakes`]: inspects the EcsInstance watch after it is reflected, and wakes only the
//!   objects whose hold may have ended or begun: when an instance reaches or leaves `Running and
//!   Ready` (or appears, or goes away), those that start after it; when it reaches or leaves
//!   `Stopped`, those it starts after; when its `startAfter` changes, the names it gained or
//!   lost. A held start or stop is woken, never polled; and an object is not woken by every
//!   intermediate transition of its neighbours (a fleet's takeover would ping-pong wakes between
//!   the tiers, each landing just after the object's own status write, before the cache has it).
//!   (Status writes do not trigger an object's own reconcile: see `runtime`.)

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use futures::channel::mpsc;
use kube::ResourceExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::EcsInstance;
use crate::controller::reconcile::neighbours::Neighbours;
use crate::ordering::{Needed, Peer};

/// The EcsInstance store of the current controller run (each leadership term watches afresh).
pub(crate) struct InstanceCache(RwLock<Store<EcsInstance>>);

impl Default for InstanceCache {
    fn default() -> Self {
        Self(RwLock::new(reflector::store().0))
    }
}

impl InstanceCache {
    /// The store of a new run.
    pub(crate) fn set(&self, store: Store<EcsInstance>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = store;
    }

    fn store(&self) -> Store<EcsInstance> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Neighbours for InstanceCache {
    fn get(&self, namespace: &str, name: &str) -> Option<Peer> {
        let found = self.store().get(&ObjectRef::new(name).within(namespace));
        found.map(|obj| Peer::of(&obj))
    }

    fn starting_after(&self, namespace: &str, name: &str) -> Vec<(String, Peer)> {
        self.store()
            .state()
            .iter()
            .filter(|o| {
                o.namespace().as_deref() == Some(namespace)
                    && o.spec.start_after.iter().any(|n| n == name)
            })
            .map(|o| (o.name_any(), Peer::of(o)))
            .collect()
    }
}

/// Wakes the neighbours of an instance whose part in the ordering changed.
pub(crate) struct OrderWakes {
    /// What ordering last saw of each object (only objects with a neighbour are worth
    /// remembering, but an object may gain one at any time: all are kept).
    seen: HashMap<ObjectRef<EcsInstance>, Peer>,
    /// `(namespace, name)` → the names in that namespace that start after it (whether or not
    /// an object of that name exists yet: creating it wakes them).
    started_after: HashMap<(String, String), BTreeSet<String>>,
    sender: mpsc::UnboundedSender<ObjectRef<EcsInstance>>,
}

impl OrderWakes {
    /// The inspector and the stream of objects to reconcile.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<EcsInstance>>) {
        let (sender, receiver) = mpsc::unbounded();
        let wakes = Self {
            seen: HashMap::new(),
            started_after: HashMap::new(),
            sender,
        };
        (wakes, receiver)
    }

    pub(crate) fn inspect(&mut self, event: &Result<watcher::Event<EcsInstance>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                self.now(obj, Some(Peer::of(obj)));
            }
            Ok(watcher::Event::Delete(obj)) => self.now(obj, None),
            // Objects deleted while the watch re-listed stay remembered: at worst a wake for a
            // name that is gone, which the controller drops.
            Ok(watcher::Event::Init | watcher::Event::InitDone) | Err(_) => {}
        }
    }

    /// `obj` is now `peer` (`None`: deleted).
    fn now(&mut self, obj: &EcsInstance, peer: Option<Peer>) {
        let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        let key = ObjectRef::from_obj(obj);
        let before = match &peer {
            Some(peer) => self.seen.insert(key, peer.clone()),
            None => self.seen.remove(&key),
        };
        if before == peer {
            return;
        }
        let flipped = |needed: Needed| {
            before.as_ref().map(|p| p.reached(needed)) != peer.as_ref().map(|p| p.reached(needed))
        };
        let (up, down) = (flipped(Needed::RunningAndReady), flipped(Needed::Stopped));
        let old_edges = before.map(|p| p.start_after).unwrap_or_default();
        let new_edges = peer.map(|p| p.start_after).unwrap_or_default();
        for gone in old_edges.iter().filter(|n| !new_edges.contains(n)) {
            let entry = (namespace.clone(), gone.clone());
            if let Some(names) = self.started_after.get_mut(&entry) {
                names.remove(&name);
                if names.is_empty() {
                    self.started_after.remove(&entry);
                }
            }
        }
        for added in &new_edges {
            self.started_after
                .entry((namespace.clone(), added.clone()))
                .or_default()
                .insert(name.clone());
        }
        // Those it starts after: a stop of theirs waits for it to be Stopped; an edge gained or
        // lost holds or releases one.
        let mut woken: BTreeSet<String> = old_edges
            .iter()
            .chain(&new_edges)
            .filter(|n| down || old_edges.contains(n) != new_edges.contains(n))
            .cloned()
            .collect();
        // Those that start after it: a start of theirs waits for it to be Running and Ready.
        if up {
            let dependents = self.started_after.get(&(namespace.clone(), name.clone()));
            woken.extend(dependents.into_iter().flatten().cloned());
        }
        woken.remove(&name);
        for n in woken {
            // The receiver is gone only when the run is stopping.
            let _ = self
                .sender
                .unbounded_send(ObjectRef::new(&n).within(&namespace));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EcsInstanceSpec, EcsInstanceStatus, PowerState};
    use ecs_client::InstanceStatus;

    fn object(name: &str, after: &[&str], instance: Option<InstanceStatus>) -> EcsInstance {
        let mut obj = EcsInstance::new(name, EcsInstanceSpec::minimal("i-x", PowerState::Running));
        obj.metadata.namespace = Some("shop".into());
        obj.spec.start_after = after.iter().map(|s| s.to_string()).collect();
        obj.status = instance.map(|i| EcsInstanceStatus {
            instance_status: Some(i),
            ..EcsInstanceStatus::default()
        });
        obj
    }

    fn ready(mut obj: EcsInstance) -> EcsInstance {
        if let Some(status) = obj.status.as_mut() {
            status.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "InstanceRunning".into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH,
                ),
            }];
        }
        obj
    }

    /// db → app → web: app reaching Running and Ready wakes web (its start waited for that),
    /// app reaching Stopped wakes db (its stop waited for that); a transition in between, or a
    /// status write that changes nothing ordering reads, wakes nobody; a name created late wakes
    /// those waiting for it; an edge dropped releases the one it held.
    #[test]
    fn a_change_wakes_only_the_neighbours_whose_hold_it_may_end() {
        use InstanceStatus::{Running, Starting, Stopped};
        let (mut wakes, mut woken) = OrderWakes::new();
        let mut drain = || {
            let mut out = Vec::new();
            while let Ok(r) = woken.try_recv() {
                out.push(r.name);
            }
            out.sort();
            out
        };
        let apply = |obj: EcsInstance| Ok(watcher::Event::Apply(obj));
        // Appearing: both sides (app, which web names, does not exist yet).
        wakes.inspect(&apply(object("web", &["app"], None)));
        assert_eq!(drain(), ["app"]);
        wakes.inspect(&apply(object("app", &["db"], None)));
        assert_eq!(drain(), ["db", "web"]);
        // The same again: no wake.
        wakes.inspect(&apply(object("app", &["db"], None)));
        assert!(drain().is_empty());
        // Observed Stopped: db (whose stop waits for app) is woken, web is not.
        wakes.inspect(&apply(object("app", &["db"], Some(Stopped))));
        assert_eq!(drain(), ["db"]);
        // Starting: nobody's hold changes.
        wakes.inspect(&apply(object("app", &["db"], Some(Starting))));
        assert_eq!(drain(), ["db"], "leaving Stopped may hold db's stop again");
        wakes.inspect(&apply(object("app", &["db"], Some(Running))));
        assert!(drain().is_empty());
        // Running and Ready: web may start.
        wakes.inspect(&apply(ready(object("app", &["db"], Some(Running)))));
        assert_eq!(drain(), ["web"]);
        // db created after app named it: app is woken.
        wakes.inspect(&apply(object("db", &[], Some(Stopped))));
        assert_eq!(drain(), ["app"]);
        // web no longer starts after app: app (whose stop it held) is woken.
        wakes.inspect(&apply(object("web", &[], None)));
        assert_eq!(drain(), ["app"]);
        // app goes away: db (its dependency) is woken; web no longer names it.
        wakes.inspect(&Ok(watcher::Event::Delete(object("app", &["db"], None))));
        assert_eq!(drain(), ["db"]);
    }
}
