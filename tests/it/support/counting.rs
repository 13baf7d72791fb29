//! A tower layer on a kube client that counts what the client sent and what the server
//! answered: requests, answers by status code, and the `Retry-After` of each 429. What a test
//! needs to say how many requests a controller made and whether it was pushed back.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};

/// What one client sent and got, shared between the layer and the test.
#[derive(Clone, Debug, Default)]
pub struct Counts(Arc<Mutex<Tally>>);

#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Requests sent (answered or not).
    pub requests: u64,
    /// Answers by HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Each 429's `Retry-After` header (`None`: the answer had none).
    pub retry_after: Vec<Option<String>>,
}

impl Counts {
    pub fn snapshot(&self) -> Tally {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// A kube client for `config` whose requests are counted in the returned [`Counts`].
pub fn client(config: kube::Config) -> (kube::Client, Counts) {
    let counts = Counts::default();
    let client = kube::client::ClientBuilder::try_from(config)
        .expect("a kube client")
        .with_layer(&CountLayer(counts.clone()))
        .build();
    (client, counts)
}

#[derive(Clone, Debug)]
pub struct CountLayer(pub Counts);

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountService {
            inner,
            counts: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CountService<S> {
    inner: S,
    counts: Counts,
}

impl<S, B, RB> tower::Service<Request<B>> for CountService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.counts.update(|t| t.requests += 1);
        let counts = self.counts.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let code = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            counts.update(|t| {
                *t.by_status.entry(code).or_default() += 1;
                if code == 429 {
                    t.retry_after.push(retry_after);
                }
            });
            Ok(response)
        })
    }
}
