//! A whole local stack in one process: the in-process Kubernetes API server with the CRD
//! installed, the ECS simulator, and the real controller between them, talking over HTTP on
//! loopback exactly as in a cluster. The `demo` command, the scenario tests and the fleet
//! benchmark all stand on it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::EcsInstance;
use crate::controller::config::Config;
use crate::controller::ecs::connect::ecs_side;
use crate::controller::k8s::runtime::{RunError, run_controller};
use crate::telemetry::Metrics;
use crate::telemetry::server::Readiness;
use ecs_client::Credentials;
use ecs_client::client::{EcsClient, EcsClientConfig};
use ecs_client::credentials::StaticProvider;
use ecs_client::endpoint::EndpointConfig;
use ecs_client::ratelimit::RateLimits;
use ecs_sim::{SimConfig, Simulator, StartError};
use kubesim::{KubeSim, KubeSimError, KubeSimOptions};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("in-process Kubernetes API: {0}")]
    Kube(#[from] KubeSimError),
    #[error("ECS simulator: {0}")]
    Sim(#[from] StartError),
    #[error("installing the CRD: {0}")]
    Crd(#[from] kube::Error),
    #[error("ECS client: {0}")]
    Ecs(#[from] ecs_client::EcsError),
}

/// A Kubernetes API (in-process, or a real cluster) and the simulator, with the EcsInstance CRD
/// installed.
pub struct Sandbox {
    /// The in-process API server; `None` on a real cluster.
    pub kube: Option<KubeSim>,
    pub sim: Simulator,
    pub client: Client,
    /// Where this sandbox's objects live: `default` in-process, a fresh one on a real cluster.
    pub namespace: String,
}

impl Sandbox {
    /// In-process: a new API server, nothing shared with anything else.
    pub async fn start(sim: SimConfig) -> Result<Self, SandboxError> {
        let kube = KubeSim::start(KubeSimOptions {
            auto_create_namespaces: true,
            ..KubeSimOptions::default()
        })
        .await?;
        let sim = Simulator::start(sim).await?;
        let client = kube.client()?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for (_, crd) in crate::api::CRDS {
            crds.create(&PostParams::default(), &crd()).await?;
        }
        Ok(Self {
            kube: Some(kube),
            sim,
            client,
            namespace: "default".to_string(),
        })
    }

    /// On a real cluster (the client's): the CRD applied (server-side), and a namespace of its
    /// own so that sandboxes running at once never see each other's objects.
    pub async fn on_cluster(client: Client, sim: SimConfig) -> Result<Self, SandboxError> {
        apply_crds(&client, "ecs-power-controller-tests").await?;
        let namespace = format!("ecsi-e2e-{:08x}", rand::random::<u32>());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
        }))
        .map_err(|e| SandboxError::Crd(kube::Error::SerdeError(e)))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        let sim = Simulator::start(sim).await?;
        Ok(Self {
            kube: None,
            sim,
            client,
            namespace,
        })
    }

    /// The credentials the simulator accepts (its first key).
    pub fn credentials(&self) -> Credentials {
        let (id, secret) = self.sim.access_key();
        Credentials::new(id, secret, None)
    }

    /// An ECS client pointed at the simulator, signing with its key, without rate limits.
    pub fn ecs_client(&self) -> Result<EcsClient, SandboxError> {
        let endpoint = EndpointConfig::fixed(&self.sim.endpoint())
            .map_err(ecs_client::EcsError::InvalidInput)?;
        let config = EcsClientConfig {
            endpoint,
            rate_limits: RateLimits {
                default_qps: 0.0,
                ..RateLimits::default()
            },
            ..EcsClientConfig::default()
        };
        Ok(EcsClient::new(
            config,
            Arc::new(StaticProvider(self.credentials())),
        )?)
    }

    /// Starts the real controller against this sandbox (batching as `config.batch` says).
    pub fn spawn_controller(&self, config: Config) -> Result<RunningController, SandboxError> {
        self.spawn_controller_on(self.client.clone(), config)
    }

    /// Starts the real controller on a Kubernetes client of its own: one replica of several,
    /// say with its own `User-Agent` for kubesim's faults to single out.
    pub fn spawn_controller_on(
        &self,
        client: Client,
        config: Config,
    ) -> Result<RunningController, SandboxError> {
        let metrics = Metrics::default();
        let ecs = ecs_side(self.ecs_client()?, metrics.clone(), &config);
        let (stop, stopped) = oneshot::channel::<()>();
        let readiness = Readiness::default();
        let task = tokio::spawn(run_controller(
            client,
            ecs,
            config,
            metrics.clone(),
            readiness.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(RunningController {
            stop: Some(stop),
            task,
            metrics,
            readiness,
        })
    }

    pub async fn shutdown(self) {
        self.sim.shutdown().await;
        match self.kube {
            Some(kube) => kube.shutdown().await,
            None => {
                let _ = delete_namespace_and_contents(&self.client, &self.namespace).await;
            }
        }
    }
}

/// Applies every CRD server-side (as `manager`, taking over any field) and waits up to 30 s for
/// each to be Established, so the objects created next are served (a real API server takes a
/// moment to serve a new CRD).
pub(crate) async fn apply_crds(client: &Client, manager: &str) -> Result<(), kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = |c: Option<&CustomResourceDefinition>| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    };
    for (_, crd) in crate::api::CRDS {
        let crd = crd();
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &crd.name_any(), established),
        )
        .await;
    }
    Ok(())
}

/// Deletes what a sandbox can have made in `namespace` on a real cluster (EcsInstances,
/// EcsPowerSchedules, EcsHolidayCalendars, Secrets, ConfigMaps, Leases, Events), then the namespace. The contents
/// go first: a server without a namespace controller (envtest: a bare kube-apiserver and
/// etcd) never empties a deleted namespace, which would stay `Terminating` for ever.
pub async fn delete_namespace_and_contents(
    client: &Client,
    namespace: &str,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
    let params = kube::api::DeleteParams::default();
    let all = kube::api::ListParams::default();
    Api::<EcsInstance>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<crate::api::EcsPowerSchedule>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<crate::api::EcsHolidayCalendar>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<Lease>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<Event>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<Namespace>::all(client.clone())
        .delete(namespace, &params)
        .await?;
    Ok(())
}

/// A controller running in this process.
pub struct RunningController {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
    pub metrics: Metrics,
    /// What its `/readyz` would answer.
    pub readiness: Readiness,
}

impl RunningController {
    /// Graceful shutdown: in-flight reconciles finish.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(30), &mut self.task).await {
            Ok(Ok(result)) => result,
            _ => Ok(()),
        }
    }

    /// A crash: everything in flight is dropped where it stands.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
