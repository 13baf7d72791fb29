//! Where the benchmark's Kubernetes API runs: kubesim in this process (the default), a real
//! kube-apiserver + etcd started here through crates/envtest (`KUBEBUILDER_ASSETS`), or the
//! cluster `KUBECONFIG` names. The measurement is the same on each; what differs is how the
//! API is set up, which identity the controller runs as, how requests are counted and whose
//! memory is read.
//!
//! On a real server the controller runs as a ServiceAccount (bound to `cluster-admin`), not as
//! the admin: the admin (`system:masters`) is exempt from API Priority and Fairness, and a
//! benchmark that could never be throttled would prove nothing about 429s. Requests are
//! counted from the server's own `apiserver_request_total` (so they include the benchmark's
//! spec patches and the few the server makes itself, as kubesim's count includes the former).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use kubesim::{KubeSim, KubeSimOptions};

/// Which API server `bench --server` runs against.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// The in-process API server.
    Kubesim,
    /// A real kube-apiserver and etcd started for the run (`KUBEBUILDER_ASSETS`).
    Envtest,
    /// The cluster `KUBECONFIG` points at (the controller runs with that kubeconfig too).
    Kubeconfig,
}

/// The ServiceAccount the controller runs as on envtest.
const SERVICE_ACCOUNT: &str = "ecs-power-controller-bench";

/// A running API server for one benchmark run.
pub(super) enum ApiServer {
    Kubesim(KubeSim),
    Envtest(Box<envtest::Envtest>),
    Kubeconfig,
}

/// Requests the API server has counted since it started: by "verb resource", and the 429s.
#[derive(Clone, Debug, Default)]
pub(super) struct Requests {
    pub by_kind: BTreeMap<String, u64>,
    pub throttled: u64,
}

impl Requests {
    pub(super) fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Creates, updates, patches and deletes.
    pub(super) fn writes(&self) -> u64 {
        self.by_kind
            .iter()
            .filter(|(kind, _)| {
                let verb = kind.split(' ').next().unwrap_or_default();
                matches!(
                    verb,
                    "create" | "update" | "patch" | "delete" | "deletecollection"
                )
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// What was counted since `before`.
    pub(super) fn since(&self, before: &Requests) -> Requests {
        Requests {
            by_kind: self
                .by_kind
                .iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        n.saturating_sub(before.by_kind.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            throttled: self.throttled.saturating_sub(before.throttled),
        }
    }
}

impl ApiServer {
    /// Starts (or, for `Kubeconfig`, reaches) the API server for a run of `objects` objects.
    pub(super) async fn start(kind: ServerKind, objects: usize) -> Result<ApiServer, String> {
        Ok(match kind {
            ServerKind::Kubesim => ApiServer::Kubesim(
                KubeSim::start(KubeSimOptions {
                    auto_create_namespaces: true,
                    history_limit: 50 * objects + 10_000,
                    ..KubeSimOptions::default()
                })
                .await
                .map_err(|e| e.to_string())?,
            ),
            ServerKind::Envtest => ApiServer::Envtest(Box::new(
                envtest::Envtest::start(envtest::Options::default())
                    .await
                    .map_err(|e| e.to_string())?,
            )),
            ServerKind::Kubeconfig => ApiServer::Kubeconfig,
        })
    }

    /// An admin client for the benchmark's own requests.
    pub(super) async fn client(&self) -> Result<Client, String> {
        match self {
            ApiServer::Kubesim(kube) => kube.client().map_err(|e| e.to_string()),
            ApiServer::Envtest(env) => env.client().await.map_err(|e| e.to_string()),
            ApiServer::Kubeconfig => Client::try_default().await.map_err(|e| e.to_string()),
        }
    }

    /// The CRDs installed (created on kubesim, which makes namespaces as they are used;
    /// applied server-side on a real server and waited for, and `namespace` created there).
    pub(super) async fn prepare(&self, client: &Client, namespace: &str) -> Result<(), String> {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if let ApiServer::Kubesim(_) = self {
            for (_, crd) in crate::api::CRDS {
                crds.create(&PostParams::default(), &crd())
                    .await
                    .map_err(|e| format!("installing the CRDs: {e}"))?;
            }
            return Ok(());
        }
        crate::demo::apply_crds(client, "ecs-power-controller-bench")
            .await
            .map_err(|e| format!("installing the CRDs: {e}"))?;
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace},
        }))
        .map_err(|e| e.to_string())?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("creating namespace {namespace}: {e}"))?;
        Ok(())
    }

    /// Writes the kubeconfig the controller runs with into `dir` and returns its path: kubesim's;
    /// on envtest a ServiceAccount token's (see the module's doc); else `KUBECONFIG`'s own.
    pub(super) async fn controller_kubeconfig(
        &self,
        client: &Client,
        namespace: &str,
        dir: &Path,
    ) -> Result<PathBuf, String> {
        let path = dir.join("kubeconfig");
        match self {
            ApiServer::Kubesim(kube) => {
                kube.write_kubeconfig(&path).map_err(|e| e.to_string())?;
            }
            ApiServer::Envtest(env) => {
                let pp = PostParams::default();
                let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace},
                }))
                .map_err(|e| e.to_string())?;
                Api::<ServiceAccount>::namespaced(client.clone(), namespace)
                    .create(&pp, &sa)
                    .await
                    .map_err(|e| format!("creating the ServiceAccount: {e}"))?;
                let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": SERVICE_ACCOUNT},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                  "namespace": namespace}],
                }))
                .map_err(|e| e.to_string())?;
                Api::<ClusterRoleBinding>::all(client.clone())
                    .create(&pp, &binding)
                    .await
                    .map_err(|e| format!("binding the ServiceAccount: {e}"))?;
                let token = env
                    .sa_token(namespace, SERVICE_ACCOUNT)
                    .await
                    .map_err(|e| e.to_string())?;
                env.write_token_kubeconfig(&path, &token)
                    .map_err(|e| e.to_string())?;
            }
            ApiServer::Kubeconfig => {
                return std::env::var_os("KUBECONFIG")
                    .map(PathBuf::from)
                    .ok_or_else(|| "--server kubeconfig: set KUBECONFIG".to_string());
            }
        }
        Ok(path)
    }

    /// The requests counted so far.
    pub(super) async fn requests(&self, client: &Client) -> Requests {
        match self {
            ApiServer::Kubesim(kube) => Requests {
                by_kind: kube
                    .requests()
                    .0
                    .into_iter()
                    .map(|((verb, resource), n)| (format!("{} {resource}", verb.as_str()), n))
                    .collect(),
                throttled: 0,
            },
            ApiServer::Envtest(_) | ApiServer::Kubeconfig => {
                let request = http::Request::get("/metrics").body(Vec::new());
                match request {
                    Ok(request) => client
                        .request_text(request)
                        .await
                        .map(|text| parse_request_metrics(&text))
                        .unwrap_or_default(),
                    Err(_) => Requests::default(),
                }
            }
        }
    }

    /// The server processes whose memory a report gives: (name, pid).
    pub(super) fn processes(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiServer::Kubesim(_) => Vec::new(),
            ApiServer::Envtest(env) => {
                let (apiserver, etcd) = env.pids();
                [("kube-apiserver", apiserver), ("etcd", etcd)]
                    .into_iter()
                    .filter_map(|(name, pid)| Some((name, pid?.to_string())))
                    .collect()
            }
            ApiServer::Kubeconfig => Vec::new(),
        }
    }

    /// Stops what was started; on a cluster, deletes what the run made in `namespace`.
    pub(super) async fn shutdown(self, client: &Client, namespace: &str) {
        match self {
            ApiServer::Kubesim(kube) => kube.shutdown().await,
            ApiServer::Envtest(env) => drop(env),
            ApiServer::Kubeconfig => {
                let _ = crate::demo::delete_namespace_and_contents(client, namespace).await;
            }
        }
    }
}

/// `apiserver_request_total` by "verb resource[/subresource]" (verbs as RBAC spells them) and
/// its 429s.
fn parse_request_metrics(text: &str) -> Requests {
    let mut out = Requests::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_default()
        };
        let verb = match label("verb") {
            "POST" => "create",
            "PUT" => "update",
            "PATCH" | "APPLY" => "patch",
            "DELETE" => "delete",
            "DELETECOLLECTION" => "deletecollection",
            "GET" => "get",
            "LIST" => "list",
            "WATCH" => "watch",
            other => other,
        }
        .to_ascii_lowercase();
        let resource = match (label("resource"), label("subresource")) {
            ("", _) => "(non-resource)".to_string(),
            (r, "") => r.to_string(),
            (r, s) => format!("{r}/{s}"),
        };
        let n = value as u64;
        *out.by_kind.entry(format!("{verb} {resource}")).or_default() += n;
        if label("code") == "429" {
            out.throttled += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_servers_request_counter() {
        let text = r#"# HELP apiserver_request_total x
apiserver_request_total{code="200",component="apiserver",dry_run="",group="ecs.powerctl.io",resource="ecsinstances",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 20
apiserver_request_total{code="429",component="apiserver",dry_run="",group="ecs.powerctl.io",resource="ecsinstances",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 4
"#;
        let r = parse_request_metrics(text);
        assert_eq!(r.by_kind["patch ecsinstances/status"], 23);
        assert_eq!(r.by_kind["create events"], 10);
        assert_eq!(r.by_kind["get (non-resource)"], 4);
        assert_eq!(r.throttled, 3);
        assert_eq!(r.writes(), 33);
        assert_eq!(r.total(), 37);
        let later = Requests {
            by_kind: [("create events".to_string(), 15)].into(),
            throttled: 5,
        };
        let delta = later.since(&r);
        assert_eq!(delta.by_kind["create events"], 5);
        assert_eq!(delta.throttled, 2);
    }
}
