//! The client against a local server that answers the way a hostile or broken endpoint does: a
//! gigabyte list (streamed or declared), a gigantic watch event; and a long, legitimate watch
//! that must not be cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const MIB: u64 = 1024 * 1024;
/// What the audit's hostile server answered.
const HOSTILE_BYTES: u64 = 1536 * MIB;

/// What the server answers to every request.
#[derive(Clone, Copy)]
enum Answer {
    /// A chunked list of `total` bytes: an opening, then padding (never valid JSON).
    StreamedList { total: u64 },
    /// A list declaring `Content-Length: total`, then streaming it.
    DeclaredList { total: u64 },
    /// A watch: `events` ConfigMap events of about 1 KB, then one of `last` bytes.
    Watch { events: u64, last: u64 },
}

/// A server on 127.0.0.1 that gives `answer` to every request, and how many body bytes it
/// managed to write before the client stopped reading.
async fn hostile(answer: Answer) -> (kube::Config, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, answer, counter.clone()));
        }
    });
    (kube::Config::new(url.parse().unwrap()), written)
}

async fn serve(mut socket: TcpStream, answer: Answer, written: Arc<AtomicU64>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let pad = vec![b' '; 64 * 1024];
    let result: std::io::Result<()> = async {
        match answer {
            Answer::StreamedList { total } => {
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await?;
                let mut sent = 0;
                while sent < total {
                    socket.write_all(format!("{:x}\r\n", pad.len()).as_bytes()).await?;
                    socket.write_all(&pad).await?;
                    socket.write_all(b"\r\n").await?;
                    sent += pad.len() as u64;
                    written.store(sent, Ordering::SeqCst);
                }
                socket.write_all(b"0\r\n\r\n").await?;
            }
            Answer::DeclaredList { total } => {
                socket
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n").as_bytes())
                    .await?;
                let mut sent = 0;
                while sent < total {
                    socket.write_all(&pad).await?;
                    sent += pad.len() as u64;
                    written.store(sent, Ordering::SeqCst);
                }
            }
            Answer::Watch { events, last } => {
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await?;
                let event = |value: &str| {
                    format!(
                        "{{\"type\":\"ADDED\",\"object\":{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\
                         \"metadata\":{{\"name\":\"big\",\"namespace\":\"default\"}},\"data\":{{\"k\":\"{value}\"}}}}}}\n"
                    )
                };
                let small = event(&"x".repeat(900));
                let mut sent = 0;
                for _ in 0..events {
                    socket.write_all(format!("{:x}\r\n{small}\r\n", small.len()).as_bytes()).await?;
                    sent += small.len() as u64;
                    written.store(sent, Ordering::SeqCst);
                }
                let big = event(&"x".repeat(last as usize));
                socket.write_all(format!("{:x}\r\n{big}\r\n", big.len()).as_bytes()).await?;
                socket.write_all(b"0\r\n\r\n").await?;
            }
        }
        socket.flush().await
    }
    .await;
    drop(result);
}

/// The reported fault: a kubeconfig naming a server that answers a list with 1.5 GB.
#[tokio::test]
async fn a_list_answered_with_a_gigabyte_stream_fails_clearly_after_32_mib() {
    let (config, written) = hostile(Answer::StreamedList {
        total: HOSTILE_BYTES,
    })
    .await;
    let client = from_config(config).unwrap();
    let error = Api::<ConfigMap>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("the Kubernetes API answer is larger than 32 MiB; it was not read"),
        "{message}"
    );
    // The client stopped reading at the bound: what the server got out is the bound plus what
    // the sockets' buffers hold, nowhere near the 1.5 GB it meant to send.
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 48 * MIB, "the server wrote {} MiB", sent / MIB);
}

#[tokio::test]
async fn a_declared_gigabyte_answer_is_refused_before_it_is_read() {
    let (config, written) = hostile(Answer::DeclaredList {
        total: HOSTILE_BYTES,
    })
    .await;
    let client = from_config(config).unwrap();
    let error = Api::<ConfigMap>::all(client)
        .get("anything")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("larger than 32 MiB"), "{error}");
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 16 * MIB, "the server wrote {} MiB", sent / MIB);
}

/// A watch may run for hours: 40 MiB of ordinary events (more than any single answer may be)
/// are all delivered, and only an event past 4 MiB ends it, with the reason.
#[tokio::test]
async fn a_watch_is_bounded_per_event_not_in_total() {
    let events = 40 * 1024;
    let (config, _) = hostile(Answer::Watch {
        events,
        last: 5 * MIB,
    })
    .await;
    let client = from_config(config).unwrap();
    let stream = Api::<ConfigMap>::namespaced(client, "default")
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap();
    let results: Vec<_> = stream.into_stream().collect().await;
    let delivered = results
        .iter()
        .filter(|result| matches!(result, Ok(WatchEvent::Added(_))))
        .count();
    assert_eq!(delivered as u64, events, "every ordinary event arrives");
    let last = results.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(
        last.contains("a Kubernetes watch event is larger than 4 MiB"),
        "{last}"
    );
}

#[test]
fn only_watches_are_bounded_per_event() {
    let request = |uri: &str| Request::get(uri).body(()).unwrap();
    assert!(is_watch(&request(
        "/api/v1/configmaps?watch=true&resourceVersion=1"
    )));
    assert!(is_watch(&request(
        "/api/v1/configmaps?resourceVersion=1&watch=1"
    )));
    assert!(!is_watch(&request("/api/v1/configmaps?limit=500")));
    assert!(!is_watch(&request(
        "/api/v1/namespaces/watch=true/configmaps"
    )));
}
