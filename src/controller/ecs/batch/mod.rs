//! Fleet-scale ECS traffic: many reconciles' calls coalesced into ECS batch calls.
//!
//! ECS lets one DescribeInstances cover 100 instances, and StartInstances / StopInstances /
//! RebootInstances act on up to 100. Reconciles still call one instance at a time (the
//! reconciler's logic does not know about batching); the decorators here hold each call for a
//! short coalescing window, send one batch call per 100 waiting calls of the same kind, and hand
//! every caller its own instance's answer, exactly as the single call would have given it.
//!
//! - [`BatchingObserver`]: observations per (credential set, region) → one DescribeInstances.
//! - [`BatchingEcs`]: starts, stops and reboots per (region, options) → one `*Instances` call
//!   with `BatchOptimization=SuccessFirst`.
//!
//! A batch is sent when it holds [`BatchSettings::max_batch`] calls, when its oldest call has
//! waited [`BatchSettings::window`], or when no call has joined it for [`BatchSettings::quiet`]
//! (so a lone call is not held for the whole window, while a burst keeps filling the batch).
//! Of each key, at most one batch that is not full is in flight at a time: while it waits (for
//! a rate-limit token, or for ECS to answer), newcomers fill the next one instead of spending
//! the quota on many small calls. A caller that goes away before its batch is sent (a
//! cancelled reconcile, a lost lease) is left out of it; a batch whose callers have all gone
//! (say, while it waited for a rate-limit token) is not sent at all.

mod actions;
mod observe;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::time::Instant;

pub(crate) use actions::BatchingEcs;
pub(crate) use observe::BatchingObserver;

use crate::controller::config::BatchSettings;

/// One call waiting in a batch: what it asks for, and where its answer goes.
pub(crate) struct Waiter<I, R> {
    pub item: I,
    pub reply: oneshot::Sender<R>,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Sends one batch and answers every waiter in it.
type FlushFn<K, I, R> = Arc<dyn Fn(K, Vec<Waiter<I, R>>) -> BoxFuture + Send + Sync>;

struct Group<I, R> {
    id: u64,
    first: Instant,
    last: Instant,
    waiters: Vec<Waiter<I, R>>,
    /// Its timer found it due while a batch of the key was in flight and left the sending to
    /// that batch, which must send it when done, due or not: a caller that joined since may have
    /// moved the due time ahead, and nobody else is left to send it.
    handed_over: bool,
}

impl<I, R> Group<I, R> {
    fn due(&self, settings: &BatchSettings) -> Instant {
        (self.first + settings.window).min(self.last + settings.quiet)
    }
}

struct Groups<K, I, R> {
    next_id: u64,
    open: HashMap<K, Group<I, R>>,
    /// Keys with a batch that was not full in flight.
    busy: HashSet<K>,
}

/// Collects calls per key into batches and sends each batch through `flush`.
pub(crate) struct Coalescer<K, I, R> {
    settings: BatchSettings,
    groups: Arc<Mutex<Groups<K, I, R>>>,
    flush: FlushFn<K, I, R>,
}

impl<K, I, R> Coalescer<K, I, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
    R: Send + 'static,
{
    pub(crate) fn new(settings: BatchSettings, flush: FlushFn<K, I, R>) -> Self {
        Self {
            settings: settings.normalised(),
            groups: Arc::new(Mutex::new(Groups {
                next_id: 0,
                open: HashMap::new(),
                busy: HashSet::new(),
            })),
            flush,
        }
    }

    /// Adds a call to the open batch of `key`. `None` when `conflicts` says the open batch
    /// already holds a call that must not share a batch with this one (the caller then calls
    /// on its own).
    pub(crate) fn submit(
        &self,
        key: K,
        item: I,
        conflicts: impl Fn(&I) -> bool,
    ) -> Option<oneshot::Receiver<R>> {
        let (reply, answer) = oneshot::channel();
        let now = Instant::now();
        let mut groups = lock(&self.groups);
        let mut new_group = None;
        if !groups.open.contains_key(&key) {
            groups.next_id += 1;
            let id = groups.next_id;
            groups.open.insert(
                key.clone(),
                Group {
                    id,
                    first: now,
                    last: now,
                    waiters: Vec::new(),
                    handed_over: false,
                },
            );
            new_group = Some(id);
        }
        let group = groups.open.get_mut(&key)?;
        if group.waiters.iter().any(|w| conflicts(&w.item)) {
            return None;
        }
        group.last = now;
        group.waiters.push(Waiter { item, reply });
        if group.waiters.len() >= self.settings.max_batch {
            if let Some(full) = groups.open.remove(&key) {
                tokio::spawn((self.flush)(key, full.waiters));
            }
        } else if let Some(id) = new_group {
            tokio::spawn(self.timer(key, id));
        }
        Some(answer)
    }

    /// Sends group `id` of `key` when it is due (unless it filled up and went already, or a
    /// batch of the key that was not full is still in flight: that one sends it when done).
    fn timer(&self, key: K, id: u64) -> impl Future<Output = ()> + Send + 'static {
        let groups = self.groups.clone();
        let settings = self.settings;
        let flush = self.flush.clone();
        async move {
            loop {
                let due = match lock(&groups).open.get(&key) {
                    Some(group) if group.id == id => group.due(&settings),
                    _ => return,
                };
                tokio::time::sleep_until(due).await;
                let ready = {
                    let mut guard = lock(&groups);
                    let state = &mut *guard;
                    match state.open.get_mut(&key) {
                        Some(group) if group.id == id => {
                            if group.due(&settings) > Instant::now() {
                                continue;
                            }
                            if !state.busy.insert(key.clone()) {
                                group.handed_over = true;
                                return;
                            }
                            state.open.remove(&key)
                        }
                        _ => return,
                    }
                };
                if let Some(group) = ready {
                    send_partials(groups, flush, settings, key, group.waiters).await;
                }
                return;
            }
        }
    }
}

/// Sends a batch that was not full; then, while the next group of the key is already due
/// (it filled while this one was in flight) or was handed over by its timer, sends that too.
async fn send_partials<K, I, R>(
    groups: Arc<Mutex<Groups<K, I, R>>>,
    flush: FlushFn<K, I, R>,
    settings: BatchSettings,
    key: K,
    mut waiters: Vec<Waiter<I, R>>,
) where
    K: Hash + Eq + Clone + Send + 'static,
{
    loop {
        flush(key.clone(), waiters).await;
        let mut guard = lock(&groups);
        let state = &mut *guard;
        let due = state
            .open
            .get(&key)
            .is_some_and(|g| g.handed_over || g.due(&settings) <= Instant::now());
        match due.then(|| state.open.remove(&key)).flatten() {
            Some(next) => waiters = next.waiters,
            None => {
                state.busy.remove(&key);
                return;
            }
        }
    }
}

/// Resolves once every caller of `waiters` has gone away (the reconciles were dropped: a lost
/// lease, a crash). A send raced against this is dropped with its callers, also while it
/// queues for a rate-limit token, exactly as a single call dropped with its reconcile.
pub(crate) async fn all_gone<I, R>(waiters: &mut [Waiter<I, R>]) {
    futures::future::join_all(waiters.iter_mut().map(|w| w.reply.closed())).await;
}

/// Waiters whose caller is still there to read the answer.
pub(crate) fn still_waiting<I, R>(waiters: Vec<Waiter<I, R>>) -> Vec<Waiter<I, R>> {
    waiters
        .into_iter()
        .filter(|w| !w.reply.is_closed())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the map usable; keep batching.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
