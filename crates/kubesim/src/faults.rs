//! Fault injection and request accounting, so tests can make the API server misbehave the
//! ways real ones do (dropped watches, 500s, throttling, slowness, requests that never answer)
//! and count what clients did.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// The verbs the API server distinguishes (as in audit logs and RBAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// Read one object.
    Get,
    /// Read a collection.
    List,
    /// A list with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT (including the status subresource).
    Update,
    /// PATCH (merge, JSON, strategic or apply).
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
    /// Discovery, /version and other non-resource requests.
    Other,
}

impl Verb {
    /// The verb as audit logs and RBAC rules spell it, e.g. `deletecollection`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Other => "other",
        }
    }
}

/// Which requests a fault applies to; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFilter {
    /// Only requests of this verb.
    pub verb: Option<Verb>,
    /// Plural resource name, e.g. `ecsinstances` or `leases`. Subresources are written
    /// `ecsinstances/status`.
    pub resource: Option<String>,
    /// Only requests whose `User-Agent` contains this: one client of several (say, one
    /// replica of a controller) when each sends its own.
    pub user_agent: Option<String>,
}

impl RequestFilter {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only requests of `verb`.
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Only requests for `resource` (plural, e.g. `leases` or `ecsinstances/status`).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only requests whose `User-Agent` contains `part` (one client among several).
    pub fn user_agent(mut self, part: impl Into<String>) -> Self {
        self.user_agent = Some(part.into());
        self
    }

    fn matches(&self, request: &Request<'_>) -> bool {
        self.verb.is_none_or(|v| v == request.verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| r == request.resource)
            && self
                .user_agent
                .as_deref()
                .is_none_or(|part| request.user_agent.contains(part))
    }
}

/// What the fault layer is told of one request.
pub(crate) struct Request<'a> {
    pub verb: Verb,
    pub resource: &'a str,
    pub user_agent: &'a str,
}

#[derive(Debug, Clone)]
pub(crate) enum Injected {
    ServerError,
    Conflict,
    TooManyRequests { retry_after_secs: u64 },
    Forbidden,
}

#[derive(Debug)]
struct ErrorRule {
    what: Injected,
    remaining: u64,
    filter: RequestFilter,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<ErrorRule>,
    delay: Option<(Duration, RequestFilter)>,
    hangs: Vec<RequestFilter>,
    watch_lag: Option<(Duration, RequestFilter)>,
    counts: BTreeMap<(Verb, String), u64>,
}

/// Handle for injecting faults and reading request counters; cheap to clone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
    drop_watches: Arc<watch::Sender<u64>>,
    /// Bumped by [`Faults::clear`]: hung requests go on.
    cleared: Arc<watch::Sender<u64>>,
    compact: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("inner", &self.inner)
            .finish()
    }
}

/// What the fault layer decided for one request.
pub(crate) struct Decision {
    pub delay: Option<Duration>,
    /// Answer nothing until the fault is cleared (then serve the request as usual).
    pub hang: Option<watch::Receiver<u64>>,
    pub fail: Option<Injected>,
}

impl Decision {
    /// Waits out the delay or the hang.
    pub(crate) async fn wait(&mut self) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(cleared) = self.hang.as_mut() {
            let _ = cleared.changed().await;
        }
    }
}

impl Faults {
    pub(crate) fn new(compact: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (tx, _) = watch::channel(0);
        let (cleared, _) = watch::channel(0);
        Faults {
            inner: Arc::new(Mutex::new(Inner::default())),
            drop_watches: Arc::new(tx),
            cleared: Arc::new(cleared),
            compact,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave counters inconsistent in a way that
        // matters for a test tool; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every open watch stream now (cleanly, as an API server restart or a load
    /// balancer timeout would). Clients are expected to re-watch from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.drop_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the watch event history, so a watch resuming from any earlier
    /// resourceVersion gets `410 Gone` (`Expired`), as after etcd compaction.
    pub fn compact_history(&self) {
        (self.compact)();
    }

    /// Answers the next `n` matching requests with `500 InternalError`.
    pub fn fail_next(&self, n: u64, filter: RequestFilter) {
        self.lock().rules.push(ErrorRule {
            what: Injected::ServerError,
            remaining: n,
            filter,
        });
    }

    /// Answers the next `n` matching requests with `409 Conflict`, as if another writer had
    /// changed the object first.
    pub fn conflict_next(&self, n: u64, filter: RequestFilter) {
        self.lock().rules.push(ErrorRule {
            what: Injected::Conflict,
            remaining: n,
            filter,
        });
    }

    /// Answers the next `n` matching requests with `403 Forbidden`, as RBAC does for a verb the
    /// caller's roles do not grant (kubesim has no authorization of its own).
    pub fn forbid_next(&self, n: u64, filter: RequestFilter) {
        self.lock().rules.push(ErrorRule {
            what: Injected::Forbidden,
            remaining: n,
            filter,
        });
    }

    /// Answers the next `n` matching requests with `429 TooManyRequests` and `Retry-After`.
    /// Note kube's client retries 429 itself (honouring Retry-After), up to a limit.
    pub fn throttle_next(&self, n: u64, retry_after_secs: u64, filter: RequestFilter) {
        self.lock().rules.push(ErrorRule {
            what: Injected::TooManyRequests { retry_after_secs },
            remaining: n,
            filter,
        });
    }

    /// Delays every matching response by `delay` until [`Faults::clear`].
    pub fn delay(&self, delay: Duration, filter: RequestFilter) {
        self.lock().delay = Some((delay, filter));
    }

    /// Matching requests get no answer at all (the connection stays open), as from an API
    /// server behind a stalled load balancer, until [`Faults::clear`]; then they are served.
    /// A client without a read timeout waits forever. With [`RequestFilter::user_agent`], one
    /// client of several.
    pub fn hang(&self, filter: RequestFilter) {
        self.lock().hangs.push(filter);
    }

    /// Holds back every event of the watches `filter` matches (verb `Watch`, or none) by `lag`
    /// before sending it, until [`Faults::clear`]: an informer whose cache trails the API
    /// server, as under load. Events stay in order, so a burst falls further behind.
    pub fn lag_watches(&self, lag: Duration, filter: RequestFilter) {
        self.lock().watch_lag = Some((lag, filter));
    }

    /// Removes pending error rules, delays, hangs and watch lag (counters are kept); hung
    /// requests go on.
    pub fn clear(&self) {
        let mut g = self.lock();
        g.rules.clear();
        g.delay = None;
        g.hangs.clear();
        g.watch_lag = None;
        self.cleared.send_modify(|n| *n += 1);
    }

    /// How long to hold back the next event of a watch on `resource`.
    pub(crate) fn watch_lag(&self, resource: &str) -> Option<Duration> {
        let request = Request {
            verb: Verb::Watch,
            resource,
            user_agent: "",
        };
        self.lock()
            .watch_lag
            .as_ref()
            .filter(|(_, f)| f.matches(&request))
            .map(|(lag, _)| *lag)
    }

    /// Requests seen so far, by (verb, resource); faulted requests count too.
    pub fn requests(&self) -> RequestCounts {
        RequestCounts(self.lock().counts.clone())
    }

    /// Sets every request counter back to zero (faults stay as they are).
    pub fn reset_counts(&self) {
        self.lock().counts.clear();
    }

    pub(crate) fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drop_watches.subscribe()
    }

    pub(crate) fn on_request(&self, verb: Verb, resource: &str) -> Decision {
        self.on_request_from(&Request {
            verb,
            resource,
            user_agent: "",
        })
    }

    pub(crate) fn on_request_from(&self, request: &Request<'_>) -> Decision {
        let mut g = self.lock();
        *g.counts
            .entry((request.verb, request.resource.to_string()))
            .or_default() += 1;
        let delay = g
            .delay
            .as_ref()
            .filter(|(_, f)| f.matches(request))
            .map(|(d, _)| *d);
        let hang = g
            .hangs
            .iter()
            .any(|f| f.matches(request))
            .then(|| self.cleared.subscribe());
        let mut fail = None;
        if let Some(rule) = g
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && r.filter.matches(request))
        {
            rule.remaining -= 1;
            fail = Some(rule.what.clone());
        }
        g.rules.retain(|r| r.remaining > 0);
        Decision { delay, hang, fail }
    }
}

/// A snapshot of request counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestCounts(pub BTreeMap<(Verb, String), u64>);

impl RequestCounts {
    /// All requests counted.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
    /// Count for one verb on one resource (`"ecsinstances"`, `"ecsinstances/status"`, ...).
    pub fn count(&self, verb: Verb, resource: &str) -> u64 {
        self.0
            .get(&(verb, resource.to_string()))
            .copied()
            .unwrap_or(0)
    }
    /// Writes (create, update, patch, delete, deletecollection) across all resources.
    pub fn writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|((v, _), _)| {
                matches!(
                    v,
                    Verb::Create
                        | Verb::Update
                        | Verb::Patch
                        | Verb::Delete
                        | Verb::DeleteCollection
                )
            })
            .map(|(_, n)| n)
            .sum()
    }
}

impl std::fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for ((verb, res), n) in &self.0 {
            writeln!(f, "{:>8} {:<16} {}", n, verb.as_str(), res)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        Faults::new(Arc::new(|| {}))
    }

    /// What the HTTP layer sleeps for, request by request: the delay applies to matching
    /// requests only, and not at all once cleared.
    #[test]
    fn delays_and_watch_lag_apply_to_matching_requests_until_cleared() {
        let f = faults();
        let delay = Duration::from_millis(300);
        f.delay(delay, RequestFilter::any().resource("widgets"));
        assert_eq!(f.on_request(Verb::Get, "widgets").delay, Some(delay));
        assert_eq!(f.on_request(Verb::Get, "gadgets").delay, None);
        f.lag_watches(delay, RequestFilter::any().verb(Verb::Get));
        assert_eq!(f.watch_lag("widgets"), None, "a filter for gets");
        f.lag_watches(delay, RequestFilter::any().resource("widgets"));
        assert_eq!(f.watch_lag("widgets"), Some(delay));
        assert_eq!(f.watch_lag("gadgets"), None);
        f.clear();
        assert_eq!(f.on_request(Verb::Get, "widgets").delay, None);
        assert_eq!(f.watch_lag("widgets"), None);
        assert_eq!(
            f.requests().count(Verb::Get, "widgets"),
            2,
            "counters are kept"
        );
    }
}
