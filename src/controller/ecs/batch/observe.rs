//! Observations shared: one DescribeInstances per 100 reconciles of a credential set and region.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{BatchSettings, Coalescer, Waiter, all_gone, still_waiting};
use crate::controller::ecs::observe::{Lookup, Observer};
use ecs_client::{EcsApi, EcsError, ErrorClass, Instance};

type Answer = Result<Option<Instance>, EcsError>;
/// Observations are only shared by calls with the same credentials and region.
type Key = (String, String);
/// The instance id, and the handle to describe it with.
type Item = (String, Arc<dyn EcsApi>);

/// An [`Observer`] whose concurrent observations share DescribeInstances calls.
///
/// Every caller gets an answer fetched after it asked (nothing is cached), so a batched
/// observation is exactly as fresh as a direct one. An error of the batch call is every
/// caller's error.
pub(crate) struct BatchingObserver {
    coalescer: Coalescer<Key, Item, Answer>,
}

impl BatchingObserver {
    pub(crate) fn new(settings: BatchSettings) -> Self {
        Self {
            coalescer: Coalescer::new(
                settings,
                Arc::new(|(_, region): Key, waiters| Box::pin(describe(region, waiters))),
            ),
        }
    }
}

#[async_trait]
impl Observer for BatchingObserver {
    async fn observe(&self, lookup: &Lookup) -> Answer {
        let key = (lookup.credentials_key.clone(), lookup.region.clone());
        let item = (lookup.instance_id.clone(), lookup.ecs.clone());
        let answer = self
            .coalescer
            .submit(key, item, |_| false)
            .ok_or_else(|| abandoned("could not join a batch"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(abandoned("the batch ended without an answer")))
    }
}

/// One DescribeInstances for the batch; each waiter gets its own instance.
async fn describe(region: String, waiters: Vec<Waiter<Item, Answer>>) {
    let mut waiters = still_waiting(waiters);
    let Some(first) = waiters.first() else {
        return;
    };
    let ecs = first.item.1.clone();
    let mut ids: Vec<String> = waiters.iter().map(|w| w.item.0.clone()).collect();
    ids.sort();
    ids.dedup();
    // Nobody left to read it (a lost lease): spend none of the account's quota on it.
    let described = tokio::select! {
        biased;
        described = ecs.describe_instances(&region, &ids) => described,
        () = all_gone(&mut waiters) => return,
    };
    match described {
        Ok(found) => {
            let by_id: HashMap<&str, &Instance> =
                found.iter().map(|i| (i.instance_id.as_str(), i)).collect();
            for waiter in waiters {
                let instance = by_id.get(waiter.item.0.as_str()).map(|i| (*i).clone());
                let _ = waiter.reply.send(Ok(instance));
            }
        }
        // One malformed id must not fail everyone's observation: a read may be repeated, so
        // ask for each instance on its own.
        Err(err) if ids.len() > 1 && err.class() == ErrorClass::InvalidRequest => {
            for waiter in waiters {
                let ids = [waiter.item.0.clone()];
                let answer = waiter
                    .item
                    .1
                    .describe_instances(&region, &ids)
                    .await
                    .map(|found| found.into_iter().find(|i| i.instance_id == ids[0]));
                let _ = waiter.reply.send(answer);
            }
        }
        Err(err) => {
            for waiter in waiters {
                let _ = waiter.reply.send(Err(err.clone()));
            }
        }
    }
}

fn abandoned(detail: &str) -> EcsError {
    EcsError::Transport {
        action: "DescribeInstances".into(),
        endpoint: "(batched)".into(),
        detail: detail.into(),
    }
}
