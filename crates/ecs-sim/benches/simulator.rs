//! Throughput of the simulator: signed requests per second over loopback with 100,000
//! instances loaded. Run: `cargo bench --bench simulator`.
//!
//! Knobs (environment): SIM_BENCH_SECONDS (10), SIM_BENCH_CONCURRENCY (32),
//! SIM_BENCH_INSTANCES (100000). The load generator signs every request (V3, like the SDKs)
//! in the same process, so the number is a floor for the server alone.

#[path = "../tests/sim/support/mod.rs"]
mod sim_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ecs_client::types::InstanceStatus;
use ecs_sim::{InstanceSpec, SimConfig, Simulator};
use sim_support::{Client, KEY, SECRET};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds = env("SIM_BENCH_SECONDS", 10);
    let concurrency = env("SIM_BENCH_CONCURRENCY", 32);
    let count = env("SIM_BENCH_INSTANCES", 100_000);
    let regions = ["cn-hangzhou", "cn-shanghai"];
    let mut config = SimConfig::instant().with_key(KEY, SECRET);
    config.log_capacity = 10_000;
    config.instances = (0..count)
        .map(|i| {
            let status = if i % 2 == 0 {
                InstanceStatus::Running
            } else {
                InstanceStatus::Stopped
            };
            InstanceSpec::new(&format!("i-bench{i:07}"), regions[(i % 2) as usize]).status(status)
        })
        .collect();
    let loaded = Instant::now();
    let sim = Simulator::start(config).await.expect("simulator starts");
    println!(
        "loaded {} instances in {:.2?}",
        sim.instance_count(),
        loaded.elapsed()
    );

    let client = Arc::new(Client::new(sim.addr()));
    let done = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, done, ok) = (client.clone(), done.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = worker * 7919;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (n >> 33) % count;
                let id = format!("i-bench{i:07}");
                let region = regions[(i % 2) as usize];
                let reply = match n % 4 {
                    0 | 1 => {
                        let ids = format!("[\"{id}\"]");
                        client
                            .v3(
                                "DescribeInstances",
                                &[("RegionId", region), ("InstanceIds", &ids)],
                            )
                            .await
                    }
                    2 => client.v3("StartInstance", &[("InstanceId", &id)]).await,
                    _ => client.v3("StopInstance", &[("InstanceId", &id)]).await,
                };
                done.fetch_add(1, Ordering::Relaxed);
                // Start/Stop of an instance already there answers IncorrectInstanceStatus:
                // still a fully verified, signed request.
                if reply.status == 200 || reply.code() == "IncorrectInstanceStatus" {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    let answered = ok.load(Ordering::Relaxed);
    println!(
        "{total} signed requests in {elapsed:.1}s with concurrency {concurrency}: {:.0} req/s ({answered} answered as expected)",
        total as f64 / elapsed
    );
    if answered != total {
        eprintln!(
            "warning: {} requests got an unexpected answer",
            total - answered
        );
    }
    sim.shutdown().await;
}
