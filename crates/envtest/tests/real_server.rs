//! The fixture itself, against the real kube-apiserver from `KUBEBUILDER_ASSETS` (skipped with one
//! line when it is unset; an error under `CI=true`), and the project's CRDs applied server-side to
//! it with no `Warning` header.

use envtest::{Envtest, Options, kubectl_warnings};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The per-binary server, or `None` (skipped) without `KUBEBUILDER_ASSETS` outside CI.
fn server() -> Option<&'static Envtest> {
    Envtest::shared().expect("a real API server from KUBEBUILDER_ASSETS")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn admin_can_nobody_cannot_and_a_service_account_token_authenticates() {
    let Some(env) = server() else { return };
    let ns = env.create_namespace("fixture").await.unwrap();
    let admin = env.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    assert!(namespaces.get(&ns).await.is_ok());

    let nobody: Api<ConfigMap> = Api::namespaced(env.nobody_client().await.unwrap(), &ns);
    match nobody.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("nobody must be forbidden (RBAC is on), got {other:?}"),
    }

    let sas: Api<ServiceAccount> = Api::namespaced(admin, &ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("robot".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let token = env.sa_token(&ns, "robot").await.unwrap();
    let robot = kube::Client::try_from(env.config_for_token(&token).await.unwrap()).unwrap();
    // Authenticated as the ServiceAccount, with no role bound: 403 naming it, not 401.
    let api: Api<ConfigMap> = Api::namespaced(robot, &ns);
    match api.get("anything").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message
                    .contains(&format!("system:serviceaccount:{ns}:robot")),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403 for the ServiceAccount, got {other:?}"),
    }

    // kubectl finds the server through the kubeconfig.
    let out = env
        .kubectl()
        .args(["get", "namespace", &ns, "-o", "name"])
        .output()
        .expect("kubectl on the PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("namespace/{ns}")
    );
}

#[tokio::test]
async fn the_warning_collector_sees_the_servers_warnings() {
    let Some(env) = server() else { return };
    // The CRD mistake crds/ used to carry: the server accepts it with a Warning header.
    let (client, warnings) = env.client_with_warnings().await.unwrap();
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.warn.envtest.dev"},
        "spec": {
            "group": "warn.envtest.dev",
            "names": {"kind": "Gadget", "plural": "gadgets"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"n": {"type": "integer", "format": "uint32"}}
            }}}]
        }
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    crds.patch(
        "gadgets.warn.envtest.dev",
        &PatchParams::apply("envtest-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let seen = warnings.take();
    assert!(
        seen.iter()
            .any(|w| w.method == "PATCH" && w.text.contains(r#"unrecognized format "uint32""#)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_projects_crds_apply_server_side_with_no_warning() {
    let Some(env) = server() else { return };
    let (client, warnings) = env.client_with_warnings().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("envtest-crds").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "ecsholidaycalendars.ecs.powerctl.io",
            "ecsinstances.ecs.powerctl.io",
            "ecspowerschedules.ecs.powerctl.io"
        ],
        "every CRD of crds/"
    );
    for name in &names {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), name, conditions::is_crd_established()),
        )
        .await
        .expect("established in time")
        .unwrap();
    }
    let seen = warnings.take();
    assert!(
        seen.is_empty(),
        "the server warned about our CRDs: {seen:#?}"
    );

    // And the way a user installs them (kustomize, as deploy/base does): kubectl prints the
    // server's warnings on stderr.
    let out = env
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--field-manager=envtest-kubectl",
            "-k",
        ])
        .arg(repo().join("crds"))
        .output()
        .expect("kubectl on the PATH");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(kubectl_warnings(&stderr), Vec::<String>::new(), "{stderr}");
}

/// A server of its own: it is stopped and started again.
#[tokio::test]
async fn the_apiserver_restarts_on_the_same_etcd_and_etcd_compacts() {
    let Some(mut env) = Envtest::from_env(Options {
        extra_apiserver_args: vec!["--max-requests-inflight=50".into()],
        ..Options::default()
    })
    .await
    .unwrap() else {
        return;
    };
    let dir = env.dir().to_path_buf();
    let api: Api<ConfigMap> = Api::namespaced(env.client().await.unwrap(), "default");
    let before = api
        .create(&PostParams::default(), &configmap("kept"))
        .await
        .unwrap();

    let revision = env.compact_etcd().unwrap();
    let rv: i64 = before.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        revision >= rv,
        "compacted at {revision}, object written at {rv}"
    );

    env.stop_apiserver();
    assert!(!env.apiserver_running());
    match api.get("kept").await {
        Err(kube::Error::Api(s)) => panic!("a stopped server answered {s:?}"),
        Err(_) => {}
        Ok(cm) => panic!("a stopped server answered {cm:?}"),
    }
    env.start_apiserver().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(env.client().await.unwrap(), "default");
    let after = api.get("kept").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);

    drop(env);
    assert!(!dir.exists(), "{} removed on drop", dir.display());
}
