//! Credentials flows: a wrong Secret stalls and rotating it fixes it without a restart; a
//! missing Secret names itself and the keys it needs. Run on both backends: see `flows/mod.rs`.

use ecs_client::InstanceStatus;
use ecs_power_controller::api::{PowerState, SecretReference};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::scenario::*;

async fn create_secret(s: &Scenario, name: &str, id: &str, secret: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": s.namespace},
        "stringData": {"accessKeyId": id, "accessKeySecret": secret},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

flow!(
    a_wrong_secret_stalls_and_rotating_it_fixes_without_a_restart,
    async |s| {
        s.add([instance("i-cred1", InstanceStatus::Stopped)]);
        s.controller();
        let (key_id, key_secret) = s.sim.access_key();
        create_secret(s, "ecs-credentials", &key_id, "not-the-secret").await;
        let mut obj = ecs_instance("db", "i-cred1", PowerState::Running);
        obj.spec.credentials_secret_ref = Some(SecretReference {
            name: "ecs-credentials".into(),
        });
        s.create(&obj).await;

        let obj = s
            .wait_for_reason("db", "Stalled", "True", "CredentialsInvalid")
            .await;
        let message = condition(&obj, "Stalled").unwrap().message;
        assert!(message.contains("SignatureDoesNotMatch"), "{message}");
        assert!(
            !message.contains("not-the-secret"),
            "the secret leaked: {message}"
        );
        // Backed off. (How many looks failed so far depends on what woke the controller: the
        // Secret's own watch event may arrive after the first failure and look again.)
        let retry = obj.status.unwrap().retry;
        assert!(retry.count >= 1, "{retry:?}");
        assert_eq!(
            retry.last_error_code.as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert!(retry.next_attempt_after.is_some(), "{retry:?}");

        // Rotate the Secret: the controller notices (Secret watch) and acts at once, despite the
        // 10-minute recheck it had scheduled (far beyond what `wait_for` waits).
        Api::<Secret>::namespaced(s.client.clone(), &s.namespace)
            .patch(
                "ecs-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"accessKeySecret": key_secret}})),
            )
            .await
            .unwrap();
        s.wait_for("db", is_ready).await;
    }
);

flow!(
    a_missing_secret_names_the_secret_and_the_keys_it_needs,
    async |s| {
        s.add([instance("i-cred2", InstanceStatus::Stopped)]);
        s.controller();
        let mut obj = ecs_instance("db2", "i-cred2", PowerState::Running);
        obj.spec.credentials_secret_ref = Some(SecretReference {
            name: "nowhere".into(),
        });
        s.create(&obj).await;
        let obj = s
            .wait_for_reason("db2", "Stalled", "True", "CredentialsInvalid")
            .await;
        let message = condition(&obj, "Stalled").unwrap().message;
        assert!(
            message.contains(&format!("{}/nowhere", s.namespace))
                && message.contains("accessKeyId"),
            "{message}"
        );

        // Creating it fixes it.
        let (id, secret) = s.sim.access_key();
        create_secret(s, "nowhere", &id, &secret).await;
        s.wait_for("db2", is_ready).await;
    }
);
