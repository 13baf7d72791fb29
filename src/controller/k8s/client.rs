//! The Kubernetes client every command builds: kube's default stack with bounded answers.
//!
//! The API server named by a kubeconfig may be a broken proxy or a hostile endpoint. kube
//! reads whatever it is sent: a 1.5 GB answer to a list took the controller to 3 GB of memory
//! (the Deployment's limit is 256 Mi: an OOM crash loop). The same guard as the ECS client's
//! (`ecs_client::transport::MAX_BODY_BYTES`) applies here:
//! - a **response** (a get, a list page, a patch's answer) is read up to
//!   [`MAX_RESPONSE_BYTES`]: a declared `Content-Length` above it is refused before a byte is
//!   read, a streamed body as soon as it passes it. Lists are paginated (kube-runtime asks for
//!   500 objects a page), so a legitimate page stays far below the bound;
//! - a **watch** is one long answer that may rightly run for hours, so it is bounded per
//!   event instead: no line (one event, one object) longer than [`MAX_WATCH_EVENT_BYTES`]
//!   (the API server refuses objects over 3 MiB).
//!
//! Either way the call fails with a [`TooLarge`] error that says so; nothing more is read.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use kube::Client;
use kube::client::ClientBuilder;
use tower::{Layer, Service};

use super::unauthorized::UnauthorizedLayer;
use crate::telemetry::server::Readiness;

/// The largest answer read whole: a get, a list page, a write's answer. A page of 500 objects
/// of 60 KB each still fits.
pub(crate) const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The longest line of a watch: one event, one object (the API server stores nothing larger
/// than 3 MiB, JSON included).
pub(crate) const MAX_WATCH_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Why an answer from the Kubernetes API was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TooLarge {
    #[error(
        "the Kubernetes API answer is larger than {} MiB; it was not read (is the kubeconfig's \
         server a Kubernetes API server?)",
        MAX_RESPONSE_BYTES >> 20
    )]
    Response,
    #[error(
        "a Kubernetes watch event is larger than {} MiB; the watch was dropped (is the \
         kubeconfig's server a Kubernetes API server?)",
        MAX_WATCH_EVENT_BYTES >> 20
    )]
    WatchEvent,
}

/// A client for the cluster in KUBECONFIG (or the one this runs in), with bounded answers.
pub(crate) async fn infer() -> Result<Client, kube::Error> {
    from_config(inferred_config().await?)
}

/// The configuration in KUBECONFIG, or the in-cluster one.
async fn inferred_config() -> Result<kube::Config, kube::Error> {
    kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)
}

/// kube's default client for `config` (TLS, auth, timeouts), its answers bounded.
pub(crate) fn from_config(config: kube::Config) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&BoundedLayer)
        .build())
}

/// [`infer`] for the controller: `readiness` is false while the API server answers `401`
/// (see [`super::unauthorized`]).
pub(crate) async fn infer_reporting(readiness: &Readiness) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(inferred_config().await?)?
        .with_layer(&BoundedLayer)
        .with_layer(&UnauthorizedLayer(readiness.clone()))
        .build())
}

/// Wraps every answer's body in a [`Bounded`] body: per event for watches, whole otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BoundedLayer;

impl<S> Layer<S> for BoundedLayer {
    type Service = BoundedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BoundedService { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct BoundedService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BoundedService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<Bounded<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let limit = if is_watch(&request) {
            Limit::PerLine
        } else {
            Limit::Whole
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            answer
                .await
                .map(|response| response.map(|body| Bounded::new(body, limit)))
        })
    }
}

/// A watch asks with `watch=true` (or `watch=1`) in its query, as kube itself tells them apart.
fn is_watch<B>(request: &Request<B>) -> bool {
    request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    /// At most [`MAX_RESPONSE_BYTES`] in all.
    Whole,
    /// At most [`MAX_WATCH_EVENT_BYTES`] between two newlines.
    PerLine,
}

/// A body that fails once it passes its [`Limit`], and is not read further.
pub(crate) struct Bounded<B> {
    inner: B,
    limit: Limit,
    /// Whole: bytes read so far. PerLine: bytes since the last newline.
    counted: usize,
    failed: bool,
}

impl<B> Bounded<B> {
    fn new(inner: B, limit: Limit) -> Self {
        Self {
            inner,
            limit,
            counted: 0,
            failed: false,
        }
    }

    /// Counts a chunk; the error if it takes the body past its limit.
    fn count(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        match self.limit {
            Limit::Whole => {
                self.counted = self.counted.saturating_add(chunk.len());
                if self.counted > MAX_RESPONSE_BYTES {
                    return Err(TooLarge::Response);
                }
            }
            Limit::PerLine => {
                let mut lines = chunk.split(|&byte| byte == b'\n');
                // The chunk's first piece continues the current line; every later piece starts
                // a new one (the last may go on in the next chunk).
                let first = lines.next().unwrap_or_default();
                self.counted = self.counted.saturating_add(first.len());
                if self.counted > MAX_WATCH_EVENT_BYTES {
                    return Err(TooLarge::WatchEvent);
                }
                for line in lines {
                    self.counted = line.len();
                    if self.counted > MAX_WATCH_EVENT_BYTES {
                        return Err(TooLarge::WatchEvent);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<B> Body for Bounded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        // A declared length past the bound is refused before a byte is read.
        if self.limit == Limit::Whole
            && self.counted == 0
            && self.inner.size_hint().lower() > MAX_RESPONSE_BYTES as u64
        {
            self.failed = true;
            return Poll::Ready(Some(Err(TooLarge::Response.into())));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref()
            && let Err(too_large) = self.count(data)
        {
            self.failed = true;
            return Poll::Ready(Some(Err(too_large.into())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests;
