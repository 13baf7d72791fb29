//! The periodic reading: one loop per fleet, reading what [`Fleet::next_read`](super::state::Fleet::next_read) says is due and
//! triggering the objects whose instance changed.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::runtime::reflector::Store;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::state::Next;
use super::{Key, Shared, lock};
use crate::api::EcsInstance;
use crate::controller::listed::Listed;
use crate::controller::truncate::truncated;
use ecs_client::ErrorClass;

/// Reads every fleet, each in its own loop, starting a loop for each new fleet; runs until
/// dropped.
pub(super) async fn drive(shared: Arc<Shared>, store: Store<EcsInstance>, listed: Listed) {
    let mut running: HashSet<Key> = HashSet::new();
    let mut loops = FuturesUnordered::new();
    loop {
        let created = shared.new_fleet.notified();
        tokio::pin!(created);
        created.as_mut().enable();
        let keys: Vec<Key> = lock(&shared.fleets).keys().cloned().collect();
        for key in keys {
            if running.insert(key.clone()) {
                loops.push(read_fleet(
                    shared.clone(),
                    key,
                    store.clone(),
                    listed.clone(),
                ));
            }
        }
        tokio::select! {
            () = &mut created => {}
            Some(key) = loops.next(), if !loops.is_empty() => {
                running.remove(&key);
            }
        }
    }
}

/// Reads one fleet until nobody looks at any of its instances (then the fleet is removed and
/// its key returned).
async fn read_fleet(
    shared: Arc<Shared>,
    key: Key,
    store: Store<EcsInstance>,
    listed: Listed,
) -> Key {
    loop {
        // Objects the store no longer has were deleted (once the store has listed them all).
        // (Not `store.wait_until_ready().now_or_never()`: polling that would take the wake-up
        // from the task waiting on it, see `controller::listed`.)
        let listed = listed.now();
        let next = {
            let mut fleets = lock(&shared.fleets);
            let Some(fleet) = fleets.get_mut(&key) else {
                return key;
            };
            let next = fleet.next_read(Instant::now(), &shared.settings, |object| {
                listed && store.get(object).is_none()
            });
            match next {
                Next::Empty => {
                    fleets.remove(&key);
                    return key;
                }
                Next::Sleep(at) => Err(at),
                Next::Read(ids) => Ok((ids, fleet.ecs.clone(), fleet.region.clone())),
            }
        };
        match next {
            Err(at) => tokio::time::sleep_until(at).await,
            Ok((ids, ecs, region)) => {
                shared.priority.idle(&region).await;
                let sent_at = Instant::now();
                match ecs.describe_instances(&region, &ids).await {
                    Ok(found) => {
                        let triggers = shared.with(&key, |f| {
                            f.page_read(true);
                            f.apply(&ids, found, sent_at)
                        });
                        shared.trigger(triggers.unwrap_or_default());
                    }
                    // One malformed id must not blind the observer to its whole page: read each
                    // on its own once; those ECS refuses are left to their reconciles.
                    Err(err) if ids.len() > 1 && err.class() == ErrorClass::InvalidRequest => {
                        for id in ids {
                            let one = [id];
                            let sent_at = Instant::now();
                            match ecs.describe_instances(&region, &one).await {
                                Ok(found) => {
                                    let triggers =
                                        shared.with(&key, |f| f.apply(&one, found, sent_at));
                                    shared.trigger(triggers.unwrap_or_default());
                                }
                                Err(err) if err.class() == ErrorClass::InvalidRequest => {
                                    debug!(instance = %one[0], "ECS refuses to describe it; left to its reconciles");
                                    shared.with(&key, |f| f.unreadable(&one[0]));
                                }
                                Err(err) => {
                                    shared.with(&key, |f| f.page_read(false));
                                    warn!(region, error = %truncated(err.to_string()), "periodic DescribeInstances failed");
                                }
                            }
                        }
                    }
                    // The readings stay as they were and age; past `stale_after` lookups read for
                    // themselves (and record the error) until a page succeeds again.
                    Err(err) => {
                        shared.with(&key, |f| f.page_read(false));
                        warn!(region, error = %truncated(err.to_string()), "periodic DescribeInstances failed");
                    }
                }
            }
        }
    }
}
