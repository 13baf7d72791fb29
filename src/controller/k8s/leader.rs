//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! calls ECS.
//!
//! kube-runtime has no leader election. This is client-go's algorithm
//! (`tools/leaderelection`): a candidate takes the Lease when it is free or expired, the leader
//! renews it, and every write is conditional on the resourceVersion it read, so two candidates
//! can never both win a write. What keeps two replicas from *acting* as leader at once is time:
//!
//! - Expiry is judged by when this replica last saw the Lease record change, on its own
//!   monotonic clock, never by the timestamps written in it: those come from another replica's
//!   clock, which may be minutes off.
//! - Every attempt is bounded: a leader must renew within `renew_deadline` of its last renewal
//!   or step down on its own clock, even while a request to the API server hangs (kube's client
//!   has no read timeout). `renew_deadline < duration`, so it has stopped before any other
//!   replica can see the Lease expire.
//! - On a graceful stop the leader clears the holder ([`Leadership::release`], client-go's
//!   `ReleaseOnCancel`), so another replica leads within one retry period, not a whole lease
//!   duration.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{Instrument, info, info_span, warn};

use crate::controller::config::LeaseSettings;

/// The three Lease calls the election makes: a trait so that its state machine is tested on a
/// paused clock, with requests that hang, without an API server.
#[async_trait]
pub(crate) trait LeaseStore: Send + Sync + 'static {
    async fn get(&self, name: &str) -> Result<Option<Lease>, kube::Error>;
    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error>;
    /// Conditional on the resourceVersion in `lease` (409 when another writer came first).
    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error>;
}

#[async_trait]
impl LeaseStore for Api<Lease> {
    async fn get(&self, name: &str) -> Result<Option<Lease>, kube::Error> {
        self.get_opt(name).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        Api::create(self, &PostParams::default(), lease).await
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        Api::replace(self, &lease.name_any(), &PostParams::default(), lease).await
    }
}

/// This replica's part in the election: whether it leads, and the way to give the lease up.
pub(crate) struct Leadership {
    leading: watch::Receiver<bool>,
    release: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// `true` while this replica leads. Dropping the [`Leadership`] (a crash, an aborted task)
    /// ends the election without releasing the lease.
    pub(crate) fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops campaigning: a leader steps down (the channel says `false` first) and clears the
    /// Lease's holder, so another replica takes over on its next retry. Call it only once this
    /// replica has stopped calling ECS. Bounded by the renew deadline.
    pub(crate) async fn release(self) {
        let _ = self.release.send(());
        let _ = self.task.await;
    }
}

/// Runs the election on the Lease in `settings` until released or dropped.
pub(crate) fn spawn(client: Client, settings: LeaseSettings) -> Leadership {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    spawn_on(api, settings)
}

pub(crate) fn spawn_on(store: impl LeaseStore, settings: LeaseSettings) -> Leadership {
    let (tx, leading) = watch::channel(false);
    let (release, released) = oneshot::channel();
    // Every line the election logs names the lease and this replica.
    let span = info_span!("leader_election", lease = %settings.name, identity = %settings.identity);
    let elector = Elector {
        store,
        settings,
        observed: None,
    };
    let task = tokio::spawn(elector.run(tx, released).instrument(span));
    Leadership {
        leading,
        release,
        task,
    }
}

/// What one attempt on the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following(Option<String>),
}

/// The Lease as this replica last read or wrote it, and when (on this replica's clock) its
/// record last changed.
struct Observed {
    lease: Lease,
    changed_at: Instant,
}

struct Elector<S> {
    store: S,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

impl<S: LeaseStore> Elector<S> {
    async fn run(mut self, tx: watch::Sender<bool>, mut released: oneshot::Receiver<()>) {
        // When the last renewal that succeeded was *started*: the write landed at or after that,
        // so every other replica saw it then or later.
        let mut renewed_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let leading = *tx.borrow();
            // A leader's attempt may last until its renew deadline; a candidate's as long.
            let deadline = match renewed_at {
                Some(at) if leading => at + self.settings.renew_deadline,
                _ => started + self.settings.renew_deadline,
            };
            let outcome = tokio::select! {
                outcome = timeout_at(deadline, self.try_acquire_or_renew(started)) => outcome,
                // Everyone who cared about the outcome is gone (a crash): no release.
                () = tx.closed() => return,
            };
            match outcome {
                Ok(Ok(Attempt::Leading)) => {
                    renewed_at = Some(started);
                    if !leading {
                        info!("became leader");
                        tx.send_replace(true);
                    }
                }
                Ok(Ok(Attempt::Following(holder))) => {
                    if leading {
                        warn!(holder = ?holder, "lost the lease to another replica");
                        tx.send_replace(false);
                    }
                    renewed_at = None;
                }
                Ok(Err(err)) => warn!(error = %err, "could not reach the lease"),
                Err(_) => warn!(
                    timeout = ?self.settings.renew_deadline,
                    "the lease request did not answer in time"
                ),
            }
            let next_attempt = Instant::now() + self.settings.retry_period;
            if *tx.borrow()
                && renewed_at.is_none_or(|at| at + self.settings.renew_deadline <= next_attempt)
            {
                // The next attempt would start past the deadline: stop now, while no other
                // replica can have taken the lease yet.
                warn!("could not renew the lease in time; stepping down");
                tx.send_replace(false);
                renewed_at = None;
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period) => {}
                asked = &mut released => {
                    if asked.is_ok() {
                        self.release(&tx).await;
                    }
                    return;
                }
                () = tx.closed() => return,
            }
        }
    }

    /// client-go's `tryAcquireOrRenew`. `now` is this attempt's start on the local clock.
    async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<Attempt, kube::Error> {
        let wall = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.store.get(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(wall.clone()),
                    renew_time: Some(wall),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.store.create(&lease).await {
                Ok(created) => {
                    self.observe(created, now);
                    Ok(Attempt::Leading)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(None)),
                Err(err) => Err(err),
            };
        };
        self.observe(lease.clone(), now);
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.settings.identity.as_str());
        if holder.is_some() && !ours && self.valid(now) {
            return Ok(Attempt::Following(holder));
        }
        if !ours {
            spec.acquire_time = Some(wall.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(wall);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this fail with 409.
        match self.store.replace(&lease).await {
            Ok(written) => {
                self.observe(written, now);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(holder)),
            Err(err) => Err(err),
        }
    }

    /// Remembers `lease`; its record counts as renewed `now` only if it differs from the one
    /// seen before (client-go's `observedTime`).
    fn observe(&mut self, lease: Lease, now: Instant) {
        let changed_at = match &self.observed {
            Some(seen) if seen.lease.spec == lease.spec => seen.changed_at,
            _ => now,
        };
        self.observed = Some(Observed { lease, changed_at });
    }

    /// Whether the observed holder's term still runs at `now`, by the local clock.
    fn valid(&self, now: Instant) -> bool {
        self.observed.as_ref().is_some_and(|seen| {
            let secs = seen
                .lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(self.settings.duration.as_secs());
            seen.changed_at + Duration::from_secs(secs) > now
        })
    }

    /// client-go's `release`: steps down, then clears the holder of the Lease this replica
    /// last wrote (conditional on its resourceVersion, so a Lease someone else took since is
    /// left alone).
    async fn release(&mut self, tx: &watch::Sender<bool>) {
        tx.send_replace(false);
        let Some(mut lease) = self.observed.take().map(|seen| seen.lease) else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        let wall = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(wall.clone());
        spec.renew_time = Some(wall);
        match timeout(self.settings.renew_deadline, self.store.replace(&lease)).await {
            Ok(Ok(_)) => info!("released the lease"),
            Ok(Err(err)) => {
                warn!(error = %err, "could not release the lease; it expires on its own")
            }
            Err(_) => warn!("releasing the lease did not answer in time; it expires on its own"),
        }
    }
}

#[cfg(test)]
mod tests;
