//! Copies of an object the API server has moved past, as far as this controller knows: the
//! versions its own writes replaced, and the versions a write was refused at (409).
//!
//! Every status write is conditional on the version the decision was made from. When the watch
//! cache trails the API server (a loaded server, a fleet flipping at once), a reconcile that
//! starts from such a copy can only end in a 409, after a DescribeInstances it did for
//! nothing; and the retry, on the same copy, conflicts again. On a real API server that loop
//! fed itself: the refused writes slowed the server and so the watch (issue 21's 10,000-object
//! flip: 61,526 status patches, most of them refused). A pass on a copy known to be behind
//! does nothing and waits for the watch, which delivers the newer copy and triggers the next
//! reconcile by itself.
//!
//! Only for a while ([`PATIENCE`]): a 409 that no newer copy follows (a proxy's, a fault
//! injected in a test, a watch that died unnoticed) must not strand the object. After that the
//! copy is tried again: at worst one refused write per object per [`PATIENCE`], not per second.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use tokio::time::Instant;

use crate::api::EcsInstance;

/// More objects than this remembered: forget them all (an object deleted right after a write
/// is never reconciled again to clear its entry; forgetting costs one refused write each).
const MAX_OBJECTS: usize = 100_000;

/// How long a copy known to be behind waits for the watch before it is tried again anyway.
pub(crate) const PATIENCE: Duration = Duration::from_secs(8);

/// Per object (by uid), the resourceVersions known to be behind the API server, and when the
/// last of them was noted.
#[derive(Default)]
pub(crate) struct Superseded(Mutex<HashMap<String, (BTreeSet<String>, Instant)>>);

impl Superseded {
    /// `version` of `obj` is behind the server: a write based on it succeeded (the server now
    /// holds a newer one) or was refused.
    pub(crate) fn note(&self, obj: &EcsInstance, version: Option<&str>) {
        let Some(version) = version else { return };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_OBJECTS {
            map.clear();
        }
        let (versions, noted) = map
            .entry(key(obj))
            .or_insert_with(|| (BTreeSet::new(), Instant::now()));
        versions.insert(version.to_string());
        *noted = Instant::now();
    }

    /// Whether this copy of `obj` is one the server has moved past, noted less than
    /// [`PATIENCE`] ago. A copy that is not (the cache caught up, or another hand wrote)
    /// clears what was remembered: the cache never goes back to an older copy.
    pub(crate) fn behind(&self, obj: &EcsInstance) -> bool {
        let Some(version) = obj.resource_version() else {
            return false;
        };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(obj);
        match map.get(&key) {
            Some((versions, noted))
                if versions.contains(&version) && noted.elapsed() < PATIENCE =>
            {
                true
            }
            Some(_) => {
                map.remove(&key);
                false
            }
            None => false,
        }
    }
}

/// The uid (a re-created object is another object); namespace/name where there is none.
fn key(obj: &EcsInstance) -> String {
    obj.uid()
        .unwrap_or_else(|| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::EcsInstanceSpec;
    use crate::api::PowerState;

    fn at(version: &str) -> EcsInstance {
        let mut obj = EcsInstance::new(
            "web-1",
            EcsInstanceSpec::minimal("i-1", PowerState::Running),
        );
        obj.metadata.namespace = Some("team-a".into());
        obj.metadata.resource_version = Some(version.into());
        obj
    }

    #[test]
    fn a_copy_the_controller_wrote_over_is_behind_until_the_cache_moves_on() {
        let superseded = Superseded::default();
        assert!(!superseded.behind(&at("10")), "nothing known yet");
        superseded.note(&at("10"), Some("10"));
        superseded.note(&at("10"), Some("11"));
        assert!(superseded.behind(&at("10")));
        assert!(superseded.behind(&at("11")), "an intermediate write too");
        assert!(!superseded.behind(&at("12")), "the cache caught up");
        assert!(
            !superseded.behind(&at("10")),
            "forgotten once caught up (the cache never goes back)"
        );
    }

    /// A 409 no newer copy follows (injected, say): the copy is tried again after a while.
    #[tokio::test(start_paused = true)]
    async fn a_copy_no_newer_one_follows_is_tried_again_after_a_while() {
        let superseded = Superseded::default();
        superseded.note(&at("10"), Some("10"));
        tokio::time::advance(PATIENCE - Duration::from_millis(1)).await;
        assert!(superseded.behind(&at("10")));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!superseded.behind(&at("10")));
    }

    #[test]
    fn objects_are_told_apart() {
        let superseded = Superseded::default();
        let mut other = at("10");
        other.metadata.name = Some("web-2".into());
        superseded.note(&at("10"), Some("10"));
        assert!(!superseded.behind(&other));
        assert!(superseded.behind(&at("10")));
    }
}
