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

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::ResourceExt;

use crate::api::EcsInstance;

/// More objects than this remembered: forget them all (an object deleted right after a write
/// is never reconciled again to clear its entry; forgetting costs one refused write each).
const MAX_OBJECTS: usize = 100_000;

/// Per object (by uid), the resourceVersions known to be behind the API server.
#[derive(Default)]
pub(crate) struct Superseded(Mutex<HashMap<String, BTreeSet<String>>>);

impl Superseded {
    /// `version` of `obj` is behind the server: a write based on it succeeded (the server now
    /// holds a newer one) or was refused.
    pub(crate) fn note(&self, obj: &EcsInstance, version: Option<&str>) {
        let Some(version) = version else { return };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_OBJECTS {
            map.clear();
        }
        map.entry(key(obj)).or_default().insert(version.to_string());
    }

    /// Whether this copy of `obj` is one the server has moved past. A copy that is not (the
    /// cache caught up, or another hand wrote) clears what was remembered: the cache never
    /// goes back to an older copy.
    pub(crate) fn behind(&self, obj: &EcsInstance) -> bool {
        let Some(version) = obj.resource_version() else {
            return false;
        };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(obj);
        match map.get(&key) {
            Some(versions) if versions.contains(&version) => true,
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
