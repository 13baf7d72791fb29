//! The start order (`spec.startAfter`) in the plan: which change goes after which at the same
//! instant, which change will wait past its time, and which instances are on a cycle (stalled:
//! none of their changes is made).
//!
//! The rules are [`crate::ordering`]'s, the controller's own; what the plan adds is time: a
//! neighbour's state at the instant of a change is predicted from the plan itself (its desired
//! state then, its own changes at that instant included). A paused or dry-run neighbour makes
//! no change itself, and a stalled one none either: those count by what their instance is now
//! (`status.instanceStatus`), as the controller counts them.

use std::collections::{BTreeMap, HashMap};

use ecs_client::InstanceStatus;
use jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{Change, Unchanged, UnchangedState};
use crate::api::{EcsInstance, PowerState};
use crate::ordering::{Hold, Peers};

/// (namespace, name).
type Key = (String, String);

/// Applies the start order to `changes` (and moves the changes of instances on a cycle to
/// `unchanged`, stalled), then sorts the changes: by time, then start order, namespace, name.
pub(super) fn apply(
    instances: &[EcsInstance],
    changes: &mut Vec<Change>,
    unchanged: &mut Vec<Unchanged>,
) {
    let peers = peers_by_namespace(instances);
    let objects: HashMap<Key, &EcsInstance> = instances
        .iter()
        .map(|o| ((o.namespace().unwrap_or_default(), o.name_any()), o))
        .collect();
    drop_cycles(&peers, changes, unchanged);

    let mut timelines: HashMap<Key, Vec<(Timestamp, PowerState)>> = HashMap::new();
    for c in changes.iter() {
        timelines
            .entry(key(c))
            .or_default()
            .push((c.time, c.power_state));
    }
    let steady: HashMap<Key, Option<PowerState>> = unchanged
        .iter()
        .map(|u| ((u.namespace.clone(), u.name.clone()), u.power_state))
        .collect();
    let prediction = Prediction {
        objects: &objects,
        timelines: &timelines,
        steady: &steady,
    };
    // Who starts after whom, once: asked for every stop.
    let mut dependents: HashMap<Key, Vec<&str>> = HashMap::new();
    for o in instances {
        for dependency in &o.spec.start_after {
            let list = dependents
                .entry((o.namespace().unwrap_or_default(), dependency.clone()))
                .or_default();
            list.push(o.meta().name.as_deref().unwrap_or_default());
        }
    }
    for list in dependents.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    for c in changes.iter_mut() {
        let Some(peers) = peers.get(&c.namespace) else {
            continue;
        };
        let neighbours: Vec<&str> = match c.power_state {
            PowerState::Running => peers.start_after(&c.name).into_iter().collect(),
            PowerState::Stopped => dependents.get(&key(c)).cloned().unwrap_or_default(),
        };
        let mut waits = Vec::new();
        for n in neighbours {
            let there = (c.namespace.clone(), n.to_string());
            let detail = match prediction.at(&there, c.time) {
                Predicted::Changes(state) if state == c.power_state => {
                    c.after.push(n.into());
                    None
                }
                Predicted::Is(Some(state)) if state == c.power_state => None,
                Predicted::Missing => Some("no such EcsInstance".to_string()),
                Predicted::Changes(state) | Predicted::Is(Some(state)) => {
                    Some(format!("{} then", state.as_str()))
                }
                Predicted::Is(None) => Some("its state unknown".to_string()),
            };
            if let Some(detail) = detail {
                c.waits_for.push(n.into());
                waits.push(format!("{n} ({detail})"));
            }
        }
        if !c.after.is_empty() {
            c.why.push_str(&format!("; after {}", c.after.join(", ")));
        }
        if !waits.is_empty() {
            let verb = match c.power_state {
                PowerState::Running => "the start",
                PowerState::Stopped => "the stop",
            };
            c.why.push_str(&format!(
                "; {verb} waits (spec.startAfter) for {}",
                waits.join(", ")
            ));
        }
    }
    let ranks = ranks(changes);
    changes.sort_by(|a, b| {
        (a.time, ranks[&(key(a), a.time)], &a.namespace, &a.name).cmp(&(
            b.time,
            ranks[&(key(b), b.time)],
            &b.namespace,
            &b.name,
        ))
    });
}

fn key(c: &Change) -> Key {
    (c.namespace.clone(), c.name.clone())
}

fn peers_by_namespace(instances: &[EcsInstance]) -> BTreeMap<String, Peers> {
    let mut namespaces: Vec<String> = instances
        .iter()
        .map(|o| o.namespace().unwrap_or_default())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
        .into_iter()
        .map(|ns| {
            let peers = Peers::in_namespace(instances, &ns);
            (ns, peers)
        })
        .collect()
}

/// The changes of an instance on a `startAfter` cycle are never made: it is stalled
/// (`DependencyCycle`), with the controller's message.
fn drop_cycles(
    peers: &BTreeMap<String, Peers>,
    changes: &mut Vec<Change>,
    unchanged: &mut Vec<Unchanged>,
) {
    // One search per instance, not per change.
    let mut cycles: HashMap<Key, Option<Vec<String>>> = HashMap::new();
    let mut stalled: BTreeMap<Key, Unchanged> = BTreeMap::new();
    changes.retain(|c| {
        let cycle = cycles.entry(key(c)).or_insert_with(|| {
            peers
                .get(&c.namespace)
                .and_then(|p| p.cycle_through(&c.name))
        });
        let Some(cycle) = cycle else {
            return true;
        };
        stalled.entry(key(c)).or_insert_with(|| Unchanged {
            namespace: c.namespace.clone(),
            name: c.name.clone(),
            instance_id: c.instance_id.clone(),
            state: UnchangedState::Stalled,
            reason: "DependencyCycle".to_string(),
            message: Hold::Cycle(cycle.clone()).to_string(),
            power_state: None,
            next: None,
        });
        false
    });
    unchanged.extend(stalled.into_values());
    unchanged.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
}

/// What a neighbour's state will be at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Predicted {
    /// No EcsInstance of that name.
    Missing,
    /// It changes to this state at that very instant.
    Changes(PowerState),
    /// It is in this state then (`None`: nobody can say: stalled, or never observed).
    Is(Option<PowerState>),
}

struct Prediction<'a> {
    objects: &'a HashMap<Key, &'a EcsInstance>,
    /// Each instance's changes, in time order.
    timelines: &'a HashMap<Key, Vec<(Timestamp, PowerState)>>,
    /// The desired state of the instances without changes (`None`: paused, stalled).
    steady: &'a HashMap<Key, Option<PowerState>>,
}

impl Prediction<'_> {
    fn at(&self, who: &Key, at: Timestamp) -> Predicted {
        let Some(object) = self.objects.get(who) else {
            return Predicted::Missing;
        };
        // A paused or dry-run instance changes nothing itself: only its instance counts.
        let inert = object.is_paused() || object.spec.dry_run;
        if !inert && let Some(timeline) = self.timelines.get(who) {
            return match timeline.iter().rev().find(|(t, _)| *t <= at) {
                Some((t, state)) if *t == at => Predicted::Changes(*state),
                Some((_, state)) => Predicted::Is(Some(*state)),
                // Before its first change: the other state (changes alternate).
                None => Predicted::Is(Some(opposite(timeline[0].1))),
            };
        }
        match self.steady.get(who).copied().flatten() {
            Some(state) if !inert => Predicted::Is(Some(state)),
            _ => Predicted::Is(observed(object)),
        }
    }
}

fn opposite(state: PowerState) -> PowerState {
    match state {
        PowerState::Running => PowerState::Stopped,
        PowerState::Stopped => PowerState::Running,
    }
}

/// What the instance is now, as its status says (`Running` or `Stopped`; else unknown).
fn observed(object: &EcsInstance) -> Option<PowerState> {
    match object.status.as_ref()?.instance_status? {
        InstanceStatus::Running => Some(PowerState::Running),
        InstanceStatus::Stopped => Some(PowerState::Stopped),
        _ => None,
    }
}

/// Each change's place in the start order among the changes at its instant: 0 for one that
/// goes after none, else one more than the latest it goes after.
fn ranks(changes: &[Change]) -> HashMap<(Key, Timestamp), usize> {
    let by_key: HashMap<(Key, Timestamp), &Change> =
        changes.iter().map(|c| ((key(c), c.time), c)).collect();
    let mut ranks = HashMap::new();
    for c in changes {
        rank(&(key(c), c.time), &by_key, &mut ranks, 0);
    }
    ranks
}

fn rank(
    at: &(Key, Timestamp),
    by_key: &HashMap<(Key, Timestamp), &Change>,
    ranks: &mut HashMap<(Key, Timestamp), usize>,
    depth: usize,
) -> usize {
    if let Some(r) = ranks.get(at) {
        return *r;
    }
    let Some(c) = by_key.get(at) else {
        return 0;
    };
    // Cycles never get here (their changes were dropped); the bound is only a guard.
    let r = if depth > by_key.len() {
        0
    } else {
        c.after
            .iter()
            .map(|n| {
                let before = ((c.namespace.clone(), n.clone()), c.time);
                rank(&before, by_key, ranks, depth + 1) + 1
            })
            .max()
            .unwrap_or(0)
    };
    ranks.insert(at.clone(), r);
    r
}
