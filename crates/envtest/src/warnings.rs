//! The `Warning` response headers a real API server sends (RFC 7234 style, `299 - "text"`):
//! unknown schema formats in a CRD, deprecated APIs, unknown fields it dropped. kube-rs ignores
//! them; this tower layer on the client keeps them so a suite can fail on any.

use crate::Error;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// One `Warning` header and the request that drew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `GET`, `PATCH`...
    pub method: String,
    /// The request's path and query.
    pub path: String,
    /// The warning text (the quoted part of `299 - "..."`, unescaped).
    pub text: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: Warning: {}", self.method, self.path, self.text)
    }
}

/// The warnings collected so far; clones share one list.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<Warning>>>);

impl Warnings {
    /// Takes (and clears) what was collected.
    pub fn take(&self) -> Vec<Warning> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A copy of what was collected.
    pub fn snapshot(&self) -> Vec<Warning> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn push(&self, warning: Warning) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(warning);
    }
}

/// The text of one `Warning` header value: `299 - "text"` gives `text`; anything else is kept whole.
pub(crate) fn warning_text(value: &str) -> String {
    let quoted = value
        .split_once(" - \"")
        .and_then(|(_, rest)| rest.strip_suffix('"'));
    match quoted {
        Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    }
}

/// `kubectl`'s stderr lines that are server warnings (`Warning: ...`).
pub fn kubectl_warnings(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Warning: "))
        .map(str::to_string)
        .collect()
}

/// A tower layer recording every `Warning` header of every response.
#[derive(Debug, Clone, Default)]
pub struct WarningLayer(pub Warnings);

impl<S> tower::Layer<S> for WarningLayer {
    type Service = WarningService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WarningService {
            inner,
            warnings: self.0.clone(),
        }
    }
}

/// The service [`WarningLayer`] wraps around the client's stack.
#[derive(Debug, Clone)]
pub struct WarningService<S> {
    inner: S,
    warnings: Warnings,
}

impl<S, B, RB> tower::Service<Request<B>> for WarningService<S>
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
        let method = request.method().to_string();
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let warnings = self.warnings.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            for value in response.headers().get_all(http::header::WARNING) {
                warnings.push(Warning {
                    method: method.clone(),
                    path: path.clone(),
                    text: warning_text(&String::from_utf8_lossy(value.as_bytes())),
                });
            }
            Ok(response)
        })
    }
}

pub(crate) fn client(config: kube::Config) -> Result<(kube::Client, Warnings), Error> {
    let warnings = Warnings::default();
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    let client = builder.with_layer(&WarningLayer(warnings.clone())).build();
    Ok((client, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_text_of_a_299_warning_is_kept_unescaped() {
        assert_eq!(
            warning_text(r#"299 - "unrecognized format \"uint32\"""#),
            r#"unrecognized format "uint32""#
        );
        assert_eq!(warning_text("something else"), "something else");
    }

    #[test]
    fn kubectl_stderr_warnings_are_found() {
        let stderr = "Warning: unrecognized format \"uint32\"\nerror: boom\n";
        assert_eq!(
            kubectl_warnings(stderr),
            vec!["unrecognized format \"uint32\""]
        );
    }
}
