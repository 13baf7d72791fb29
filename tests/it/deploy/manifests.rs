//! What an operator applies is sound: every manifest parses, every example is accepted by the
//! CRD's schema (kubesim enforces it as an API server does), the kustomize layout resolves, and
//! the Deployment is production-shaped (restricted Pod Security, probes, leader election) and
//! only uses flags and environment variables the binary understands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use ecs_power_controller::Cli;
use ecs_power_controller::schedule::{Calendars, Schedule};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource};
use kubesim::{KubeSim, KubeSimOptions};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.yaml`/`.yml` file below `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            // Argo CD's own layout (health.lua, health_test.yaml, testdata): checked by
            // `operator_package`, not manifests to apply.
            if path.ends_with("deploy/argocd") {
                continue;
            }
            // The krew plugin manifest is a release template (krew-release-bot's Go template:
            // `version: {{ .TagName }}` is not YAML until rendered), and not for a cluster:
            // `deploy::krew` renders it and checks it against krew's schema.
            if path.ends_with("deploy/krew") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// All documents of a YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_yaml_under_deploy_and_crds_parses_into_kubernetes_objects() {
    let files: Vec<PathBuf> = yaml_files(&repo().join("deploy"))
        .into_iter()
        .chain(yaml_files(&repo().join("crds")))
        .collect();
    assert!(files.len() >= 20, "found only {files:?}");
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{}: no document", rel(file));
        for doc in docs {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{}: a document without apiVersion/kind: {doc}",
                rel(file)
            );
            if doc["kind"] != "Kustomization" {
                assert!(
                    doc["metadata"]["name"].is_string(),
                    "{}: {} without metadata.name",
                    rel(file),
                    doc["kind"]
                );
            }
        }
    }
}

// ---- kustomize layout ----

/// The local paths a kustomization refers to (resources, patches, components, crds).
fn referenced_paths(kustomization: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["resources", "components", "crds"] {
        if let Some(items) = kustomization[key].as_array() {
            out.extend(items.iter().filter_map(|v| v.as_str().map(str::to_string)));
        }
    }
    for key in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
        if let Some(items) = kustomization[key].as_array() {
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        if let Some(p) = other["path"].as_str() {
                            out.push(p.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_kustomization_entry_exists_and_overlays_build_on_the_base() {
    let kustomizations: Vec<PathBuf> = yaml_files(&repo().join("deploy"))
        .into_iter()
        .chain(yaml_files(&repo().join("crds")))
        .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
        .collect();
    let dirs: BTreeSet<String> = kustomizations
        .iter()
        .map(|p| rel(p.parent().unwrap()))
        .collect();
    for expected in [
        "crds",
        "deploy/base",
        "deploy/examples",
        "deploy/overlays/single-namespace",
        "deploy/overlays/rrsa",
        "deploy/overlays/multi-tenant",
        "deploy/user-roles",
        "deploy/cluster-scoped",
    ] {
        assert!(
            dirs.contains(expected),
            "no kustomization in {expected}: {dirs:?}"
        );
    }
    let mut listed_files = BTreeSet::new();
    for file in &kustomizations {
        let dir = file.parent().unwrap();
        let k = &documents(file)[0];
        assert_eq!(k["kind"], "Kustomization", "{}", rel(file));
        for entry in referenced_paths(k) {
            assert!(
                !entry.contains("://") && !Path::new(&entry).is_absolute(),
                "{}: {entry} must be a relative local path",
                rel(file)
            );
            let target = dir.join(&entry);
            assert!(target.exists(), "{}: {entry} does not exist", rel(file));
            if target.is_dir() {
                assert!(
                    target.join("kustomization.yaml").exists(),
                    "{}: directory {entry} has no kustomization.yaml",
                    rel(file)
                );
            } else {
                listed_files.insert(target.canonicalize().unwrap());
            }
        }
    }
    // Nothing lies around unlisted (a file kustomize never reads is a file nobody checks).
    for file in yaml_files(&repo().join("deploy"))
        .into_iter()
        .chain(yaml_files(&repo().join("crds")))
    {
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        assert!(
            listed_files.contains(&file.canonicalize().unwrap()),
            "{} is not listed in its kustomization.yaml",
            rel(&file)
        );
    }
    // One copy of the CRD: the base uses crds/ in place.
    let base = &documents(&repo().join("deploy/base/kustomization.yaml"))[0];
    assert!(referenced_paths(base).contains(&"../../crds".to_string()));
    assert_eq!(base["namespace"], "ecs-power-controller");
    for overlay in ["single-namespace", "rrsa", "multi-tenant"] {
        let k =
            &documents(&repo().join(format!("deploy/overlays/{overlay}/kustomization.yaml")))[0];
        assert!(
            referenced_paths(k).contains(&"../../base".to_string()),
            "overlay {overlay} must build on ../../base"
        );
    }
}

/// `kubectl kustomize DIR`, parsed. kubectl (with its built-in kustomize) is part of the
/// development machine; set SKIP_KUSTOMIZE_RENDER=1 where it is not.
fn render(dir: &str) -> Option<Vec<Value>> {
    if std::env::var_os("SKIP_KUSTOMIZE_RENDER").is_some() {
        eprintln!("SKIP_KUSTOMIZE_RENDER set: not rendering {dir}");
        return None;
    }
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `kubectl kustomize` ({e}): install kubectl or set SKIP_KUSTOMIZE_RENDER=1")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Some(serde_saphyr::from_multiple::<Value>(&text).expect("rendered YAML parses"))
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(objects)))
}

fn env_names(container: &Value) -> BTreeSet<String> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_base_renders_the_whole_installation_in_its_namespace() {
    let Some(objects) = render("deploy/base") else {
        return;
    };
    let expected: BTreeSet<String> = [
        "Namespace/ecs-power-controller",
        "CustomResourceDefinition/ecsinstances.ecs.powerctl.io",
        "CustomResourceDefinition/ecspowerschedules.ecs.powerctl.io",
        "CustomResourceDefinition/ecsholidaycalendars.ecs.powerctl.io",
        "ServiceAccount/ecs-power-controller",
        "ClusterRole/ecs-power-controller",
        "ClusterRoleBinding/ecs-power-controller",
        "ClusterRole/ecs-power-controller-view",
        "ClusterRole/ecs-power-controller-edit",
        "Role/ecs-power-controller-leader-election",
        "RoleBinding/ecs-power-controller-leader-election",
        "Deployment/ecs-power-controller",
        "Service/ecs-power-controller-metrics",
        "PodDisruptionBudget/ecs-power-controller",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(kinds(&objects), expected);
    for o in &objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        let cluster_scoped = matches!(
            kind,
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        if !cluster_scoped {
            assert_eq!(o["metadata"]["namespace"], "ecs-power-controller", "{kind}");
        }
    }
    // The CRDs are the generated ones (the drift test keeps crds/ equal to the types).
    for (name, generated) in ecs_power_controller::api::CRDS {
        let generated = generated();
        let rendered = objects
            .iter()
            .find(|o| {
                o["kind"] == "CustomResourceDefinition"
                    && o["metadata"]["name"] == generated.meta().name.as_deref().unwrap_or_default()
            })
            .unwrap_or_else(|| panic!("the {name} CRD is not rendered"));
        let rendered: CustomResourceDefinition = serde_json::from_value(rendered.clone()).unwrap();
        assert!(
            rendered.spec == generated.spec,
            "the rendered {name} CRD differs from the generated one"
        );
    }
    let image = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "ecs-power-controller:0.1.0");
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

const PART_OF: &str = "app.kubernetes.io/part-of";

#[test]
fn the_single_namespace_overlay_has_no_cluster_wide_grants_and_watches_its_namespace() {
    let Some(objects) = render("deploy/overlays/single-namespace") else {
        return;
    };
    // A namespace admin can apply it: nothing cluster-scoped (no CRD, no Namespace), and every
    // object labelled like the rest of the installation.
    for o in &objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        assert!(
            !CLUSTER_SCOPED.contains(&kind),
            "{kind} in {:?}",
            kinds(&objects)
        );
        assert_eq!(o["metadata"]["namespace"], "ecs-power-controller", "{kind}");
        assert_eq!(
            o["metadata"]["labels"][PART_OF], "ecs-power-controller",
            "{kind}"
        );
    }
    let kinds = kinds(&objects);
    assert!(
        !kinds.iter().any(|k| k.starts_with("ClusterRole")),
        "{kinds:?}"
    );
    assert!(kinds.contains("Role/ecs-power-controller"), "{kinds:?}");
    assert!(
        kinds.contains("RoleBinding/ecs-power-controller"),
        "{kinds:?}"
    );
    let container = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let watch = container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "WATCH_NAMESPACE"))
        .expect("WATCH_NAMESPACE is set");
    assert_eq!(
        watch["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    // The base's env survives the patch.
    assert!(
        env_names(container)
            .is_superset(&["POD_NAME".to_string(), "POD_NAMESPACE".to_string()].into())
    );
}

/// The multi-tenant overlay: the whole installation, both guards set, and the controller may
/// list and watch Namespaces (nothing more) for the shared-credentials selector.
#[test]
fn the_multi_tenant_overlay_sets_both_guards_and_may_watch_namespaces() {
    let Some(objects) = render("deploy/overlays/multi-tenant") else {
        return;
    };
    let kinds = kinds(&objects);
    for expected in [
        "CustomResourceDefinition/ecsinstances.ecs.powerctl.io",
        "ClusterRole/ecs-power-controller",
        "ClusterRole/ecs-power-controller-namespaces",
        "ClusterRoleBinding/ecs-power-controller-namespaces",
        "Deployment/ecs-power-controller",
    ] {
        assert!(kinds.contains(expected), "{expected} not in {kinds:?}");
    }
    for o in &objects {
        assert_eq!(
            o["metadata"]["labels"][PART_OF], "ecs-power-controller",
            "{}",
            o["kind"]
        );
    }
    let namespaces_role = objects
        .iter()
        .find(|o| {
            o["metadata"]["name"] == "ecs-power-controller-namespaces" && o["kind"] == "ClusterRole"
        })
        .unwrap();
    assert_eq!(
        namespaces_role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}])
    );
    let container = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let value = |name: &str| {
        container["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    assert_eq!(
        value("SHARED_CREDENTIALS_SELECTOR").as_deref(),
        Some("ecs.powerctl.io/shared-credentials=allowed")
    );
    assert_eq!(
        value("INSTANCE_TAG_GUARD").as_deref(),
        Some("ecs.powerctl.io/namespaces")
    );
    // The base's env and arguments survive the patch; the install watches every namespace.
    assert!(
        env_names(container)
            .is_superset(&["POD_NAME".to_string(), "POD_NAMESPACE".to_string()].into())
    );
    assert!(!env_names(container).contains("WATCH_NAMESPACE"));
}

#[test]
fn the_cluster_admin_part_is_the_crd_and_the_aggregated_user_roles() {
    let Some(objects) = render("deploy/cluster-scoped") else {
        return;
    };
    let expected: BTreeSet<String> = [
        "CustomResourceDefinition/ecsinstances.ecs.powerctl.io",
        "CustomResourceDefinition/ecspowerschedules.ecs.powerctl.io",
        "CustomResourceDefinition/ecsholidaycalendars.ecs.powerctl.io",
        "ClusterRole/ecs-power-controller-view",
        "ClusterRole/ecs-power-controller-edit",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(kinds(&objects), expected);
    for o in &objects {
        assert_eq!(
            o["metadata"]["labels"][PART_OF], "ecs-power-controller",
            "{}",
            o["kind"]
        );
    }
    let aggregates = |name: &str, into: &str| {
        let role = objects
            .iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap();
        assert_eq!(
            role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{into}")],
            "true",
            "{name}"
        );
    };
    aggregates("ecs-power-controller-view", "view");
    aggregates("ecs-power-controller-edit", "edit");
}

#[test]
fn the_rrsa_overlay_gives_the_pod_what_ack_rrsa_expects() {
    let Some(objects) = render("deploy/overlays/rrsa") else {
        return;
    };
    let sa = find(&objects, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"],
        "ecs-power-controller"
    );
    let pod = &find(&objects, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = env_names(container);
    for name in [
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "POD_NAME",
        "POD_NAMESPACE",
    ] {
        assert!(env.contains(name), "{name} missing: {env:?}");
    }
    let token_file = container["env"]
        .as_array()
        .and_then(|e| {
            e.iter()
                .find(|e| e["name"] == "ALIBABA_CLOUD_OIDC_TOKEN_FILE")
        })
        .and_then(|e| e["value"].as_str())
        .expect("token file");
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "rrsa-oidc-token"))
        .expect("the projected token volume");
    let source = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["audience"], "sts.aliyuncs.com");
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "rrsa-oidc-token"))
        .expect("the token is mounted");
    let mounted_at = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap_or_default(),
        source["path"].as_str().unwrap_or_default()
    );
    assert_eq!(
        token_file, mounted_at,
        "the env var points at the mounted token"
    );
    // The credential chain reads exactly these variables.
    let chain = std::fs::read_dir(repo().join("crates/ecs-client/src/credentials"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    for name in [
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    ] {
        assert!(
            chain.contains(&format!("\"{name}\"")),
            "the credential chain does not read {name}"
        );
    }
}

#[test]
fn the_examples_render() {
    let Some(objects) = render("deploy/examples") else {
        return;
    };
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] == "EcsInstance")
            .count()
            >= 7
    );
}

// ---- the Deployment ----

fn deployment() -> Value {
    documents(&repo().join("deploy/base/deployment.yaml")).remove(0)
}

#[test]
fn the_deployment_meets_the_restricted_pod_security_standard() {
    let d = deployment();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_u64()
            .is_some_and(|u| u > 0)
    );
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    for (kind, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            c["resources"][kind][resource].is_string(),
            "resources.{kind}.{resource}"
        );
    }
    // The namespace enforces it.
    let ns = documents(&repo().join("deploy/base/namespace.yaml")).remove(0);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn the_deployment_is_highly_available_with_one_leader() {
    let d = deployment();
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    assert!(args.contains(&"--log-format=json"), "{args:?}");
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = c["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("{name} not set"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], path, "{name}");
    }
    let selector = &d["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        &selector["app.kubernetes.io/name"]
    );
    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname")
    );
    for t in spread {
        assert_eq!(&t["labelSelector"]["matchLabels"], selector);
    }
    let pdb = documents(&repo().join("deploy/base/poddisruptionbudget.yaml")).remove(0);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let svc = documents(&repo().join("deploy/base/service.yaml")).remove(0);
    assert_eq!(&svc["spec"]["selector"], selector);
}

#[test]
fn the_deployment_speaks_the_binarys_language() {
    let d = deployment();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    // The arguments parse with the real command line.
    let parsed = Cli::command().try_get_matches_from(
        std::iter::once("ecs-power-controller".to_string()).chain(args.iter().cloned()),
    );
    assert!(
        parsed.is_ok(),
        "{args:?}: {}",
        parsed.err().map(|e| e.to_string()).unwrap_or_default()
    );
    // Every environment variable set is one `run` reads.
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    let known: BTreeSet<String> = run
        .get_arguments()
        .chain(cli.get_arguments())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for name in env_names(c) {
        assert!(
            known.contains(&name),
            "the Deployment sets {name}, which `run` does not read"
        );
    }
    for path in [
        "deploy/overlays/single-namespace/watch-own-namespace.yaml",
        "deploy/overlays/multi-tenant/guards.yaml",
    ] {
        let patch = documents(&repo().join(path)).remove(0);
        for name in env_names(&patch["spec"]["template"]["spec"]["containers"][0]) {
            assert!(
                known.contains(&name),
                "{path} sets {name}, which `run` does not read"
            );
        }
    }
    // The probes and the Service hit what --metrics-addr serves by default.
    let metrics_addr = run
        .get_arguments()
        .find(|a| a.get_id() == "metrics_addr")
        .and_then(|a| {
            a.get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned())
        })
        .expect("--metrics-addr default");
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    assert!(
        metrics_addr.ends_with(&format!(":{port}")),
        "{metrics_addr} vs {port}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], c["ports"][0]["name"]);
}

#[test]
fn the_dockerfile_builds_a_static_non_root_image() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage");
    let last_from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap();
    assert!(last_from.contains("distroless/static"), "{last_from}");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.contains(" 0"))
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
    // The image is the product only: the developer tools stay out of the binary.
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("--no-default-features") && build.contains("--locked"),
        "{build}"
    );
}

#[test]
fn the_product_without_dev_tools_links_no_simulator_and_no_kubesim() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            "ecs-power-controller",
            "--no-default-features",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("ecs-client"), "{tree}");
    for tool in ["ecs-sim ", "kubesim "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(tool)),
            "the product image must not link {tool}:\n{tree}"
        );
    }
}

// ---- the examples against the CRD's schema ----

/// kubesim with the committed CRDs installed (the files users apply, not the Rust types).
async fn cluster_with_crd() -> (KubeSim, Client) {
    let api = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    let client = api.client().unwrap();
    for file in yaml_files(&repo().join("crds")) {
        let doc = documents(&file).remove(0);
        if doc["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
        Api::<CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", rel(&file)));
    }
    (api, client)
}

fn api_for(client: &Client, obj: &Value) -> Api<DynamicObject> {
    let (group, version) = match obj["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            obj["apiVersion"].as_str().unwrap().to_string(),
        ),
    };
    let kind = obj["kind"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk(&group, &version, kind);
    let plural = match kind {
        "EcsInstance" => "ecsinstances",
        "EcsPowerSchedule" => "ecspowerschedules",
        "EcsHolidayCalendar" => "ecsholidaycalendars",
        "Secret" => "secrets",
        other => panic!("unexpected kind in examples: {other}"),
    };
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// `sub`'s every leaf is in `full` with the same value (defaults may add more, nothing may go).
fn contained(sub: &Value, full: &Value, path: &str) -> Result<(), String> {
    match (sub, full) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                contained(
                    v,
                    b.get(k)
                        .ok_or(format!("{p} was dropped (pruned: unknown field?)"))?,
                    &p,
                )?;
            }
            Ok(())
        }
        _ if sub == full => Ok(()),
        _ => Err(format!("{path}: {sub} became {full}")),
    }
}

#[tokio::test]
async fn every_example_is_accepted_by_the_crd_schema_and_keeps_every_field() {
    let (sim, client) = cluster_with_crd().await;
    let examples = yaml_files(&repo().join("deploy/examples"));
    let (mut instances, mut schedules) = (0, 0);
    let mut typed_schedules = Vec::new();
    let mut calendars = Vec::new();
    for file in &examples {
        for doc in documents(file) {
            if doc["kind"] == "Kustomization" {
                continue;
            }
            let mut body = doc.clone();
            if doc["kind"] == "Secret" {
                // kubesim does not fold stringData into data as a real server does.
                if let Some(string_data) = body.as_object_mut().and_then(|o| o.remove("stringData"))
                {
                    let data: serde_json::Map<String, Value> = string_data
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| {
                            let bytes = v.as_str().unwrap().as_bytes().to_vec();
                            (
                                k.clone(),
                                serde_json::to_value(k8s_openapi::ByteString(bytes)).unwrap(),
                            )
                        })
                        .collect();
                    body["data"] = Value::Object(data);
                }
            }
            let obj: DynamicObject = serde_json::from_value(body).unwrap();
            let api = api_for(&client, &doc);
            let created = api
                .create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| {
                    panic!("{}: {} refused: {e}", rel(file), doc["metadata"]["name"])
                });
            if doc["kind"] == "EcsInstance" {
                instances += 1;
                let stored = serde_json::to_value(&created).unwrap();
                contained(&doc["spec"], &stored["spec"], "spec")
                    .unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                contained(
                    &doc["metadata"]["annotations"],
                    &stored["metadata"]["annotations"],
                    "metadata.annotations",
                )
                .unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                // What the controller will read: the typed object deserializes.
                let typed: ecs_power_controller::api::EcsInstance =
                    serde_json::from_value(stored).unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                assert!(typed.meta().name.is_some());
            }
            if doc["kind"] == "EcsPowerSchedule" {
                schedules += 1;
                let stored = serde_json::to_value(&created).unwrap();
                contained(&doc["spec"], &stored["spec"], "spec")
                    .unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                // The schema lets it through; the schedule itself must be valid too.
                let typed: ecs_power_controller::api::EcsPowerSchedule =
                    serde_json::from_value(stored).unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                typed_schedules.push((rel(file), typed));
            }
            if doc["kind"] == "EcsHolidayCalendar" {
                let stored = serde_json::to_value(&created).unwrap();
                contained(&doc["spec"], &stored["spec"], "spec")
                    .unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                let typed: ecs_power_controller::api::EcsHolidayCalendar =
                    serde_json::from_value(stored).unwrap_or_else(|e| panic!("{}: {e}", rel(file)));
                calendars.push(typed);
            }
        }
    }
    assert!(
        instances >= 7,
        "only {instances} EcsInstances in deploy/examples"
    );
    assert!(schedules >= 1, "no EcsPowerSchedule in deploy/examples");
    // The schema lets them through; each schedule must compile too, with the examples'
    // calendars (a calendar an example uses is an example of its own).
    for (file, typed) in &typed_schedules {
        let namespace = typed.metadata.namespace.as_deref();
        let found: Calendars = calendars
            .iter()
            .filter(|c| c.metadata.namespace.as_deref() == namespace)
            .map(|c| (c.metadata.name.as_deref().unwrap_or_default(), &c.spec))
            .collect();
        Schedule::compile(&typed.spec, &found).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_broken_example_is_refused_with_the_field_named() {
    let (sim, client) = cluster_with_crd().await;
    let instance = documents(&repo().join("deploy/examples/running.yaml")).remove(0);
    let schedule = documents(&repo().join("deploy/examples/schedule.yaml"))
        .into_iter()
        .find(|doc| doc["kind"] == "EcsPowerSchedule")
        .unwrap();
    let window = |days: Value, from: &str, to: &str| json!({"spec": {"running": [{"days": days, "from": from, "to": to}]}});
    let schedule_cases: Vec<(&str, Value, &str)> = vec![
        (
            "a window ending at 25:00",
            window(json!(["Mon"]), "08:00", "25:00"),
            "spec.running[0].to",
        ),
        (
            "a window starting at 8 o'clock without the leading zero",
            window(json!(["Mon"]), "8:00", "20:00"),
            "spec.running[0].from",
        ),
        (
            "a window without a length",
            window(json!(["Mon"]), "08:00", "08:00"),
            "spec.running[0]",
        ),
        (
            "a window on no day",
            window(json!([]), "08:00", "20:00"),
            "spec.running[0].days",
        ),
        (
            "a day that does not exist",
            window(json!(["Mo"]), "08:00", "20:00"),
            "spec.running[0].days[0]",
        ),
        (
            "no time zone",
            json!({"spec": {"timeZone": null}}),
            "spec.timeZone",
        ),
        (
            "an exception date that is not one",
            json!({"spec": {"exceptions": [{"date": "25.12.2026", "powerState": "Stopped"}]}}),
            "spec.exceptions[0].date",
        ),
    ];
    let instance_cases: Vec<(&str, Value, &str)> = vec![
        (
            "a power state that does not exist",
            json!({"spec": {"powerState": "On"}}),
            "spec.powerState",
        ),
        (
            "an instance id that is not one",
            json!({"spec": {"instanceId": "web-server"}}),
            "spec.instanceId",
        ),
        (
            "a reboot mode that does not exist",
            json!({"spec": {"reboot": {"token": "t1", "mode": "Gentle"}}}),
            "spec.reboot.mode",
        ),
        (
            "an empty reboot token",
            json!({"spec": {"reboot": {"token": ""}}}),
            "spec.reboot.token",
        ),
        (
            "no region",
            json!({"spec": {"regionId": null}}),
            "spec.regionId",
        ),
    ];
    let cases = instance_cases
        .into_iter()
        .map(|c| (&instance, c))
        .chain(schedule_cases.into_iter().map(|c| (&schedule, c)));
    for (i, (good, (what, patch, field))) in cases.enumerate() {
        let mut broken = good.clone();
        json_patch::merge(&mut broken, &patch);
        broken["metadata"]["name"] = json!(format!("broken-{i}"));
        let obj: DynamicObject = serde_json::from_value(broken.clone()).unwrap();
        let err = api_for(&client, &broken)
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(what);
        let kube::Error::Api(status) = err else {
            panic!("{what}: expected an API error, got {err:?}");
        };
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{what}"
        );
        let causes = status.details.map(|d| d.causes).unwrap_or_default();
        assert!(
            causes.iter().any(|c| c.field == field),
            "{what}: no cause for {field} in {causes:?}"
        );
    }
    sim.shutdown().await;
}
