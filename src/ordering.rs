//! Ordered start and stop (`spec.startAfter`), as pure functions of one namespace's
//! EcsInstances: no I/O, no clock. The reconcile asks [`hold`] before a start or a stop; the
//! `plan` command reads the same graph ([`Peers::start_after`], [`Peers::started_after`],
//! [`Peers::cycle_through`]) to say which change comes after which.
//!
//! The rules, in full:
//! - A **start** of an instance waits until every instance it names in `spec.startAfter` is
//!   `Running` and `Ready` (its status says so: the controller brought it there). A name that
//!   is not in the namespace waits too (and is reported as missing: creating it releases the
//!   wait once it is up).
//! - A **stop** waits until every instance that names it in `spec.startAfter` is `Stopped`
//!   (down in reverse order). Dependents only ever exist, so nothing is missing on the way down.
//! - A `paused` or `dryRun` instance never makes the change itself, so it can only ever be
//!   satisfied by its instance being in the needed state (`Running` for a start, whatever its
//!   conditions say; `Stopped` for a stop).
//! - An instance on a **cycle** of `startAfter` (itself included) would wait forever: neither
//!   change is made, and the cycle is reported by name, in order.
//! - Only the direct neighbours matter: in a chain `db → app → web`, web waits for app, and app
//!   waited for db before it was up.
//! - Reboots are not ordered (the reconcile asks only for starts and stops).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use ecs_client::InstanceStatus;

use crate::api::{EcsInstance, EcsInstanceStatus};

/// The power change an instance is about to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Start,
    Stop,
}

/// What a neighbour must reach before the change may be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needed {
    /// A start's dependency: `Running`, and `Ready` unless paused or a dry run.
    RunningAndReady,
    /// A stop's dependent: `Stopped`.
    Stopped,
}

impl Needed {
    fn as_str(self) -> &'static str {
        match self {
            Self::RunningAndReady => "Running and Ready",
            Self::Stopped => "Stopped",
        }
    }
}

/// One EcsInstance as ordering sees it: its edges and what its status says now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    /// `spec.startAfter`.
    pub start_after: Vec<String>,
    /// `status.instanceStatus`: what ECS showed last (`None`: not observed yet).
    pub instance: Option<InstanceStatus>,
    /// `Ready=True`.
    pub ready: bool,
    /// `paused` annotation or `spec.dryRun`: it makes no change itself.
    pub inert: bool,
}

impl Peer {
    /// The peer of an EcsInstance object.
    pub(crate) fn of(obj: &EcsInstance) -> Self {
        let status = obj.status.as_ref();
        Self {
            start_after: obj.spec.start_after.clone(),
            instance: status.and_then(|s| s.instance_status),
            ready: status.is_some_and(is_ready),
            inert: obj.is_paused() || obj.spec.dry_run,
        }
    }

    /// Whether this peer is where `needed` wants it.
    pub(crate) fn reached(&self, needed: Needed) -> bool {
        match needed {
            Needed::Stopped => self.instance == Some(InstanceStatus::Stopped),
            Needed::RunningAndReady => {
                self.instance == Some(InstanceStatus::Running) && (self.ready || self.inert)
            }
        }
    }
}

fn is_ready(status: &EcsInstanceStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// One namespace's EcsInstances, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Peers(BTreeMap<String, Peer>);

impl FromIterator<(String, Peer)> for Peers {
    fn from_iter<I: IntoIterator<Item = (String, Peer)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Peers {
    /// The peers of `objects` in `namespace` (others are skipped): for the `plan` command.
    pub(crate) fn in_namespace<'a>(
        objects: impl IntoIterator<Item = &'a EcsInstance>,
        namespace: &str,
    ) -> Self {
        objects
            .into_iter()
            .filter(|o| o.metadata.namespace.as_deref() == Some(namespace))
            .filter_map(|o| Some((o.metadata.name.clone()?, Peer::of(o))))
            .collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Peer> {
        self.0.get(name)
    }

    /// Adds or replaces `name` (the object being reconciled, in its freshest copy).
    pub(crate) fn insert(&mut self, name: String, peer: Peer) {
        self.0.insert(name, peer);
    }

    /// The peers [`hold`] reads for `name` about to make `change`, and no others: `name`
    /// itself (`me`), everything its `startAfter` reaches (`get` looks a name up), and for a
    /// stop the instances that start after it (`starting_after`, asked only then). A watch
    /// cache of thousands of objects is not copied for every start.
    pub(crate) fn gather(
        name: &str,
        change: Change,
        me: Peer,
        get: impl Fn(&str) -> Option<Peer>,
        starting_after: impl FnOnce() -> Vec<(String, Peer)>,
    ) -> Self {
        let mut peers = Self::default();
        let mut queue: VecDeque<String> = me.start_after.iter().cloned().collect();
        peers.insert(name.to_string(), me);
        while let Some(next) = queue.pop_front() {
            if peers.0.contains_key(&next) {
                continue;
            }
            if let Some(peer) = get(&next) {
                queue.extend(peer.start_after.iter().cloned());
                peers.insert(next, peer);
            }
        }
        if change == Change::Stop {
            for (n, peer) in starting_after() {
                peers.0.entry(n).or_insert(peer);
            }
        }
        peers
    }

    /// The names `name` starts after (its `spec.startAfter`, sorted, without repeats).
    pub(crate) fn start_after(&self, name: &str) -> BTreeSet<&str> {
        self.0
            .get(name)
            .map(|p| p.start_after.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The instances that start after `name` (name it in their `spec.startAfter`), sorted.
    pub(crate) fn started_after(&self, name: &str) -> BTreeSet<&str> {
        self.0
            .iter()
            .filter(|(_, p)| p.start_after.iter().any(|n| n == name))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// A cycle of `startAfter` through `name`, shortest first (ties by name), as
    /// `[name, a, …, name]` in startAfter order (`name` starts after `a`, …); `None` when
    /// `name` is on none.
    pub(crate) fn cycle_through(&self, name: &str) -> Option<Vec<String>> {
        // Breadth-first from `name` along startAfter: the first path back to it is the
        // shortest, and sorted neighbours make it the same one every time.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([name]);
        while let Some(at) = queue.pop_front() {
            for next in self.start_after(at) {
                if next == name {
                    // Back from `at` to `name`, then turned around: [name, …, at, name].
                    let mut path = vec![at];
                    while let Some(&before) = path.last().and_then(|n| came_from.get(n)) {
                        path.push(before);
                    }
                    path.reverse();
                    path.push(name);
                    return Some(path.into_iter().map(str::to_string).collect());
                }
                if self.0.contains_key(next) && !came_from.contains_key(next) {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    }
}

/// A neighbour the change waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Waited {
    pub name: String,
    /// What its status says now; `None`: not observed yet, or (with `missing`) no such object.
    pub now: Option<InstanceStatus>,
    /// No EcsInstance of that name in the namespace.
    pub missing: bool,
}

/// Why a change must not be made now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Waiting for these neighbours (sorted by name) to reach `needed`.
    Waiting {
        change: Change,
        needed: Needed,
        on: Vec<Waited>,
    },
    /// The instance is on this cycle of `startAfter` (`[name, …, name]`): it would wait for
    /// itself.
    Cycle(Vec<String>),
}

/// Whether `name`, about to make `change`, must wait (see the module docs). `None`: go ahead.
pub(crate) fn hold(name: &str, change: Change, peers: &Peers) -> Option<Hold> {
    if let Some(cycle) = peers.cycle_through(name) {
        return Some(Hold::Cycle(cycle));
    }
    let (neighbours, needed) = match change {
        Change::Start => (peers.start_after(name), Needed::RunningAndReady),
        Change::Stop => (peers.started_after(name), Needed::Stopped),
    };
    let on: Vec<Waited> = neighbours
        .into_iter()
        .filter_map(|n| match peers.get(n) {
            None => Some(Waited {
                name: n.to_string(),
                now: None,
                missing: true,
            }),
            Some(peer) if peer.reached(needed) => None,
            Some(peer) => Some(Waited {
                name: n.to_string(),
                now: peer.instance,
                missing: false,
            }),
        })
        .collect();
    (!on.is_empty()).then_some(Hold::Waiting { change, needed, on })
}

impl fmt::Display for Hold {
    /// The message a person reads in the `Ready` condition.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cycle(names) => write!(
                f,
                "spec.startAfter forms a cycle: {}. Neither a start nor a stop is made while it stands: remove one of these names from spec.startAfter.",
                names.join(" → ")
            ),
            Self::Waiting { change, needed, on } => {
                let (present, missing): (Vec<&Waited>, Vec<&Waited>) =
                    on.iter().partition(|w| !w.missing);
                let verb = match change {
                    Change::Start => "starting",
                    Change::Stop => "stopping",
                };
                let relation = match change {
                    Change::Start => "spec.startAfter",
                    Change::Stop => "they start after this one",
                };
                write!(f, "Waiting before {verb} ({relation}):")?;
                if !present.is_empty() {
                    let named: Vec<String> = present
                        .iter()
                        // Not the neighbour's state now: the message would go stale (and the
                        // status be rewritten) at each of its transitions.
                        .map(|w| match w.now {
                            Some(_) => w.name.clone(),
                            None => format!("{} (not observed yet)", w.name),
                        })
                        .collect();
                    write!(f, " {} to be {}.", named.join(", "), needed.as_str())?;
                }
                if !missing.is_empty() {
                    let names: Vec<&str> = missing.iter().map(|w| w.name.as_str()).collect();
                    write!(
                        f,
                        " {} {} not exist in this namespace: create {} or remove {} from spec.startAfter.",
                        names.join(", "),
                        if names.len() == 1 { "does" } else { "do" },
                        if names.len() == 1 { "it" } else { "them" },
                        if names.len() == 1 { "it" } else { "them" },
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
