//! etcd's HTTP gRPC gateway (`/v3/kv/...`), spoken over a plain HTTP/1.0 connection: the only
//! calls are two tiny JSON POSTs on loopback, not worth an HTTP client.

use crate::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn post(port: u16, what: &'static str, path: &str, body: &str) -> Result<serde_json::Value, Error> {
    let fail = |reason: String| Error::Etcd { what, reason };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| fail(e.to_string()))?;
    // HTTP/1.0: the answer is never chunked and the connection closes after it.
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| fail(e.to_string()))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail(format!("not an HTTP answer: {answer:?}")))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(fail(format!(
            "{}: {body}",
            head.lines().next().unwrap_or("")
        )));
    }
    serde_json::from_str(body).map_err(|e| fail(format!("{e}: {body}")))
}

/// Compacts to the current revision, physically, and returns it.
pub(crate) fn compact(port: u16) -> Result<i64, Error> {
    // Any range answers with the store's current revision in its header ("AA==" is the key "\0").
    let range = post(port, "range", "/v3/kv/range", r#"{"key":"AA=="}"#)?;
    let revision: i64 = range["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| Error::Etcd {
            what: "range",
            reason: format!("no header.revision in {range}"),
        })?;
    post(
        port,
        "compaction",
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{revision}","physical":true}}"#),
    )?;
    Ok(revision)
}
