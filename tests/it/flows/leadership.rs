//! Leader election: only the leader calls ECS, and a failover keeps reboots exactly once. Run on both backends: see `flows/mod.rs`.

use std::time::Duration;

use ecs_client::InstanceStatus;
use ecs_power_controller::api::PowerState;
use ecs_power_controller::controller::LeaseSettings;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use super::QUIET;
use crate::support::scenario::*;

fn lease(s: &Scenario, identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "ecs-power-controller".into(),
        namespace: s.namespace.clone(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

// Two replicas: only the leader calls ECS; when it dies the other takes the lease over and
// carries on, and no token is carried out twice across the failover. (When a lease may be
// taken over is `controller::leader`'s unit test.)
flow!(
    only_the_leader_calls_ecs_and_failover_keeps_reboots_exactly_once,
    async |s| {
        s.add([
            instance("i-le1", InstanceStatus::Running),
            instance("i-le2", InstanceStatus::Stopped),
        ]);
        let mut a = s.fast_options();
        a.lease = Some(lease(s, "replica-a"));
        let mut b = s.fast_options();
        b.lease = Some(lease(s, "replica-b"));
        let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.namespace);
        let holder = async || {
            leases
                .get_opt("ecs-power-controller")
                .await
                .unwrap()
                .and_then(|l| l.spec?.holder_identity)
        };
        let replica_a = s.controller_with(a);
        // replica-a holds the lease before replica-b starts.
        s.wait_until("replica-a leads", async || {
            holder().await.as_deref() == Some("replica-a")
        })
        .await;
        let replica_b = s.controller_with(b);

        let t1 = requested_now();
        s.create(&with_token(
            ecs_instance("app", "i-le1", PowerState::Running),
            &t1,
        ))
        .await;
        s.wait_for("app", token_done(t1)).await;
        let calls = |m: &ecs_power_controller::telemetry::Metrics| {
            m.ecs_call_count("DescribeInstances", "OK") + m.ecs_call_count("RebootInstance", "OK")
        };
        assert!(calls(&replica_a.metrics) > 0, "the first replica leads");
        assert_eq!(calls(&replica_b.metrics), 0, "the follower never calls ECS");

        // The leader dies without releasing the lease.
        s.kill(replica_a).await;
        s.create(&ecs_instance("web", "i-le2", PowerState::Running))
            .await;
        s.wait_for("web", is_ready).await;
        assert_eq!(holder().await.as_deref(), Some("replica-b"));
        assert!(replica_b.metrics.ecs_call_count("StartInstance", "OK") == 1);
        tokio::time::sleep(QUIET).await;
        assert_eq!(s.reboots("i-le1"), 1, "no second reboot across failover");
    }
);
