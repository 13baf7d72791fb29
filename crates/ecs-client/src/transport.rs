//! The HTTP plumbing every outbound call of this crate shares: ECS, STS, the instance metadata
//! service and the credentials URI.
//!
//! Any of them may be a misbehaving or hostile endpoint (a proxy, a broken gateway, a hijacked
//! name), so the same guards apply to all of them:
//! - **No redirects, ever.** ECS and the credential sources never redirect. A followed redirect
//!   would carry `x-acs-security-token` (V3) or a `Referer` holding the signed V1 query
//!   (`Signature`, `SecurityToken`) to whatever host the `Location` names.
//! - **Bounded bodies.** A body is read chunk by chunk up to [`MAX_BODY_BYTES`] and refused past
//!   that: a gigabyte answer costs an error, not gigabytes of memory and a minute of parsing.
//! - **One deadline.** The client's total timeout covers the body as well as the headers
//!   (reqwest's `timeout` runs until the last byte), so a slow drip cannot hold a call forever.
//! - **Bounded waits.** A server's `x-acs-retry-after` or `Retry-After` is honoured, but never
//!   beyond [`MAX_RETRY_AFTER`].

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The largest body read from any endpoint. ECS answers for 100 instances are well under
/// 1 MB; credential documents are a few KB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The longest a server-requested wait is honoured: a longer one (an object parked until 2058)
/// is a broken or hostile server, and waiting this long and asking again is always safe.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// ECS's own header, in milliseconds (as the official SDKs' retry code reads it).
const ACS_RETRY_AFTER: &str = "x-acs-retry-after";

/// reqwest (built without a default rustls provider) panics when it builds a client and no
/// process-wide provider is installed. `main` installs ring; libraries and tests may not have,
/// so install it here if nobody did (a no-op otherwise).
pub fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client that never follows a redirect and never sends a `Referer`, with a connect timeout
/// and a total timeout that includes reading the body.
pub(crate) fn http_client(
    connect: Duration,
    total: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    ensure_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .user_agent(concat!("ecs-power-controller/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the answer is larger than {} MiB; it was not read", MAX_BODY_BYTES >> 20)]
    TooLarge,
    #[error("the answer was cut short: {0}")]
    Read(String),
}

/// Reads the body, at most [`MAX_BODY_BYTES`]: a declared `Content-Length` above the limit is
/// refused before a byte is read, and a streamed body as soon as it passes the limit.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|declared| declared > MAX_BODY_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(describe(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A 3xx answer: never followed (see the module docs).
pub(crate) fn is_redirect(status: u16) -> bool {
    (300..400).contains(&status)
}

/// How long the server asked us to wait, capped at [`MAX_RETRY_AFTER`]: `x-acs-retry-after`
/// (milliseconds) on any answer, else a plain HTTP `Retry-After` (seconds or an HTTP date) on
/// a 429 or 503.
pub(crate) fn retry_after(
    headers: &HeaderMap,
    http_status: u16,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let asked = match text(ACS_RETRY_AFTER).and_then(|v| v.parse::<u64>().ok()) {
        Some(ms) => Duration::from_millis(ms),
        None if matches!(http_status, 429 | 503) => {
            http_retry_after(text(RETRY_AFTER.as_str())?, now)?
        }
        None => return None,
    };
    (!asked.is_zero()).then(|| asked.min(MAX_RETRY_AFTER))
}

/// RFC 9110 `Retry-After`: delay-seconds or an HTTP date (a date in the past means now).
fn http_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    static HTTP_DATE: jiff::fmt::rfc2822::DateTimeParser =
        jiff::fmt::rfc2822::DateTimeParser::new();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = HTTP_DATE.parse_timestamp(value).ok()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// A reqwest error as one readable text, without the URL: its query carries the signature and,
/// for V1 with STS credentials, the security token.
pub(crate) fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() && !error.is_connect() {
        return "timed out waiting for the answer".into();
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    reqwest::header::HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_server_wait_is_read_and_capped_at_ten_minutes() {
        let now: jiff::Timestamp = "2026-11-27T00:00:00Z".parse().unwrap();
        let wait =
            |pairs: &[(&'static str, &str)], status| retry_after(&headers(pairs), status, now);
        // ECS's header is milliseconds, on any status.
        assert_eq!(
            wait(&[("x-acs-retry-after", "1500")], 400),
            Some(Duration::from_millis(1500))
        );
        // A wait until 2058 is capped.
        assert_eq!(
            wait(&[("x-acs-retry-after", "1000000000000")], 400),
            Some(MAX_RETRY_AFTER)
        );
        // A plain Retry-After counts on 429 and 503: seconds, or a date.
        assert_eq!(
            wait(&[("retry-after", "7")], 429),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            wait(&[("retry-after", "Fri, 27 Nov 2026 00:00:30 GMT")], 503),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            wait(&[("retry-after", "99999999")], 503),
            Some(MAX_RETRY_AFTER)
        );
        // Elsewhere, in the past, zero or unreadable: no wait asked.
        assert_eq!(wait(&[("retry-after", "7")], 400), None);
        assert_eq!(
            wait(&[("retry-after", "Thu, 26 Nov 2026 00:00:00 GMT")], 503),
            None
        );
        assert_eq!(wait(&[("x-acs-retry-after", "0")], 400), None);
        assert_eq!(wait(&[("retry-after", "soon")], 429), None);
        assert_eq!(wait(&[], 429), None);
    }
}
