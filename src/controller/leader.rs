//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! calls ECS.
//!
//! kube-runtime has no leader election. This is client-go's algorithm: a candidate takes the
//! Lease when it is free or expired, the leader renews it, and every write is conditional on the
//! resourceVersion it read, so two candidates can never both win. A leader that cannot renew
//! within the lease duration steps down before anyone else may take over.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease timings (client-go's defaults are 15 s / 10 s / 2 s).
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
    /// The leader steps down when it has not renewed for this long (< `duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates retry.
    pub retry_period: Duration,
}

/// What one attempt on the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following(Option<String>),
}

/// Runs the election forever; `true` on the channel while this replica leads.
pub fn spawn(client: Client, settings: LeaseSettings) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            match try_acquire_or_renew(&api, &settings).await {
                Ok(Attempt::Leading) => {
                    last_renewal = Some(tokio::time::Instant::now());
                    if !*tx.borrow() {
                        info!(identity = %settings.identity, lease = %settings.name, "became leader");
                        tx.send_replace(true);
                    }
                }
                Ok(Attempt::Following(holder)) => {
                    if *tx.borrow() {
                        warn!(holder = ?holder, "lost the lease to another replica");
                    }
                    last_renewal = None;
                    tx.send_replace(false);
                }
                Err(err) => {
                    warn!(error = %err, "could not reach the lease");
                    let expired =
                        last_renewal.is_none_or(|t| t.elapsed() >= settings.renew_deadline);
                    if expired && *tx.borrow() {
                        warn!("could not renew the lease in time; stepping down");
                        tx.send_replace(false);
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(settings.retry_period).await;
        }
    });
    rx
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let duration_secs = i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(None)),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(settings.identity.as_str());
    if holder.is_some() && !ours && !expired(spec, now, settings.duration) {
        return Ok(Attempt::Following(holder));
    }
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(duration_secs);
    spec.renew_time = Some(MicroTime(now));
    // `replace` sends the resourceVersion we read: a concurrent writer makes this fail with 409.
    match api
        .replace(&lease.name_any(), &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Attempt::Leading),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(holder)),
        Err(err) => Err(err),
    }
}

/// Whether a lease may be taken over at `now`: it was never renewed, or not within its duration
/// (the lease's own, else `default`).
fn expired(spec: &LeaseSpec, now: Timestamp, default: Duration) -> bool {
    let valid_for = Duration::from_secs(
        spec.lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(default.as_secs()),
    );
    spec.renew_time.as_ref().is_none_or(|renewed| {
        let age = now.duration_since(renewed.0);
        Duration::try_from(age).is_ok_and(|age| age >= valid_for)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renewed(at: &str, duration_secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some("replica-a".into()),
            lease_duration_seconds: duration_secs,
            renew_time: Some(MicroTime(at.parse().unwrap())),
            ..Default::default()
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The failover the leader scenario sees: a dead leader's lease (3 s) is taken over once
    /// 3 s have passed since its last renewal, and not a moment before.
    #[test]
    fn a_lease_can_be_taken_over_exactly_when_its_duration_has_passed() {
        let lease = renewed("2026-11-22T10:30:00Z", Some(3));
        let default = Duration::from_secs(15);
        assert!(!expired(&lease, at("2026-11-22T10:30:00Z"), default));
        assert!(!expired(&lease, at("2026-11-22T10:30:02.999Z"), default));
        assert!(expired(&lease, at("2026-11-22T10:30:03Z"), default));
        assert!(expired(&lease, at("2026-11-22T10:31:00Z"), default));
    }

    #[test]
    fn a_lease_without_a_duration_uses_ours_and_one_never_renewed_is_free() {
        let lease = renewed("2026-11-22T10:30:00Z", None);
        let default = Duration::from_secs(15);
        assert!(!expired(&lease, at("2026-11-22T10:30:14Z"), default));
        assert!(expired(&lease, at("2026-11-22T10:30:15Z"), default));
        let never = LeaseSpec {
            holder_identity: Some("replica-a".into()),
            ..Default::default()
        };
        assert!(expired(&never, at("2026-11-22T10:30:00Z"), default));
    }

    /// A renewal stamped ahead of our clock (skew) is not expired.
    #[test]
    fn a_renewal_from_the_future_is_valid() {
        let lease = renewed("2026-11-22T10:30:10Z", Some(3));
        assert!(!expired(
            &lease,
            at("2026-11-22T10:30:00Z"),
            Duration::from_secs(15)
        ));
    }
}
