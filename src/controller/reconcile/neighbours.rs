//! The other EcsInstances of the namespace, as ordering (`spec.startAfter`) reads them: the
//! seam between a reconcile and the watch cache that holds them (no API request per reconcile).
//! The rules are [`crate::ordering`]'s; this only says where the facts come from.

use kube::ResourceExt;

use crate::api::EcsInstance;
use crate::ordering::{Change, Peer, Peers};

/// Where a reconcile finds the other EcsInstances of its namespace.
pub(crate) trait Neighbours: Send + Sync {
    /// The EcsInstance `name` in `namespace`, as the cache holds it.
    fn get(&self, namespace: &str, name: &str) -> Option<Peer>;

    /// The EcsInstances of `namespace` that name `name` in their `spec.startAfter`.
    fn starting_after(&self, namespace: &str, name: &str) -> Vec<(String, Peer)>;
}

/// No other object is known (a reconciler without a watch): a name in `startAfter` is missing.
pub(crate) struct Alone;

impl Neighbours for Alone {
    fn get(&self, _: &str, _: &str) -> Option<Peer> {
        None
    }

    fn starting_after(&self, _: &str, _: &str) -> Vec<(String, Peer)> {
        Vec::new()
    }
}

/// What ordering reads for `obj` about to make `change`: `obj` itself in the copy being
/// reconciled (fresher than the cache's), and its neighbours from `neighbours`.
pub(crate) fn peers(
    neighbours: &dyn Neighbours,
    obj: &EcsInstance,
    namespace: &str,
    change: Change,
) -> Peers {
    let name = obj.name_any();
    Peers::gather(
        &name,
        change,
        Peer::of(obj),
        |n| neighbours.get(namespace, n),
        || neighbours.starting_after(namespace, &name),
    )
}
