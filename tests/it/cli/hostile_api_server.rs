//! The commands against a kubeconfig whose server answers like a hostile endpoint: every
//! request gets a 1.5 GB body (the audit's reproduction of issue 24, item 5, which took the
//! controller to 3 GB). Each command ends with a clear error and exit status 1 (no crash, no
//! OOM kill), having read little more than the 32 MiB bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-controller");
const MIB: u64 = 1024 * 1024;
const HOSTILE_BYTES: u64 = 1536 * MIB;

/// Answers every request with a chunked 1.5 GB JSON-looking body; the most body bytes any one
/// connection got out before the client hung up.
async fn hostile_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let most = Arc::new(AtomicU64::new(0));
    let counter = most.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket, counter.clone()));
        }
    });
    (url, most)
}

async fn answer(mut socket: TcpStream, most: Arc<AtomicU64>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let pad = vec![b' '; 64 * 1024];
    let mut sent = 0u64;
    let result: std::io::Result<()> = async {
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await?;
        let opening = br#"{"apiVersion":"v1","kind":"List","items":["#;
        socket
            .write_all(format!("{:x}\r\n", opening.len()).as_bytes())
            .await?;
        socket.write_all(opening).await?;
        socket.write_all(b"\r\n").await?;
        while sent < HOSTILE_BYTES {
            socket
                .write_all(format!("{:x}\r\n", pad.len()).as_bytes())
                .await?;
            socket.write_all(&pad).await?;
            socket.write_all(b"\r\n").await?;
            sent += pad.len() as u64;
            most.fetch_max(sent, Ordering::SeqCst);
        }
        socket.write_all(b"0\r\n\r\n").await
    }
    .await;
    drop(result);
}

fn scratch(url: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "hostile-api-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hostile\n  cluster: {{server: \"{url}\"}}\ncontexts:\n- name: hostile\n  context: {{cluster: hostile, user: nobody, namespace: default}}\ncurrent-context: hostile\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(BIN, dir.join("kubectl-ecsi")).unwrap();
    (dir, kubeconfig)
}

async fn run(program: &Path, args: &[&str], kubeconfig: &Path) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(program)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command ends")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_answer_is_a_clear_error_not_a_crash() {
    let (url, most) = hostile_server().await;
    let (dir, kubeconfig) = scratch(&url);
    let plugin = dir.join("kubectl-ecsi");
    for (program, args) in [
        (plugin.as_path(), &["status", "-A"][..]),
        (Path::new(BIN), &["schedule", "preview", "office-hours"][..]),
    ] {
        let (code, stderr) = run(program, args, &kubeconfig).await;
        assert_eq!(
            code,
            Some(1),
            "{args:?} ends with an error, not a signal: {stderr}"
        );
        assert!(
            stderr.contains("the Kubernetes API answer is larger than 32 MiB; it was not read"),
            "{args:?}: {stderr}"
        );
    }
    let sent = most.load(Ordering::SeqCst);
    assert!(sent < 48 * MIB, "a connection got {} MiB out", sent / MIB);
    let _ = std::fs::remove_dir_all(&dir);
}
