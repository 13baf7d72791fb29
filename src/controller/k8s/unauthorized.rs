//! Noticing that the Kubernetes API server no longer accepts the controller's credentials.
//!
//! A ServiceAccount token that expired, or was revoked (its ServiceAccount deleted and made
//! again, a key rotation), is answered `401 Unauthorized` on every request: the watches stop,
//! nothing is reconciled, no status is written. kube-runtime retries on its backoff and logs
//! each failure as one more watch error among others, so without this the controller would stay
//! Ready and look healthy while doing nothing. This layer on the client sees every answer: the
//! first 401 makes readiness false and logs one line that says so and why; the next answer
//! that is not a 401 (a kubelet-rotated token file, say) makes it ready again, also logged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::telemetry::server::Readiness;

/// Marks `readiness` not ready while the API server answers `401`.
#[derive(Clone)]
pub(crate) struct UnauthorizedLayer(pub(crate) Readiness);

impl<S> Layer<S> for UnauthorizedLayer {
    type Service = UnauthorizedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnauthorizedService {
            inner,
            readiness: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct UnauthorizedService<S> {
    inner: S,
    readiness: Readiness,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for UnauthorizedService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The path only (no query, no headers): never the token.
        let what = format!("{} {}", request.method(), request.uri().path());
        let readiness = self.readiness.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            observe(&readiness, response.status(), &what);
            Ok(response)
        })
    }
}

/// Updates readiness from one answer's status, logging a change.
fn observe(readiness: &Readiness, status: StatusCode, request: &str) {
    if status == StatusCode::UNAUTHORIZED {
        if readiness.set_credentials_refused(true) {
            tracing::error!(
                status = 401,
                request,
                "the Kubernetes API server refused the controller's credentials (401 Unauthorized): \
                 its token has expired or was revoked; nothing can be watched or written, readiness \
                 is false until the server accepts them again"
            );
        }
    } else if !status.is_server_error() && readiness.set_credentials_refused(false) {
        // Any other answer from the server itself means it authenticated the request (a 5xx may
        // come from a proxy in front of it, so it proves nothing).
        tracing::info!(
            status = status.as_u16(),
            request,
            "the Kubernetes API server accepts the controller's credentials again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Readiness {
        let readiness = Readiness::default();
        readiness.set(true);
        readiness
    }

    #[test]
    fn a_401_makes_the_controller_not_ready_until_an_answer_is_authenticated_again() {
        let readiness = ready();
        observe(&readiness, StatusCode::OK, "GET /api");
        assert!(readiness.get());
        observe(&readiness, StatusCode::UNAUTHORIZED, "GET /api");
        assert!(!readiness.get());
        // A proxy's 5xx says nothing about the credentials.
        observe(&readiness, StatusCode::SERVICE_UNAVAILABLE, "GET /api");
        assert!(!readiness.get());
        // A 403 is an authenticated user refused a permission: the credentials work.
        observe(&readiness, StatusCode::FORBIDDEN, "GET /api");
        assert!(readiness.get());
    }

    #[test]
    fn a_refusal_is_a_change_once() {
        let readiness = ready();
        assert!(readiness.set_credentials_refused(true));
        assert!(!readiness.set_credentials_refused(true));
        assert!(readiness.set_credentials_refused(false));
        assert!(!readiness.set_credentials_refused(false));
    }

    #[test]
    fn refused_credentials_do_not_make_a_stopped_controller_ready() {
        let readiness = Readiness::default();
        observe(&readiness, StatusCode::OK, "GET /api");
        assert!(!readiness.get());
    }
}
