//! Mutations shared: single Start/Stop/Reboot calls coalesced into `*Instances` batch calls.

use std::sync::Arc;

use async_trait::async_trait;

use super::{BatchSettings, Coalescer, Waiter, all_gone, still_waiting};
use ecs_client::{Accepted, Admission, BatchAccepted, EcsApi, EcsError, Instance, PowerRequest};

type Answer = Result<Accepted, EcsError>;

/// What batching cannot express exactly goes out as the single call:
/// - a dry run: ECS answers a batch dry run with one code for the whole request (the first
///   instance's refusal, or `DryRunOperation`), not one per instance;
/// - `InitLocalDisk`: StartInstances has no such parameter.
fn batchable(request: PowerRequest) -> bool {
    match request {
        PowerRequest::Start(o) => !o.dry_run && !o.init_local_disk,
        other => !other.dry_run(),
    }
}

/// An [`EcsApi`] that sends concurrent single Start/Stop/Reboot calls of one region and the
/// same options as one StartInstances / StopInstances / RebootInstances (SuccessFirst), and
/// answers each caller with its own instance's result:
///
/// - the item succeeded: `Ok(Accepted)` with the batch's RequestId;
/// - the item failed: that item's error, classified by its code as the single call's would be
///   (an item has no HTTP status; an unknown code counts as possibly executed);
/// - the whole request failed: that error, for every caller;
/// - the answer has no item for the instance: an unreadable answer, so a mutation counts as
///   possibly executed (a reboot stays in flight, never repeated on a guess).
///
/// A batch mutation is never sent again after a failure that may have executed it (the client's
/// retry rule); only a failure before anything was sent (a request the client refused) falls
/// back to single calls. A batch of one goes out as the single call.
///
/// A call made with [`EcsApi::power_if`] is asked again when its batch leaves: one no longer
/// admitted (its namespace lost the shared credentials while it waited) is left out and answered
/// `NotSent`.
pub(crate) struct BatchingEcs {
    inner: Arc<dyn EcsApi>,
    coalescer: Coalescer<(String, PowerRequest), Item, Answer>,
}

/// One call waiting in a batch: its instance, and whether it may still go out.
#[derive(Clone)]
pub(crate) struct Item {
    id: String,
    admitted: Option<Admission>,
}

impl Item {
    fn admitted(&self) -> bool {
        self.admitted.as_ref().is_none_or(|a| a())
    }
}

impl BatchingEcs {
    pub(crate) fn new(inner: Arc<dyn EcsApi>, settings: BatchSettings) -> Self {
        let sender = inner.clone();
        Self {
            inner,
            coalescer: Coalescer::new(
                settings,
                Arc::new(move |(region, request): (String, PowerRequest), waiters| {
                    let ecs = sender.clone();
                    Box::pin(async move { act(ecs, region, request, waiters).await })
                }),
            ),
        }
    }

    async fn coalesced(
        &self,
        region: &str,
        id: &str,
        request: PowerRequest,
        admitted: Option<&Admission>,
    ) -> Answer {
        let single = async || match admitted {
            Some(admitted) => self.inner.power_if(region, id, request, admitted).await,
            None => self.inner.power(region, id, request).await,
        };
        if !batchable(request) {
            return single().await;
        }
        let key = (region.to_string(), request);
        let item = Item {
            id: id.to_string(),
            admitted: admitted.cloned(),
        };
        // The same instance twice in one batch: the second call goes on its own.
        match self.coalescer.submit(key, item, |other| other.id == id) {
            Some(answer) => answer.await.unwrap_or_else(|_| {
                Err(EcsError::Transport {
                    action: request.action().batch().into(),
                    endpoint: "(batched)".into(),
                    detail: "the batch ended without an answer; it may have been sent".into(),
                })
            }),
            None => single().await,
        }
    }
}

/// Sends one batch and answers its waiters; sends nothing once they have all gone.
async fn act(
    ecs: Arc<dyn EcsApi>,
    region: String,
    request: PowerRequest,
    waiters: Vec<Waiter<Item, Answer>>,
) {
    // Asked again as the batch leaves: a call no longer admitted is not sent.
    let (waiters, refused): (Vec<_>, Vec<_>) = still_waiting(waiters)
        .into_iter()
        .partition(|w| w.item.admitted());
    for waiter in refused {
        let action = request.action().single().to_string();
        let _ = waiter.reply.send(Err(EcsError::NotSent(action)));
    }
    let mut waiters = waiters;
    if let [only] = waiters.as_mut_slice() {
        let id = only.item.id.clone();
        let answer = tokio::select! {
            biased;
            answer = ecs.power(&region, &id, request) => answer,
            () = only.reply.closed() => return,
        };
        if let Some(only) = waiters.into_iter().next() {
            let _ = only.reply.send(answer);
        }
        return;
    }
    if waiters.is_empty() {
        return;
    }
    let ids: Vec<String> = waiters.iter().map(|w| w.item.id.clone()).collect();
    let sent = tokio::select! {
        biased;
        sent = ecs.power_batch(&region, &ids, request) => sent,
        () = all_gone(&mut waiters) => return,
    };
    match sent {
        Ok(batch) => {
            for waiter in waiters {
                let answer = item_answer(request, &batch, &waiter.item.id);
                let _ = waiter.reply.send(answer);
            }
        }
        // The client refused to send the batch (say, one malformed id): nothing went out, so
        // each call may still be made on its own.
        Err(EcsError::InvalidInput(_)) => {
            for waiter in waiters {
                let answer = ecs.power(&region, &waiter.item.id, request).await;
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

fn item_answer(request: PowerRequest, batch: &BatchAccepted, id: &str) -> Answer {
    let Some(item) = batch.items.iter().find(|i| i.instance_id == id) else {
        return Err(EcsError::Decode {
            action: request.action().batch().into(),
            http_status: 200,
            detail: format!(
                "the answer (RequestId {}) has no entry for {id}; it may have been acted on",
                batch.request_id
            ),
        });
    };
    match &item.result {
        Ok(()) => Ok(Accepted {
            request_id: batch.request_id.clone(),
            dry_run: false,
        }),
        Err(err) => Err(err.clone()),
    }
}

#[async_trait]
impl EcsApi for BatchingEcs {
    async fn describe_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, EcsError> {
        self.inner.describe_instances(region, instance_ids).await
    }

    async fn power(&self, region: &str, instance_id: &str, request: PowerRequest) -> Answer {
        self.coalesced(region, instance_id, request, None).await
    }

    async fn power_if(
        &self,
        region: &str,
        instance_id: &str,
        request: PowerRequest,
        admitted: &Admission,
    ) -> Answer {
        self.coalesced(region, instance_id, request, Some(admitted))
            .await
    }

    async fn power_batch(
        &self,
        region: &str,
        instance_ids: &[String],
        request: PowerRequest,
    ) -> Result<BatchAccepted, EcsError> {
        self.inner.power_batch(region, instance_ids, request).await
    }
}
