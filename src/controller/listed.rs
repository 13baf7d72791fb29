//! That a watch has delivered its first full list, for any number of waiters.
//!
//! kube's `Store::wait_until_ready` is a oneshot channel underneath: of several tasks waiting
//! on one store only the last to poll is woken, so of several reconciles waiting for a list
//! (or one beside the Controller's own runner) all but one could wait for ever. Every store a
//! reconcile waits on is paired with one of these instead, raised by the task that fills it.

use tokio::sync::watch;

/// That a watch has delivered its first full list, for any number of waiters.
#[derive(Clone)]
pub(crate) struct Listed(watch::Receiver<bool>);

impl Listed {
    /// The signal and the sender that raises it (`send_replace(true)`).
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (sender, receiver) = watch::channel(false);
        (sender, Self(receiver))
    }

    /// Whether listed by now (without waiting).
    pub(crate) fn now(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once listed (`true`), or when the watch is gone first (`false`: the run is
    /// stopping).
    pub(crate) async fn wait(&self) -> bool {
        self.0.clone().wait_for(|listed| *listed).await.is_ok()
    }
}
