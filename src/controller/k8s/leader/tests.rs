//! The election's state machine on tokio's paused clock, against an in-memory Lease whose
//! requests can be made to hang per replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::core::Status;

use super::*;

/// One Lease, shared by the replicas of a test; writes are conditional on resourceVersion.
#[derive(Default)]
struct Server {
    lease: Mutex<Option<Lease>>,
}

impl Server {
    fn lease(&self) -> Option<Lease> {
        self.lease.lock().unwrap().clone()
    }

    fn holder(&self) -> Option<String> {
        self.lease()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    /// Another replica (whose clock may be anywhere) writes the Lease.
    fn written_by(&self, holder: &str, renewed: Timestamp) {
        let mut guard = self.lease.lock().unwrap();
        let rv = next_version(guard.as_ref());
        *guard = Some(Lease {
            metadata: ObjectMeta {
                name: Some("lease".into()),
                resource_version: Some(rv),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        });
    }
}

fn next_version(lease: Option<&Lease>) -> String {
    let current = lease
        .and_then(|l| l.metadata.resource_version.as_deref())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (current + 1).to_string()
}

fn conflict() -> kube::Error {
    kube::Error::Api(
        Status {
            code: 409,
            ..Status::failure("the object has been modified", "Conflict")
        }
        .boxed(),
    )
}

/// One replica's connection to the [`Server`]; `hang` makes its requests never answer.
#[derive(Clone)]
struct Connection {
    server: Arc<Server>,
    hang: Arc<AtomicBool>,
}

impl Connection {
    async fn answer(&self) {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl LeaseStore for Connection {
    async fn get(&self, _name: &str) -> Result<Option<Lease>, kube::Error> {
        self.answer().await;
        Ok(self.server.lease())
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.answer().await;
        let mut guard = self.server.lease.lock().unwrap();
        if guard.is_some() {
            return Err(conflict());
        }
        let mut created = lease.clone();
        created.metadata.resource_version = Some(next_version(None));
        *guard = Some(created.clone());
        Ok(created)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.answer().await;
        let mut guard = self.server.lease.lock().unwrap();
        let current = guard
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current != lease.metadata.resource_version {
            return Err(conflict());
        }
        let mut written = lease.clone();
        written.metadata.resource_version = Some(next_version(guard.as_ref()));
        *guard = Some(written.clone());
        Ok(written)
    }
}

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "lease".into(),
        namespace: "default".into(),
        identity: identity.into(),
        duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

fn replica(server: &Arc<Server>, identity: &str) -> (Leadership, Arc<AtomicBool>) {
    let hang = Arc::new(AtomicBool::new(false));
    let connection = Connection {
        server: server.clone(),
        hang: hang.clone(),
    };
    (spawn_on(connection, settings(identity)), hang)
}

/// When `leadership` next says `leading` (within five virtual minutes).
async fn until(leadership: &Leadership, leading: bool) -> Instant {
    let mut rx = leadership.leading();
    timeout(Duration::from_secs(300), rx.wait_for(|l| *l == leading))
        .await
        .unwrap_or_else(|_| panic!("never became leading={leading}"))
        .unwrap();
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_requests_hang_steps_down_on_its_own_clock_before_anyone_takes_over() {
    let server = Arc::new(Server::default());
    let (a, hang_a) = replica(&server, "a");
    until(&a, true).await;
    let (b, _) = replica(&server, "b");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(server.holder().as_deref(), Some("a"));

    // From now on a's requests never answer; its last renewal started at most one retry
    // period ago.
    hang_a.store(true, Ordering::SeqCst);
    let hung = Instant::now();
    let stepped_down = until(&a, false).await;
    let took_over = until(&b, true).await;
    assert!(
        stepped_down <= hung + Duration::from_secs(10),
        "a led for {:?} without renewing",
        stepped_down - hung
    );
    assert!(
        took_over > stepped_down,
        "b took the lease {:?} before a stepped down",
        stepped_down - took_over
    );
    assert!(!*a.leading().borrow(), "a stays down while it cannot renew");
    assert_eq!(server.holder().as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_candidate_whose_request_hangs_tries_again() {
    let server = Arc::new(Server::default());
    let (a, hang_a) = replica(&server, "a");
    hang_a.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!*a.leading().borrow());
    hang_a.store(false, Ordering::SeqCst);
    let answering = Instant::now();
    let led = until(&a, true).await;
    // The hung attempt gives up at its deadline (10 s); the next one, a retry period on, wins.
    assert!(
        led - answering <= Duration::from_secs(10 + 2),
        "a hung attempt held the candidate for {:?}",
        led - answering
    );
}

#[tokio::test(start_paused = true)]
async fn expiry_is_judged_by_when_the_lease_was_seen_to_change_not_by_its_timestamps() {
    for (clock, skew) in [
        ("an hour slow", -3600),
        ("an hour fast", 3600),
        ("accurate", 0),
    ] {
        let server = Arc::new(Server::default());
        let elsewhere = |t: Timestamp| t + jiff::SignedDuration::from_secs(skew);
        server.written_by("other", elsewhere(Timestamp::now()));
        let (b, _) = replica(&server, "b");
        let start = Instant::now();
        // The other replica renews every 2 s for a minute, by its own clock.
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!*b.leading().borrow(), "b took a lease renewed {clock}");
            server.written_by("other", elsewhere(Timestamp::now()));
        }
        let last_renewal = Instant::now();
        // Then it dies: b takes over once 15 s have passed on b's clock since it saw the last
        // renewal, however wrong the timestamps in it are.
        let led = until(&b, true).await;
        assert!(led - start > Duration::from_secs(60), "{clock}");
        assert!(
            led >= last_renewal + Duration::from_secs(15),
            "{clock}: b took over {:?} after the last renewal",
            led - last_renewal
        );
        assert!(
            led <= last_renewal + Duration::from_secs(15 + 2 + 2),
            "{clock}: b took over {:?} after the last renewal",
            led - last_renewal
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_within_a_retry_period() {
    let server = Arc::new(Server::default());
    let (a, _) = replica(&server, "a");
    until(&a, true).await;
    let (b, _) = replica(&server, "b");
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut a_leading = a.leading();
    let released = Instant::now();
    a.release().await;
    assert!(
        !*a_leading.borrow_and_update(),
        "a steps down before it releases"
    );
    let led = until(&b, true).await;
    assert!(
        led - released <= Duration::from_secs(2),
        "b took {:?} to take a released lease",
        led - released
    );
    assert_eq!(server.holder().as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_follower_releases_nothing() {
    let server = Arc::new(Server::default());
    let (a, _) = replica(&server, "a");
    until(&a, true).await;
    let (b, _) = replica(&server, "b");
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.release().await;
    assert_eq!(server.holder().as_deref(), Some("a"));
    assert!(*a.leading().borrow());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_leadership_stops_renewing_without_releasing() {
    let server = Arc::new(Server::default());
    let (a, _) = replica(&server, "a");
    until(&a, true).await;
    let version = server.lease().and_then(|l| l.metadata.resource_version);
    drop(a);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(server.holder().as_deref(), Some("a"));
    assert_eq!(
        server.lease().and_then(|l| l.metadata.resource_version),
        version,
        "a crashed replica writes nothing more"
    );
}
