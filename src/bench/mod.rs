//! `ecs-power-controller bench`: the fleet benchmark.
//!
//! This process serves the ECS simulator (with a per-action quota) and, by default, the
//! in-process Kubernetes API; the controller runs as a child process of the same binary
//! (`run`, pointed at them through a kubeconfig and `--ecs-endpoint`), so its memory and CPU
//! are its own. A run: N Stopped instances and N EcsInstances desiring Stopped; the controller
//! settles them; then every spec flips to Running and the clock runs until every object is
//! Ready for its new generation. Then steady-state calls over several resyncs (a rate), and the
//! latency from a spec change to the ECS calls when the quota is not the limit. `--json` writes
//! each run's figures for a script, `--plot` draws the flips. With `--schedule` every object
//! follows one EcsPowerSchedule instead, and the flip is one edit of it: a boundary for the
//! whole fleet at once (08:00 for a development fleet). `--server envtest` runs the same
//! against a real kube-apiserver and etcd started for each run, `--server kubeconfig` against
//! the cluster `KUBECONFIG` names (`server`). See `docs/performance.md`.

mod plot;
mod process;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{EcsInstance, EcsInstanceSpec, EcsPowerSchedule, PowerState, ScheduleReference};
use ecs_client::InstanceStatus;
use ecs_client::command::parse_duration;
use ecs_sim::{Action, CallRecord, InstanceSpec, Outcome, SimConfig, Simulator};
use server::{ApiServer, Requests, ServerKind};

const REGION: &str = "cn-hangzhou";
/// The namespace of the fleet (on a cluster named by `KUBECONFIG`, a fresh one per run).
const NAMESPACE: &str = "bench";
/// Instances per batch call: the quota bound's unit.
const PER_CALL: usize = 100;

/// Benchmark the controller against the ECS quota bound (the simulator; the in-process API
/// server, or a real one).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// The Kubernetes API server: in-process (kubesim), a real kube-apiserver and etcd started
    /// for each run from `KUBEBUILDER_ASSETS` (envtest), or the cluster `KUBECONFIG` names.
    #[arg(long, value_enum, default_value_t = ServerKind::Kubesim)]
    pub server: ServerKind,

    /// Steady-state DescribeInstances are counted over this many resync periods and reported
    /// per period (a rate: one window's count depends on where it falls in the observer's pass).
    #[arg(long, default_value_t = 3)]
    pub steady_resyncs: u32,

    /// Fleet sizes to run with batching on (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub objects: Vec<usize>,

    /// Fleet sizes to run with batching off (one call per object: at 10 QPS, 10,000 objects
    /// would take over half an hour, so the default is small and the report extrapolates;
    /// 0 skips).
    #[arg(long, value_delimiter = ',', default_value = "300")]
    pub off_objects: Vec<usize>,

    /// The simulator's quota: requests per second for each action (above it: Throttling.User).
    #[arg(long, default_value_t = 10)]
    pub quota: u32,

    /// The controller's `--qps` (client-side limit per region and action).
    #[arg(long, default_value_t = 10.0)]
    pub qps: f64,

    /// The controller's `--concurrency`.
    #[arg(long, default_value_t = 1024)]
    pub concurrency: u16,

    /// The controller's `--transition-poll` (the simulator's transitions take no time).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub transition_poll: Duration,

    /// The controller's `--resync`; steady-state calls are counted over one such period.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,

    /// Spec changes timed one by one (every `--latency-interval`) for the latency percentiles.
    #[arg(long, default_value_t = 100)]
    pub latency_samples: usize,

    /// Between two timed spec changes. Each costs two DescribeInstances (decide, then confirm
    /// the stop) on top of the steady state's: at 200 ms, 10 a second, the whole quota.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub latency_interval: Duration,

    /// The controller's `--batch-window`.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub batch_window: Duration,

    /// The controller's `--batch-quiet`.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub batch_quiet: Duration,

    /// Give up waiting for convergence after this long (the report then says how far it got).
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Also write the figures as JSON: an array with one object per run.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also draw objects Ready over time during each flip, against the quota bound (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Every object follows one EcsPowerSchedule (`spec.scheduleRef`), and the flip is one edit
    /// of the schedule, not N spec patches: the whole fleet crosses a boundary at once.
    #[arg(long)]
    pub schedule: bool,

    /// With `--schedule`: the fleet in this many tiers of equal size (db → app → web for 3),
    /// object k of each tier starting after object k of the tier before (`spec.startAfter`).
    /// The boundary then starts them in waves; each wave's start calls are timed.
    #[arg(long, default_value_t = 1, requires = "schedule", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub tiers: u32,
}

/// Objects per tier with `--tiers` (the last tier may be smaller).
fn tier_size(n: usize, tiers: u32) -> usize {
    n.div_ceil(tiers as usize).max(1)
}

/// One tier's wave of starts after the boundary.
#[derive(Debug)]
struct Wave {
    /// Start calls (single or batch) that named an instance of the tier.
    calls: usize,
    /// The first and the last of them, in seconds after the schedule edit.
    first_s: f64,
    last_s: f64,
}

/// The waves of the flip: for each tier, its accepted start calls after `from` (a sequence
/// number), timed from `edited`.
fn waves(
    records: &[CallRecord],
    from: u64,
    n: usize,
    tiers: u32,
    edited: jiff::Timestamp,
) -> Vec<Wave> {
    let size = tier_size(n, tiers);
    let mut waves: Vec<Option<Wave>> = (0..tiers).map(|_| None).collect();
    let starts = records.iter().filter(|r| {
        r.seq > from
            && matches!(
                r.action,
                Some(Action::StartInstance | Action::StartInstances)
            )
    });
    for record in starts {
        let Ok(at) = record.time.parse::<jiff::Timestamp>() else {
            continue;
        };
        let at = at.duration_since(edited).as_secs_f64();
        let mut named: Vec<usize> = record
            .instances
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Ok)
            .filter_map(|(id, _)| id.strip_prefix("i-bench")?.parse::<usize>().ok())
            .map(|i| i / size)
            .collect();
        named.dedup();
        for tier in named {
            let Some(wave) = waves.get_mut(tier) else {
                continue;
            };
            let wave = wave.get_or_insert(Wave {
                calls: 0,
                first_s: at,
                last_s: at,
            });
            wave.calls += 1;
            wave.first_s = wave.first_s.min(at);
            wave.last_s = wave.last_s.max(at);
        }
    }
    waves.into_iter().flatten().collect()
}

/// The schedule the fleet follows with `--schedule`.
const SCHEDULE: &str = "fleet-hours";

/// A schedule that says `state` all of today (UTC): an exception day over a window that never
/// runs on its own (so the flip is the exception's edit, whatever the hour).
fn fleet_hours(state: PowerState, namespace: &str) -> serde_json::Value {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    json!({
        "apiVersion": "ecs.powerctl.io/v1alpha1",
        "kind": "EcsPowerSchedule",
        "metadata": {"name": SCHEDULE, "namespace": namespace},
        "spec": {
            "timeZone": "UTC",
            "running": [{"days": ["Mon"], "from": "00:00", "to": "00:01"}],
            "exceptions": [{"date": today.to_string(), "powerState": state.as_str()}],
        },
    })
}

pub(crate) async fn run(args: BenchArgs) -> ExitCode {
    let mut reports = Vec::new();
    let runs = args
        .objects
        .iter()
        .map(|n| (*n, true))
        .chain(args.off_objects.iter().map(|n| (*n, false)))
        .filter(|(n, _)| *n > 0);
    for (n, batch) in runs {
        eprintln!("bench: {n} objects, batching {}", on_off(batch));
        match run_one(&args, n, batch).await {
            Ok(report) => {
                eprintln!("{}", report.summary());
                reports.push(report);
            }
            Err(err) => {
                eprintln!("bench: {n} objects, batching {}: {err}", on_off(batch));
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", render(&args, &reports));
    if let Err(err) = write_outputs(&args, &reports) {
        eprintln!("bench: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `--json` and `--plot`, when asked for.
fn write_outputs(args: &BenchArgs, reports: &[Report]) -> Result<(), String> {
    if let Some(path) = &args.json {
        let runs: Vec<serde_json::Value> = reports.iter().map(|r| r.json(args)).collect();
        let text = serde_json::to_string_pretty(&runs).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let curves: Vec<plot::Curve> = reports
            .iter()
            .map(|r| plot::Curve {
                label: format!("{} objects, batching {}", r.objects, on_off(r.batch)),
                objects: r.objects,
                bound_s: r.bound.as_secs_f64(),
                points: r.ready_curve.clone(),
            })
            .collect();
        plot::draw(path, &curves)?;
    }
    Ok(())
}

fn on_off(batch: bool) -> &'static str {
    if batch { "on" } else { "off" }
}

/// What one run measured.
#[derive(Debug)]
struct Report {
    objects: usize,
    batch: bool,
    converged: bool,
    ready: usize,
    flip: Duration,
    bound: Duration,
    /// ECS requests during the flip, by action and outcome.
    ecs_calls: BTreeMap<(String, String), u64>,
    kube_requests: u64,
    /// Creates, updates, patches and deletes during the flip (the benchmark's own spec patches
    /// included).
    kube_writes: u64,
    /// Requests the API server answered with 429 during the flip.
    kube_throttled: u64,
    kube_by_kind: Vec<(String, u64)>,
    /// The API server's processes (real servers only): (name, peak RSS bytes).
    server_peak_rss: Vec<(&'static str, u64)>,
    controller_peak_rss: u64,
    controller_cpu_flip: f64,
    controller_cpu_total: f64,
    servers_cpu_flip: f64,
    /// Steady-state DescribeInstances per resync: the mean over `--steady-resyncs` periods.
    describes_per_resync: Option<f64>,
    /// The count in each of those periods.
    describes_each_resync: Vec<usize>,
    latency_describe: Vec<Duration>,
    latency_mutation: Vec<Duration>,
    /// Objects Ready for the new generation during the flip: (seconds since it began, count).
    ready_curve: Vec<(f64, usize)>,
    /// With `--tiers`: each tier's wave of starts, in order.
    waves: Vec<Wave>,
}

impl Report {
    /// The run's figures for `--json` (durations in seconds or milliseconds, sizes in MB).
    fn json(&self, args: &BenchArgs) -> serde_json::Value {
        let ms = |samples: &[Duration], p: f64| {
            percentile(samples, p).map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)
        };
        let ecs_calls: BTreeMap<String, u64> = self
            .ecs_calls
            .iter()
            .map(|((action, outcome), n)| (format!("{action} {outcome}"), *n))
            .collect();
        json!({
            "objects": self.objects,
            "batching": self.batch,
            "flip_by": if args.schedule { "one EcsPowerSchedule edit" } else { "spec patches" },
            "converged": self.converged,
            "ready_s": round(self.flip.as_secs_f64(), 2),
            "bound_s": round(self.bound.as_secs_f64(), 2),
            "ratio": round(self.ratio(), 3),
            "ready": self.ready,
            "peak_rss_mb": round(self.controller_peak_rss as f64 / 1e6, 1),
            "describes_per_resync": self.describes_per_resync,
            "describes_floor": self.objects.div_ceil(PER_CALL),
            "spec_to_describe_p50_ms": ms(&self.latency_describe, 50.0),
            "spec_to_describe_p99_ms": ms(&self.latency_describe, 99.0),
            "spec_to_call_p50_ms": ms(&self.latency_mutation, 50.0),
            "spec_to_call_p99_ms": ms(&self.latency_mutation, 99.0),
            "latency_samples": self.latency_describe.len(),
            "controller_cpu_flip_s": round(self.controller_cpu_flip, 2),
            "controller_cpu_total_s": round(self.controller_cpu_total, 2),
            "servers_cpu_flip_s": round(self.servers_cpu_flip, 2),
            "ecs_calls_during_flip": ecs_calls,
            "kube_requests_during_flip": self.kube_requests,
            "kube_writes_during_flip": self.kube_writes,
            "kube_writes_per_object": round(self.writes_per_object(args), 2),
            "kube_429_during_flip": self.kube_throttled,
            "server": format!("{:?}", args.server).to_lowercase(),
            "server_peak_rss_mb": self.server_peak_rss.iter().map(|(name, rss)| (name.to_string(), round(*rss as f64 / 1e6, 1))).collect::<BTreeMap<String, f64>>(),
            "describes_each_resync": self.describes_each_resync,
            "quota_per_action": args.quota,
        "latency_interval_ms": args.latency_interval.as_millis(),
            "qps": args.qps,
            "resync_s": args.resync.as_secs_f64(),
            "concurrency": args.concurrency,
            "tiers": args.tiers,
            "waves": self.waves.iter().map(|w| json!({
                "start_calls": w.calls,
                "first_start_s": round(w.first_s, 2),
                "last_start_s": round(w.last_s, 2),
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes per object during the flip, less the benchmark's own spec patch of each object
    /// (what the controller wrote; with `--schedule` the benchmark wrote one schedule edit).
    fn writes_per_object(&self, args: &BenchArgs) -> f64 {
        let own = if args.schedule {
            1
        } else {
            self.objects as u64
        };
        self.kube_writes.saturating_sub(own) as f64 / self.objects.max(1) as f64
    }

    fn ratio(&self) -> f64 {
        self.flip.as_secs_f64() / self.bound.as_secs_f64().max(f64::EPSILON)
    }

    fn summary(&self) -> String {
        let waves = self.waves_text();
        let summary = format!(
            "  flip: {:.1}s (bound {:.1}s, ratio {:.2}), ready {}/{}, controller peak RSS {:.1} MB",
            self.flip.as_secs_f64(),
            self.bound.as_secs_f64(),
            self.ratio(),
            self.ready,
            self.objects,
            self.controller_peak_rss as f64 / 1e6
        );
        if waves.is_empty() {
            summary
        } else {
            format!("{summary}\n  {waves}")
        }
    }

    /// The waves, one line: each tier's start calls and when the first and last left.
    fn waves_text(&self) -> String {
        let waves: Vec<String> = self
            .waves
            .iter()
            .enumerate()
            .map(|(tier, w)| {
                format!(
                    "tier {}: {} start calls, +{:.1} s to +{:.1} s",
                    tier + 1,
                    w.calls,
                    w.first_s,
                    w.last_s
                )
            })
            .collect();
        if waves.is_empty() {
            return String::new();
        }
        format!("waves after the schedule edit: {}", waves.join("; "))
    }
}

/// The lower bound the quota allows for the flip: every object needs two observations (one
/// to see it Stopped, one to see it Running) and one start; batched, 100 objects per call.
fn quota_bound(objects: usize, batch: bool, quota: u32) -> Duration {
    let calls = if batch {
        objects.div_ceil(PER_CALL)
    } else {
        objects
    };
    let describes = 2 * calls;
    let starts = calls;
    Duration::from_secs_f64(describes.max(starts) as f64 / f64::from(quota.max(1)))
}

fn instance_id(n: usize) -> String {
    format!("i-bench{n:05}")
}

/// What the tracker keeps of each object.
#[derive(Clone, Copy, Debug)]
struct Seen {
    desired: Option<PowerState>,
    ready_for_generation: bool,
}

type Tracker = Arc<Mutex<HashMap<String, Seen>>>;

fn count(tracker: &Tracker, desired: PowerState) -> usize {
    tracker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|s| s.desired == Some(desired) && s.ready_for_generation)
        .count()
}

fn seen(obj: &EcsInstance) -> Seen {
    let status = obj.status.as_ref();
    let ready = status.is_some_and(|s| {
        s.observed_generation == obj.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    Seen {
        // A scheduled object's desired state is the one its last reconcile worked out.
        desired: obj
            .spec
            .power_state
            .or_else(|| status.and_then(|s| s.desired_power_state)),
        ready_for_generation: ready,
    }
}

/// Waits until `n` objects desire `desired` and are Ready for it; false after `limit`. Each
/// look is added to `curve` (seconds since `since`, objects Ready).
async fn wait_ready(
    tracker: &Tracker,
    desired: PowerState,
    n: usize,
    limit: Duration,
    since: Instant,
    curve: &mut Vec<(f64, usize)>,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let ready = count(tracker, desired);
        curve.push((since.elapsed().as_secs_f64(), ready));
        if ready >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Requests per (action, outcome) in the simulator's log, from record `from` on.
fn calls_since(records: &[CallRecord], from: u64) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.seq > from) {
        let action = r.action.map_or("(none)", Action::as_str).to_string();
        let outcome = match &r.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Error(code) => code.clone(),
        };
        *out.entry((action, outcome)).or_default() += 1;
    }
    out
}

fn last_seq(sim: &Simulator) -> u64 {
    sim.calls().log().last().map_or(0, |r| r.seq)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

async fn run_one(args: &BenchArgs, n: usize, batch: bool) -> Result<Report, String> {
    let server = ApiServer::start(args.server, n).await?;
    let client = server.client().await?;
    let namespace = match args.server {
        ServerKind::Kubeconfig => format!("{NAMESPACE}-{:08x}", rand::random::<u32>()),
        _ => NAMESPACE.to_string(),
    };
    let result = run_on(args, n, batch, &server, &client, &namespace).await;
    server.shutdown(&client, &namespace).await;
    result
}

async fn run_on(
    args: &BenchArgs,
    n: usize,
    batch: bool,
    server: &ApiServer,
    client: &kube::Client,
    namespace: &str,
) -> Result<Report, String> {
    let mut config = SimConfig::instant();
    config.log_capacity = 40 * n + 100_000;
    let sim = Simulator::start(config).await.map_err(|e| e.to_string())?;
    server.prepare(client, namespace).await?;
    sim.add_instances(
        (0..n).map(|i| InstanceSpec::new(&instance_id(i), REGION).status(InstanceStatus::Stopped)),
    )
    .map_err(|e| e.to_string())?;
    for action in Action::ALL {
        sim.set_quota(action, Some(args.quota));
    }

    let schedules: Api<EcsPowerSchedule> = Api::namespaced(client.clone(), namespace);
    if args.schedule {
        let schedule = serde_json::from_value(fleet_hours(PowerState::Stopped, namespace))
            .map_err(|e| format!("the bench's schedule: {e}"))?;
        schedules
            .create(&PostParams::default(), &schedule)
            .await
            .map_err(|e| format!("creating the EcsPowerSchedule: {e}"))?;
    }
    let api: Api<EcsInstance> = Api::namespaced(client.clone(), namespace);
    let creates = (0..n).map(|i| {
        let api = api.clone();
        async move {
            let id = instance_id(i);
            let mut spec = EcsInstanceSpec::new(&id, REGION, PowerState::Stopped);
            if args.schedule {
                spec.power_state = None;
                spec.schedule_ref = Some(ScheduleReference {
                    name: SCHEDULE.into(),
                });
                let size = tier_size(n, args.tiers);
                if args.tiers > 1 && i >= size {
                    spec.start_after = vec![instance_id(i - size)];
                }
            }
            let mut obj = EcsInstance::new(&id, spec);
            obj.metadata.namespace = Some(namespace.into());
            api.create(&PostParams::default(), &obj).await.map(|_| ())
        }
    });
    futures::stream::iter(creates)
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .map_err(|e| format!("creating EcsInstances: {e}"))?;

    // Follow every object through a watch (cheaper for the API server than listing 10,000).
    let tracker: Tracker = Arc::default();
    let follow = {
        let tracker = tracker.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(event) = events.next().await {
                if let Ok(obj) = event {
                    tracker
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(obj.name_any(), seen(&obj));
                }
            }
        })
    };

    let dir = std::env::temp_dir().join(format!("ecs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kubeconfig = server
        .controller_kubeconfig(client, namespace, &dir)
        .await?;
    let log_path = dir.join(format!("controller-{n}-{}.log", on_off(batch)));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let (key_id, key_secret) = sim.access_key();
    let mut child = std::process::Command::new(exe)
        .args([
            "run",
            "--namespace",
            namespace,
            "--ecs-endpoint",
            &sim.endpoint(),
            "--ecs-qps",
            &args.qps.to_string(),
            "--batch",
            on_off(batch),
            "--concurrency",
            &args.concurrency.to_string(),
            "--resync",
            &format!("{}ms", args.resync.as_millis()),
            "--transition-poll",
            &format!("{}ms", args.transition_poll.as_millis()),
            "--batch-window",
            &format!("{}ms", args.batch_window.as_millis()),
            "--batch-quiet",
            &format!("{}ms", args.batch_quiet.as_millis()),
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port()?),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key_secret)
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting the controller: {e}"))?;
    let pid = child.id().to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(Some(status)) = child.try_wait() {
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(format!("the controller exited ({status}): {tail}"));
    }

    let stack = Stack {
        sim: &sim,
        server,
        client,
        namespace,
        api: &api,
        tracker: &tracker,
        pid: &pid,
    };
    let result = measure(args, n, batch, &stack).await;
    let _ = child.kill();
    let _ = child.wait();
    follow.abort();
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What one measured run stands on: the two simulated services, the fleet's objects and what
/// the watch has seen of them, and the controller's process.
struct Stack<'a> {
    sim: &'a Simulator,
    server: &'a ApiServer,
    /// The benchmark's own (admin) client.
    client: &'a kube::Client,
    namespace: &'a str,
    api: &'a Api<EcsInstance>,
    tracker: &'a Tracker,
    pid: &'a str,
}

async fn measure(
    args: &BenchArgs,
    n: usize,
    batch: bool,
    stack: &Stack<'_>,
) -> Result<Report, String> {
    let Stack {
        sim,
        server,
        client,
        namespace,
        api,
        tracker,
        pid,
    } = *stack;
    // 1. The controller takes over the fleet: everything Stopped as desired.
    let mut takeover = Vec::new();
    let waited = Instant::now();
    if !wait_ready(
        tracker,
        PowerState::Stopped,
        n,
        args.timeout,
        waited,
        &mut takeover,
    )
    .await
    {
        return Err(format!(
            "only {} of {n} objects became Ready (Stopped) within {:?}",
            count(tracker, PowerState::Stopped),
            args.timeout
        ));
    }

    // 2. The flip: every spec to Running, timed until every object is Ready for it.
    let seq_before = last_seq(sim);
    let kube_before = server.requests(client).await;
    let controller_before = process::usage(pid).unwrap_or_default();
    let servers_before = process::usage("self").unwrap_or_default();
    let started = Instant::now();
    let edited = jiff::Timestamp::now();
    if args.schedule {
        let running = fleet_hours(PowerState::Running, namespace);
        Api::<EcsPowerSchedule>::namespaced(api.clone().into_client(), namespace)
            .patch(SCHEDULE, &PatchParams::default(), &Patch::Merge(&running))
            .await
            .map_err(|e| format!("editing the schedule: {e}"))?;
    }
    let patches = (0..n).filter(|_| !args.schedule).map(|i| {
        let api = api.clone();
        async move {
            let patch = json!({ "spec": { "powerState": "Running" } });
            api.patch(
                &instance_id(i),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
        }
    });
    futures::stream::iter(patches)
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .map_err(|e| format!("flipping specs: {e}"))?;
    let mut ready_curve = Vec::new();
    let converged = wait_ready(
        tracker,
        PowerState::Running,
        n,
        args.timeout,
        started,
        &mut ready_curve,
    )
    .await;
    let flip = started.elapsed();
    let ready = count(tracker, PowerState::Running);
    let controller_after = process::usage(pid).unwrap_or_default();
    let servers_after = process::usage("self").unwrap_or_default();
    let kube_flip: Requests = server.requests(client).await.since(&kube_before);
    let flip_log = sim.calls().log();
    let ecs_calls = calls_since(&flip_log, seq_before);
    let waves = if args.tiers > 1 {
        waves(&flip_log, seq_before, n, args.tiers, edited)
    } else {
        Vec::new()
    };
    let mut kube_by_kind: Vec<(String, u64)> = kube_flip
        .by_kind
        .iter()
        .map(|(kind, n)| (kind.clone(), *n))
        .collect();
    kube_by_kind.sort_by_key(|k| std::cmp::Reverse(k.1));

    // 3. Steady state: DescribeInstances over several resync periods, once the flip has
    //    settled, reported per period (see `steady_state`).
    let (describes_per_resync, describes_each_resync) = if converged {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let each = steady_state(sim, args.resync, args.steady_resyncs.max(1)).await;
        let mean = each.iter().sum::<usize>() as f64 / each.len().max(1) as f64;
        (Some(mean), each)
    } else {
        (None, Vec::new())
    };

    // 4. Latency: single spec changes, quota not the limit.
    let (latency_describe, latency_mutation) = if converged {
        latencies(args, n, sim, api).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let controller_end = process::usage(pid).unwrap_or_default();
    let server_peak_rss = server
        .processes()
        .into_iter()
        .map(|(name, pid)| {
            let usage = process::usage(&pid).unwrap_or_default();
            (name, usage.peak_rss_bytes)
        })
        .collect();

    Ok(Report {
        objects: n,
        batch,
        converged,
        ready,
        flip,
        bound: quota_bound(n, batch, args.quota),
        ecs_calls,
        kube_requests: kube_flip.total(),
        kube_writes: kube_flip.writes(),
        kube_throttled: kube_flip.throttled,
        kube_by_kind,
        server_peak_rss,
        controller_peak_rss: controller_end.peak_rss_bytes,
        controller_cpu_flip: controller_after.cpu_seconds - controller_before.cpu_seconds,
        controller_cpu_total: controller_end.cpu_seconds,
        servers_cpu_flip: servers_after.cpu_seconds - servers_before.cpu_seconds,
        describes_per_resync,
        describes_each_resync,
        latency_describe,
        latency_mutation,
        ready_curve,
        waves,
    })
}

/// DescribeInstances in each of `periods` consecutive resync periods (one count per period, in
/// order). Their mean is the steady-state rate: a single window's count depends on where it
/// falls in the observer's pass (one page more or less than the floor).
async fn steady_state(sim: &Simulator, resync: Duration, periods: u32) -> Vec<usize> {
    let describes_after = |from: u64| {
        let log = sim.calls().log();
        let sizes: Vec<usize> = log
            .iter()
            .filter(|r| r.seq > from && r.action == Some(Action::DescribeInstances))
            .map(|r| r.instances.len())
            .collect();
        (log.last().map_or(from, |r| r.seq), sizes)
    };
    let (mut from, _) = describes_after(last_seq(sim));
    let mut each = Vec::new();
    let mut all_sizes = Vec::new();
    for _ in 0..periods {
        tokio::time::sleep(resync).await;
        let (last, sizes) = describes_after(from);
        each.push(sizes.len());
        all_sizes.extend(sizes);
        from = last;
    }
    all_sizes.sort_unstable();
    eprintln!(
        "  steady state: DescribeInstances per resync {each:?}, ids per call min {:?} median {:?} max {:?}",
        all_sizes.first(),
        all_sizes.get(all_sizes.len() / 2),
        all_sizes.last()
    );
    each
}

/// Flips objects to Stopped one at a time (every `--latency-interval`) and times, from each
/// patch, the first DescribeInstances and the first StopInstance(s) naming the instance.
async fn latencies(
    args: &BenchArgs,
    n: usize,
    sim: &Simulator,
    api: &Api<EcsInstance>,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let samples = args.latency_samples.min(n);
    let mut sent = Vec::with_capacity(samples);
    for i in 0..samples {
        let at = jiff::Timestamp::now();
        // (A scheduled object leaves its schedule for a fixed state: exactly one of the two.)
        let patch = json!({ "spec": { "powerState": "Stopped", "scheduleRef": null } });
        api.patch(
            &instance_id(i),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| format!("latency sample: {e}"))?;
        sent.push((instance_id(i), at));
        tokio::time::sleep(args.latency_interval).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = sim.calls().log();
    let first = |id: &str, at: jiff::Timestamp, actions: &[Action]| -> Option<Duration> {
        log.iter()
            .filter(|r| r.action.is_some_and(|a| actions.contains(&a)))
            .filter(|r| r.instances.iter().any(|(i, _)| i == id))
            .filter_map(|r| r.time.parse::<jiff::Timestamp>().ok())
            .filter(|t| *t >= at)
            .map(|t| t.duration_since(at).unsigned_abs())
            .min()
    };
    let mut describe = Vec::new();
    let mut mutation = Vec::new();
    for (id, at) in &sent {
        describe.extend(first(id, *at, &[Action::DescribeInstances]));
        mutation.extend(first(
            id,
            *at,
            &[Action::StopInstance, Action::StopInstances],
        ));
    }
    describe.sort();
    mutation.sort();
    Ok((describe, mutation))
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}

/// The report as Markdown.
fn render(args: &BenchArgs, reports: &[Report]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{}Quota {} requests/s per action; controller --qps {}, --concurrency {}, --transition-poll {:?}, --resync {:?}, --batch-window {:?}, --batch-quiet {:?}; a timed spec change every {:?}.\n\n",
        if args.schedule {
            "The flip: one edit of the EcsPowerSchedule every object follows. "
        } else {
            ""
        },
        args.quota,
        args.qps,
        args.concurrency,
        args.transition_poll,
        args.resync,
        args.batch_window,
        args.batch_quiet,
        args.latency_interval
    ));
    out.push_str(&format!("API server: {:?}.\n\n", args.server).to_lowercase());
    out.push_str("| objects | batching | all Ready after | quota bound | ratio | ready | controller peak RSS | controller CPU (flip / total) | this process's CPU (flip) | DescribeInstances per resync (each) | spec→Describe p50/p99 | spec→Stop p50/p99 |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {:.1} s{} | {:.1} s | {:.2} | {}/{} | {:.1} MB | {:.1} s / {:.1} s | {:.1} s ({:.0}% of one core) | {} (ceil(N/100) = {}) | {} / {} | {} / {} |\n",
            r.objects,
            on_off(r.batch),
            r.flip.as_secs_f64(),
            if r.converged { "" } else { " (timed out)" },
            r.bound.as_secs_f64(),
            r.ratio(),
            r.ready,
            r.objects,
            r.controller_peak_rss as f64 / 1e6,
            r.controller_cpu_flip,
            r.controller_cpu_total,
            r.servers_cpu_flip,
            100.0 * r.servers_cpu_flip / r.flip.as_secs_f64().max(f64::EPSILON),
            r.describes_per_resync
                .map_or("–".into(), |d| format!("{d:.1} {:?}", r.describes_each_resync)),
            r.objects.div_ceil(PER_CALL),
            ms(percentile(&r.latency_describe, 50.0)),
            ms(percentile(&r.latency_describe, 99.0)),
            ms(percentile(&r.latency_mutation, 50.0)),
            ms(percentile(&r.latency_mutation, 99.0)),
        ));
    }
    for r in reports {
        out.push_str(&format!(
            "\nECS requests during the flip, {} objects, batching {}: ",
            r.objects,
            on_off(r.batch)
        ));
        let calls: Vec<String> = r
            .ecs_calls
            .iter()
            .map(|((a, o), c)| format!("{a} {o}: {c}"))
            .collect();
        out.push_str(&calls.join(", "));
        if !r.waves.is_empty() {
            out.push_str(&format!("\n{}", r.waves_text()));
        }
        out.push_str(&format!(
            "\nAPI-server writes during the flip: {} ({:.2} per object besides the benchmark's own), 429 answers: {}",
            r.kube_writes,
            r.writes_per_object(args),
            r.kube_throttled
        ));
        for (name, rss) in &r.server_peak_rss {
            out.push_str(&format!(", {name} peak RSS {:.1} MB", *rss as f64 / 1e6));
        }
        out.push_str(&format!(
            "\nAPI-server requests during the flip: {} ({})\n",
            r.kube_requests,
            r.kube_by_kind
                .iter()
                .take(8)
                .map(|(k, c)| format!("{k}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let on = reports.iter().filter(|r| r.batch && r.converged);
    let off = reports.iter().filter(|r| !r.batch && r.converged);
    for a in on {
        for b in off.clone() {
            // Both are quota-bound and linear in N: compare per object.
            let per_on = a.flip.as_secs_f64() / a.objects as f64;
            let per_off = b.flip.as_secs_f64() / b.objects as f64;
            out.push_str(&format!(
                "\nBatching off at {} objects took {:.1} s: {:.1} s extrapolated to {} objects, {:.1}× the {:.1} s with batching on.\n",
                b.objects,
                b.flip.as_secs_f64(),
                per_off * a.objects as f64,
                a.objects,
                per_off / per_on,
                a.flip.as_secs_f64()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_bound_counts_two_observations_and_one_start_per_object() {
        assert_eq!(quota_bound(10_000, true, 10), Duration::from_secs(20));
        assert_eq!(quota_bound(1_000, true, 10), Duration::from_secs(2));
        assert_eq!(quota_bound(1_001, true, 10), Duration::from_millis(2_200));
        assert_eq!(quota_bound(300, false, 10), Duration::from_secs(60));
    }

    /// Three tiers of two: each call is counted for every tier it named, timed from the edit.
    #[test]
    fn waves_split_the_start_calls_by_tier() {
        let call = |seq: u64, second: u32, action: Action, ids: &[usize]| CallRecord {
            seq,
            request_id: format!("req-{seq}"),
            time: format!("2026-11-27T08:00:{second:02}Z"),
            action: Some(action),
            instances: ids.iter().map(|i| (instance_id(*i), Outcome::Ok)).collect(),
            outcome: Outcome::Ok,
            http_status: 200,
            signature: None,
            access_key_id: None,
        };
        let log = [
            call(1, 0, Action::StartInstances, &[0]),
            call(2, 1, Action::StartInstances, &[0, 1]),
            call(3, 2, Action::DescribeInstances, &[2, 3]),
            call(4, 3, Action::StartInstances, &[2, 3]),
            call(5, 5, Action::StartInstance, &[4]),
            call(6, 6, Action::StartInstances, &[3, 5]),
        ];
        let edited: jiff::Timestamp = "2026-11-27T08:00:00Z".parse().unwrap();
        let waves = waves(&log, 1, 6, 3, edited);
        let got: Vec<(usize, f64, f64)> = waves
            .iter()
            .map(|w| (w.calls, w.first_s, w.last_s))
            .collect();
        assert_eq!(got, [(1, 1.0, 1.0), (2, 3.0, 6.0), (2, 5.0, 6.0)]);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 99.0), None);
    }
}
