//! The HTTP endpoints operators scrape and probe: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;

/// Readiness: the controller serves (flipped by it once it runs) and the Kubernetes API server
/// accepts its credentials. A controller whose token expired or was revoked keeps running (a
/// rotated token brings it back) but cannot watch or write anything: it must not look ready.
#[derive(Clone, Default)]
pub struct Readiness {
    serving: Arc<AtomicBool>,
    credentials_refused: Arc<AtomicBool>,
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.serving.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.serving.load(Ordering::Relaxed) && !self.credentials_refused.load(Ordering::Relaxed)
    }

    /// Records whether the API server refuses the credentials (`401`); true when that changed.
    pub(crate) fn set_credentials_refused(&self, refused: bool) -> bool {
        self.credentials_refused.swap(refused, Ordering::Relaxed) != refused
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    readiness: Readiness,
}

pub(crate) fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(Shared { metrics, readiness })
}

async fn metrics_handler(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn ready_handler(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.readiness.get() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(metrics, readiness);
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %err, "the metrics server stopped");
        }
    });
    Ok((bound, task))
}
