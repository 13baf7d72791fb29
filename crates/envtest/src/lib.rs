//! `envtest`: a real `etcd` + `kube-apiserver` on loopback, for tests.
//!
//! kubesim is the project's own API server; it can drift from the real one unnoticed, and some
//! behaviours only a real server has (RBAC enforced, API Priority and Fairness, watch expiry after
//! etcd compaction, an API server restart, real CEL and schema pruning). This crate starts the two
//! binaries that controller-runtime's envtest and `setup-envtest` provide, found through the
//! ecosystem's convention, the `KUBEBUILDER_ASSETS` directory, with the flags envtest uses:
//! free loopback ports, a throw-away CA signing the serving and admin client certificates, a
//! ServiceAccount signing key (so the TokenRequest API works), static tokens for an admin and a
//! `nobody` user, `--authorization-mode=RBAC`, `--disable-admission-plugins=ServiceAccount`, and
//! etcd with `--unsafe-no-fsync`. About 4 s to `/readyz`.
//!
//! Both processes are **always** stopped: on [`Drop`] (process-group SIGTERM, then SIGKILL), and, if
//! the test binary itself dies without unwinding (a `static` shared server is never dropped, a
//! test harness can be killed), by a tiny watchdog per process that notices its stdin pipe from
//! the test process closing and kills the server's process group.
//!
//! ```no_run
//! # async fn demo() -> Result<(), envtest::Error> {
//! // Ok(None) when KUBEBUILDER_ASSETS is unset (one line on stderr says what is skipped);
//! // an error instead when CI=true, so CI never skips silently.
//! let Some(env) = envtest::Envtest::from_env(envtest::Options::default()).await? else {
//!     return Ok(());
//! };
//! let client = env.client().await?;
//! let (client, warnings) = env.client_with_warnings().await?;
//! // ... use the client; kubectl gets env.kubeconfig_path() ...
//! assert!(warnings.take().is_empty());
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]

mod certs;
mod etcd;
mod process;
mod warnings;

pub use warnings::{Warning, WarningLayer, WarningService, Warnings, kubectl_warnings};

/// A client for any kube config (a real cluster's, say) that keeps the `Warning` headers its
/// server sends, as [`Envtest::client_with_warnings`] does for envtest's.
pub fn client_with_warnings(config: kube::Config) -> Result<(kube::Client, Warnings), Error> {
    warnings::client(config)
}

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use process::Server;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming the directory that holds `kube-apiserver` and `etcd`.
pub const ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";

/// Why a real API server could not be started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CI must run the real-server suites; a missing variable there is a broken CI, not a skip.
    #[error(
        "{ASSETS_ENV} is not set and CI=true: the real-server tests must run in CI (.ci/run sets it to the absolute path of ../shared/envtest/bin)"
    )]
    AssetsRequiredInCi,
    /// The directory does not hold an executable `kube-apiserver` or `etcd`.
    #[error("{ASSETS_ENV}: no executable {binary} in {dir}")]
    MissingBinary {
        /// The assets directory.
        dir: PathBuf,
        /// `kube-apiserver` or `etcd`.
        binary: &'static str,
    },
    /// A file or process operation failed.
    #[error("envtest: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `openssl` command failed while making the certificates.
    #[error("envtest: openssl {step} failed: {stderr}")]
    Openssl {
        /// Which certificate or key.
        step: &'static str,
        /// openssl's own message.
        stderr: String,
    },
    /// A server process ended by itself (bad flags, port taken...); the end of its log says why.
    #[error(
        "envtest: {process} exited ({status}) before it was stopped; last lines of {log}:\n{tail}"
    )]
    Exited {
        /// `etcd` or `kube-apiserver`.
        process: &'static str,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The last lines of that log.
        tail: String,
    },
    /// `/readyz` did not answer `ok` in time.
    #[error("envtest: kube-apiserver at {url} not ready after {waited:?}; last answer: {last}")]
    NotReady {
        /// The server's URL.
        url: String,
        /// How long we waited.
        waited: Duration,
        /// The last answer or error seen.
        last: String,
    },
    /// kube-rs refused the generated kubeconfig.
    #[error("envtest: kube client configuration: {0}")]
    Config(String),
    /// A request to the real server failed.
    #[error("envtest: {what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// kube-rs's error.
        source: kube::Error,
    },
    /// etcd's HTTP gateway did not answer as expected.
    #[error("envtest: etcd {what}: {reason}")]
    Etcd {
        /// The call (`range`, `compaction`).
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The per-binary shared server failed to start (the first caller saw why).
    #[error("envtest: the shared server could not start: {0}")]
    Shared(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory with `kube-apiserver` and `etcd`; `None` takes `KUBEBUILDER_ASSETS`.
    pub assets: Option<PathBuf>,
    /// Extra `kube-apiserver` flags, e.g. `--max-requests-inflight=5` for API Priority and
    /// Fairness tests. Later flags win, so these can override the defaults.
    pub extra_apiserver_args: Vec<String>,
    /// How long to wait for `/readyz` (a loaded CI machine can take a while).
    pub ready_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            assets: None,
            extra_apiserver_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// The static credentials the server was started with (all but the admin certificate, which
/// lives in the kubeconfig).
#[derive(Clone)]
struct Tokens {
    admin: String,
    nobody: String,
}

/// A running etcd + kube-apiserver. Dropping it stops both and removes its directory (kept, with
/// the logs, when the dropping thread is panicking or `ENVTEST_KEEP=1`).
pub struct Envtest {
    dir: PathBuf,
    assets: PathBuf,
    extra_apiserver_args: Vec<String>,
    ready_timeout: Duration,
    api_port: u16,
    etcd_port: u16,
    tokens: Tokens,
    kubeconfig: PathBuf,
    etcd: Option<Server>,
    apiserver: Option<Server>,
}

impl std::fmt::Debug for Envtest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envtest")
            .field("dir", &self.dir)
            .field("url", &self.url())
            .field("etcd_url", &self.etcd_url())
            .finish_non_exhaustive()
    }
}

/// Three distinct free loopback ports, chosen while all three sockets are held (as envtest's
/// `addr.Suggest` does), then released for the servers to bind.
fn free_ports() -> Result<[u16; 3], Error> {
    let listeners = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("pick free loopback ports"))?;
    let mut ports = [0u16; 3];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l
            .local_addr()
            .map_err(io("pick free loopback ports"))?
            .port();
    }
    Ok(ports)
}

/// A fresh, unique directory under the system temp dir.
fn fresh_dir() -> Result<PathBuf, Error> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "envtest-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("etcd-data"))
        .map_err(io(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// The assets directory from `KUBEBUILDER_ASSETS`: `Ok(None)` when unset outside CI.
fn assets_from_env() -> Result<Option<PathBuf>, Error> {
    match std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => Ok(Some(PathBuf::from(dir))),
        None if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            Err(Error::AssetsRequiredInCi)
        }
        None => Ok(None),
    }
}

fn check_assets(dir: &Path) -> Result<PathBuf, Error> {
    // cargo runs each test binary in its own package's directory: a relative path would mean
    // different things to different crates, so it is resolved here, once, from where we are.
    let dir = std::fs::canonicalize(dir).map_err(io(format!(
        "{ASSETS_ENV}={} (give an absolute path)",
        dir.display()
    )))?;
    for binary in ["kube-apiserver", "etcd"] {
        let ok = std::fs::metadata(dir.join(binary)).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        });
        if !ok {
            return Err(Error::MissingBinary {
                dir: dir.clone(),
                binary,
            });
        }
    }
    Ok(dir)
}

fn random_hex() -> String {
    // The tokens only need to be unguessable by other local users for the few seconds a test
    // runs; std's RandomState is seeded from the OS.
    use std::hash::{BuildHasher, Hasher};
    (0..2)
        .map(|_| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            format!("{:016x}", h.finish())
        })
        .collect()
}

impl Envtest {
    /// Starts etcd and kube-apiserver and waits until `/readyz` says `ok`.
    pub async fn start(options: Options) -> Result<Envtest, Error> {
        let assets = match options.assets {
            Some(dir) => dir,
            None => assets_from_env()?.ok_or(Error::MissingBinary {
                dir: PathBuf::from(format!("${ASSETS_ENV} (unset)")),
                binary: "kube-apiserver",
            })?,
        };
        let assets = check_assets(&assets)?;
        let dir = fresh_dir()?;
        let [etcd_port, etcd_peer_port, api_port] = free_ports()?;
        certs::generate(&dir)?;
        let tokens = Tokens {
            admin: random_hex(),
            nobody: random_hex(),
        };
        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{},admin-token,uid-admin-token,\"system:masters\"\n{},nobody,uid-nobody\n",
                tokens.admin, tokens.nobody
            ),
        )
        .map_err(io("write tokens.csv"))?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&dir, api_port, &tokens).map_err(io("read certificates"))?,
        )
        .map_err(io("write kubeconfig"))?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd = Server::spawn(
            "etcd",
            &assets.join("etcd"),
            &[
                "--name=envtest".into(),
                format!("--data-dir={}", dir.join("etcd-data").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=envtest={peer_url}"),
                // What envtest does for etcd >= 3.5: a test database need not survive a crash.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("etcd.log"),
            // etcd is stopped last: its watchdog also removes the directory.
            Some(&dir),
        )?;
        let mut env = Envtest {
            dir,
            assets,
            extra_apiserver_args: options.extra_apiserver_args,
            ready_timeout: options.ready_timeout,
            api_port,
            etcd_port,
            tokens,
            kubeconfig,
            etcd: Some(etcd),
            apiserver: None,
        };
        // The API server retries etcd until it answers; no need to wait for etcd first.
        env.start_apiserver().await?;
        Ok(env)
    }

    /// [`Envtest::start`] with the assets from `KUBEBUILDER_ASSETS`; `Ok(None)`, with one line on
    /// stderr saying what is skipped and how to run it, when the variable is unset (a newcomer's
    /// `cargo test`); [`Error::AssetsRequiredInCi`] when it is unset and `CI=true`.
    pub async fn from_env(options: Options) -> Result<Option<Envtest>, Error> {
        let Some(assets) = assets_from_env()? else {
            skip_notice();
            return Ok(None);
        };
        Envtest::start(Options {
            assets: Some(assets),
            ..options
        })
        .await
        .map(Some)
    }

    /// One server for the whole test binary (tests share it, a namespace each), started on
    /// first use from `KUBEBUILDER_ASSETS` in a runtime of its own, so every `#[tokio::test]`
    /// can use it: build clients with [`Envtest::client`] inside the test (a client belongs to
    /// the runtime that first uses it). A static is never dropped: the watchdogs stop the two
    /// processes when the test binary exits. `Ok(None)` and [`Error::AssetsRequiredInCi`] as
    /// for [`Envtest::from_env`].
    pub fn shared() -> Result<Option<&'static Envtest>, Error> {
        static SHARED: OnceLock<Result<Option<Envtest>, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime
                    .block_on(Envtest::from_env(Options::default()))
                    .map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("the starting thread panicked".into()))
        });
        match result {
            Ok(env) => Ok(env.as_ref()),
            Err(e) if e.contains("CI=true") => Err(Error::AssetsRequiredInCi),
            Err(e) => Err(Error::Shared(e.clone())),
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// `http://127.0.0.1:PORT` of etcd's client endpoint (with its HTTP gRPC gateway).
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// The kubeconfig for `kubectl` and child processes. Contexts: `envtest` (the default, an
    /// admin client certificate, `system:masters`), `envtest-token` (an admin bearer token) and
    /// `envtest-nobody` (a user with no rights).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The static admin bearer token (`system:masters`), e.g. for `curl -H "Authorization: Bearer ..."`.
    pub fn admin_token(&self) -> &str {
        &self.tokens.admin
    }

    /// The directory with the certificates, the logs (`etcd.log`, `kube-apiserver.log`) and etcd's data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kube config for one of the kubeconfig's contexts (see [`Envtest::kubeconfig_path`]).
    pub async fn config_for_context(&self, context: &str) -> Result<kube::Config, Error> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| Error::Config(format!("{}: {e}", self.kubeconfig.display())))?;
        kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &KubeConfigOptions {
                context: Some(context.to_string()),
                ..KubeConfigOptions::default()
            },
        )
        .await
        .map_err(|e| Error::Config(e.to_string()))
    }

    /// The admin's kube config (client certificate, `system:masters`).
    pub async fn config(&self) -> Result<kube::Config, Error> {
        self.config_for_context("envtest").await
    }

    /// A kube config that authenticates with a bearer token (e.g. from [`Envtest::sa_token`]).
    pub async fn config_for_token(&self, token: &str) -> Result<kube::Config, Error> {
        let yaml = token_kubeconfig_yaml(&self.url(), &self.ca_pem()?, token);
        let kubeconfig = Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Config(e.to_string()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Writes a kubeconfig that authenticates with `token` (for `run --kubeconfig`, kubectl).
    pub fn write_token_kubeconfig(&self, path: &Path, token: &str) -> Result<(), Error> {
        let yaml = token_kubeconfig_yaml(&self.url(), &self.ca_pem()?, token);
        std::fs::write(path, yaml).map_err(io(format!("write {}", path.display())))
    }

    fn ca_pem(&self) -> Result<String, Error> {
        std::fs::read_to_string(self.dir.join("ca.crt")).map_err(io("read ca.crt"))
    }

    /// A new admin client. Build one per test (per tokio runtime).
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
    }

    /// A new admin client and the `Warning` headers the server sends it (deprecated APIs,
    /// unknown schema formats, fields dropped by pruning...), so a suite can fail on any.
    pub async fn client_with_warnings(&self) -> Result<(kube::Client, Warnings), Error> {
        let config = self.config().await?;
        warnings::client(config)
    }

    /// A client for the user `nobody`, authenticated but with no RBAC rights.
    pub async fn nobody_client(&self) -> Result<kube::Client, Error> {
        let config = self.config_for_context("envtest-nobody").await?;
        kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
    }

    /// A ServiceAccount token from the TokenRequest API (what `kubectl create token SA -n NS`
    /// does), valid for an hour; the ServiceAccount must exist.
    pub async fn sa_token(&self, namespace: &str, service_account: &str) -> Result<String, Error> {
        self.sa_token_for(namespace, service_account, 3600).await
    }

    /// [`Envtest::sa_token`] valid for `seconds` (the server's minimum is 600).
    pub async fn sa_token_for(
        &self,
        namespace: &str,
        service_account: &str,
        seconds: i64,
    ) -> Result<String, Error> {
        let client = self.client().await?;
        let api: Api<ServiceAccount> = Api::namespaced(client, namespace);
        // Built and read as JSON: the typed fields' optionality changes between k8s-openapi's
        // Kubernetes versions.
        let request: TokenRequest =
            serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": seconds}}))
                .map_err(|e| Error::Config(e.to_string()))?;
        let answer = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .map_err(|source| Error::Kube {
                what: format!("TokenRequest for {namespace}/{service_account}"),
                source,
            })?;
        serde_json::to_value(&answer)
            .ok()
            .and_then(|v| v["status"]["token"].as_str().map(str::to_string))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Config("TokenRequest answered without a token".into()))
    }

    /// Creates a namespace named `PREFIX-N` (N unique in this process) and returns its name: one
    /// per test on a shared server. There is no namespace controller: delete what is inside
    /// before deleting it, or leave it to die with the server.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, Error> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let api: Api<Namespace> = Api::all(self.client().await?);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|source| Error::Kube {
                what: format!("create namespace {name}"),
                source,
            })?;
        Ok(name)
    }

    /// A `kubectl` command with `KUBECONFIG` set to this server's kubeconfig.
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    fn apiserver_args(&self) -> Vec<String> {
        let d = |f: &str| self.dir.join(f).display().to_string();
        let mut args = vec![
            format!("--etcd-servers={}", self.etcd_url()),
            format!("--cert-dir={}", self.dir.display()),
            format!("--tls-cert-file={}", d("apiserver.crt")),
            format!("--tls-private-key-file={}", d("apiserver.key")),
            format!("--secure-port={}", self.api_port),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--service-account-issuer={}/", self.url()),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--authorization-mode=RBAC".into(),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--token-auth-file={}", d("tokens.csv")),
            // No ServiceAccount admission: Pods never run here, and it would want a token controller.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
        ];
        args.extend(self.extra_apiserver_args.iter().cloned());
        args
    }

    /// Starts kube-apiserver (again) on the same port and etcd, and waits for `/readyz`.
    /// No-op when it is running.
    pub async fn start_apiserver(&mut self) -> Result<(), Error> {
        if self.apiserver.is_some() {
            return Ok(());
        }
        let server = Server::spawn(
            "kube-apiserver",
            &self.assets.join("kube-apiserver"),
            &self.apiserver_args(),
            &self.dir.join("kube-apiserver.log"),
            None,
        )?;
        self.apiserver = Some(server);
        self.wait_ready().await
    }

    /// Stops kube-apiserver alone (SIGTERM, then SIGKILL after 10 s), leaving etcd and its data:
    /// [`Envtest::start_apiserver`] brings the same cluster back (an API server restart).
    pub fn stop_apiserver(&mut self) {
        if let Some(server) = self.apiserver.take() {
            server.stop(Duration::from_secs(10));
        }
    }

    /// The process ids of kube-apiserver (`None` while stopped) and etcd, e.g. to read their
    /// memory in `/proc` (a benchmark's figures).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.apiserver.as_ref().map(Server::pid),
            self.etcd.as_ref().map(Server::pid),
        )
    }

    /// Whether kube-apiserver is running (started and not stopped).
    pub fn apiserver_running(&self) -> bool {
        self.apiserver.is_some()
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let config = self.config().await?;
        let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        let mut last;
        loop {
            for server in [&mut self.etcd, &mut self.apiserver].into_iter().flatten() {
                server.check_alive()?;
            }
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::Config(e.to_string()))?;
            match tokio::time::timeout(Duration::from_secs(2), client.request_text(request)).await {
                Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
                Ok(Ok(body)) => last = body,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out after 2 s".into(),
            }
            if started.elapsed() > self.ready_timeout {
                return Err(Error::NotReady {
                    url: self.url(),
                    waited: started.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Compacts etcd's history up to its current revision (physically) and returns that
    /// revision: watches resuming from an older resourceVersion then get `410 Gone` once the API
    /// server's watch cache no longer covers them. Uses etcd's HTTP gRPC gateway.
    pub fn compact_etcd(&self) -> Result<i64, Error> {
        etcd::compact(self.etcd_port)
    }
}

impl Drop for Envtest {
    fn drop(&mut self) {
        // The API server first, so it does not log a storm of etcd errors.
        self.stop_apiserver();
        if let Some(etcd) = self.etcd.take() {
            etcd.stop(Duration::from_secs(5));
        }
        let keep = std::env::var("ENVTEST_KEEP").is_ok_and(|v| v == "1");
        if keep || std::thread::panicking() {
            eprintln!("envtest: logs and data kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One line per test binary. Written to stderr directly, not with `eprintln!`: the test harness
/// captures (and hides, for a passing test) only what the print macros write.
fn skip_notice() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "envtest: {ASSETS_ENV} unset, real-API-server tests skipped; run them with {ASSETS_ENV}=$(realpath ../shared/envtest/bin) (a directory with kube-apiserver and etcd)"
        );
    });
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn kubeconfig_yaml(dir: &Path, api_port: u16, tokens: &Tokens) -> Result<String, std::io::Error> {
    let read = |f: &str| std::fs::read(dir.join(f)).map(|b| b64(&b));
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:{api_port}
    certificate-authority-data: {ca}
users:
- name: envtest-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
- name: admin-token
  user:
    token: {admin}
- name: nobody
  user:
    token: {nobody}
contexts:
- name: envtest
  context: {{cluster: envtest, user: envtest-admin, namespace: default}}
- name: envtest-token
  context: {{cluster: envtest, user: admin-token, namespace: default}}
- name: envtest-nobody
  context: {{cluster: envtest, user: nobody, namespace: default}}
current-context: envtest
",
        ca = read("ca.crt")?,
        cert = read("admin.crt")?,
        key = read("admin.key")?,
        admin = tokens.admin,
        nobody = tokens.nobody,
    ))
}

fn token_kubeconfig_yaml(url: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: token
  user:
    token: {token}
contexts:
- name: envtest
  context: {{cluster: envtest, user: token, namespace: default}}
current-context: envtest
",
        ca = b64(ca_pem.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_three_distinct_ports() {
        let [a, b, c] = free_ports().unwrap();
        assert!(a != b && b != c && a != c && a != 0);
    }

    #[test]
    fn tokens_differ() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
