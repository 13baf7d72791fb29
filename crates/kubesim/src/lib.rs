//! `kubesim`: an in-process, in-memory Kubernetes API server **for tests and the `demo`**.
//!
//! This is a test and demo tool, not a product surface: it exists so the controller can be run
//! end to end, over real HTTP, on machines with no cluster. kube-rs's client and `kube::runtime`
//! (watcher, reflector, Controller, finalizer, events Recorder, Lease-based leader election) use
//! it unmodified through a generated kubeconfig.
//!
//! What it implements faithfully: discovery (including aggregated discovery), CRDs with
//! `openAPIV3Schema` enforcement (defaulting, pruning, 422 `Invalid` with field causes, a
//! `x-kubernetes-validations` CEL rules by kube-rs's `kube-cel`), the status subresource, generation,
//! resourceVersion with optimistic concurrency, list paging and selectors, watches with
//! bookmarks and `410 Gone`, merge/JSON/strategic(as merge)/server-side-apply patches,
//! finalizers and deletionTimestamp, and the built-in Secrets, ConfigMaps, Events (core/v1 and
//! events.k8s.io/v1, one store), Leases and Namespaces. For the real `kubectl`: OpenAPI v2/v3
//! documents (validation, `explain`), Table responses with the CRD's printer columns, and
//! protobuf request bodies for the kinds kubectl creates. Fault injection ([`Faults`]) drops watches,
//! answers 500/429, delays responses, and counts requests. See `docs/kubesim.md` for the
//! honest list of what it does not do (no auth, no admission webhooks, no garbage collector...).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kubesim::{KubeSim, KubeSimOptions};
//! let api = KubeSim::start(KubeSimOptions::default()).await?;
//! let client = api.client()?;
//! api.write_kubeconfig(std::path::Path::new("/tmp/kubesim.kubeconfig"))?;
//! api.faults().drop_watches();
//! api.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(unreachable_pub, missing_docs)]

mod cel;
mod discovery;
mod error;
mod events;
mod faults;
mod http;
mod json;
mod managed;
mod openapi;
mod protobuf;
mod registry;
mod schema;
mod selector;
mod store;
mod table;

pub use faults::{Faults, RequestCounts, RequestFilter, Verb};

use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why kubesim could not start or hand out a client.
#[derive(Debug, thiserror::Error)]
pub enum KubeSimError {
    #[error("kubesim: cannot bind 127.0.0.1:{port}: {source}")]
    /// The port could not be bound.
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    #[error("kubesim: cannot write kubeconfig to {path}: {source}")]
    /// The kubeconfig file could not be written.
    WriteKubeconfig {
        /// Where it was to be written.
        path: String,
        /// Why it could not be.
        source: std::io::Error,
    },
    #[error("kubesim: cannot build a kube client for {url}: {reason}")]
    /// kube-rs refused the generated configuration.
    Client {
        /// The server's URL.
        url: String,
        /// kube-rs's reason.
        reason: String,
    },
}

/// Tunables; the defaults suit tests.
#[derive(Debug, Clone)]
pub struct KubeSimOptions {
    /// Port on 127.0.0.1; 0 picks an ephemeral one.
    pub port: u16,
    /// How often watches that asked for bookmarks get one (real servers: about a minute).
    pub bookmark_interval: Duration,
    /// How many change events are kept for watch resumption; older resourceVersions get 410.
    pub history_limit: usize,
    /// Create a namespace on first use instead of answering 404 (real servers require it).
    pub auto_create_namespaces: bool,
}

impl Default for KubeSimOptions {
    fn default() -> Self {
        KubeSimOptions {
            port: 0,
            bookmark_interval: Duration::from_secs(1),
            history_limit: 20_000,
            auto_create_namespaces: false,
        }
    }
}

/// A running in-process API server. Dropping it without [`KubeSim::shutdown`] aborts the server.
pub struct KubeSim {
    shared: Arc<http::Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl KubeSim {
    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(options: KubeSimOptions) -> Result<KubeSim, KubeSimError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|source| KubeSimError::Bind {
                port: options.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| KubeSimError::Bind {
            port: options.port,
            source,
        })?;
        let state = Arc::new(Mutex::new(store::State::new(
            options.history_limit,
            options.auto_create_namespaces,
        )));
        let for_compact = state.clone();
        let faults = Faults::new(Arc::new(move || {
            for_compact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .compact();
        }));
        let shared = Arc::new(http::Shared {
            state,
            faults,
            addr: addr.to_string(),
            bookmark_interval: options.bookmark_interval,
        });
        let for_handler = shared.clone();
        let app = Router::new()
            .fallback(
                move |method: axum::http::Method,
                      uri: axum::http::Uri,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| {
                    let shared = for_handler.clone();
                    async move { http::handle(shared, method, uri, headers, body).await }
                },
            )
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024));
        let (stop, stopped) = oneshot::channel::<()>();
        let faults = shared.faults.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
                // Open watches would hold graceful shutdown forever; end them.
                faults.drop_watches();
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "kubesim server ended with an error");
            }
        });
        tracing::debug!(%addr, "kubesim listening");
        Ok(KubeSim {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address kubesim listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube config pointing at this server (namespace `default`).
    pub fn config(&self) -> Result<kube::Config, KubeSimError> {
        let url = self.url();
        let uri: axum::http::Uri = url.parse().map_err(|e| KubeSimError::Client {
            url: url.clone(),
            reason: format!("{e}"),
        })?;
        Ok(kube::Config::new(uri))
    }

    /// A kube client for this server.
    pub fn client(&self) -> Result<kube::Client, KubeSimError> {
        let config = self.config()?;
        kube::Client::try_from(config).map_err(|e| KubeSimError::Client {
            url: self.url(),
            reason: e.to_string(),
        })
    }

    /// A kubeconfig document (context `kubesim`, namespace `default`, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user: {{}}\npreferences: {{}}\n",
            url = self.url()
        )
    }

    /// Writes [`KubeSim::kubeconfig_yaml`] to `path` (for `KUBECONFIG=... kubectl` or a child process).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), KubeSimError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| {
            KubeSimError::WriteKubeconfig {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// Fault injection and request counters.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Request counters so far (shortcut for `faults().requests()`).
    pub fn requests(&self) -> RequestCounts {
        self.shared.faults.requests()
    }

    /// Objects stored, across all resources (namespaces included).
    pub fn object_count(&self) -> usize {
        self.shared.lock().object_count()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Stops serving: ends watches, then waits (briefly) for connections to close.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            // Keep-alive connections from clients still alive; stop waiting for them.
            task.abort();
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
