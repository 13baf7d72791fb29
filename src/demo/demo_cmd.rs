//! `ecs-power-controller demo`: the quick start that needs no account, no cluster and no set-up.
//!
//! It starts the in-process Kubernetes API server and the ECS simulator (default fleet), applies
//! the manifests in `deploy/examples/`, runs the real controller, and shows a live table until
//! every object has settled.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::sandbox::{RunningController, Sandbox};
use crate::api::{EcsHolidayCalendar, EcsInstance, EcsPowerSchedule, PowerState};
use crate::controller::config::{Config, Timings};
use crate::controller::reconcile::conditions;
use ecs_client::command::parse_duration;
use ecs_sim::{Action, SimConfig, TransitionTimes};

/// Run the controller against a local Kubernetes API and ECS simulator, with the examples.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Keep running after everything settled, and print the kubeconfig path so that
    /// `kubectl get ecsi -w` works against the demo.
    #[arg(long)]
    pub keep_running: bool,

    /// Give up (exit 1) when the objects have not settled within this long.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The manifests to apply (Secrets and EcsInstances, one or more per file).
    #[arg(long, default_value = "deploy/examples")]
    pub manifests: PathBuf,

    /// How long simulated instances take to start or stop.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub transition: Duration,
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(args: DemoArgs) -> Result<(), String> {
    let manifests = read_manifests(&args.manifests)?;
    let sim_config = SimConfig {
        transitions: TransitionTimes::uniform(args.transition),
        ..SimConfig::default_fleet()
    };
    let sandbox = Sandbox::start(sim_config)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "Kubernetes API (in-process): {}\nECS simulator:                {}",
        sandbox.kube.as_ref().map_or("-".to_string(), |k| k.url()),
        sandbox.sim.endpoint()
    );
    apply(&sandbox.client, &manifests).await?;
    println!(
        "Applied {} manifests from {}.\n",
        manifests.len(),
        args.manifests.display()
    );

    let controller = sandbox
        .spawn_controller(demo_config())
        .map_err(|e| e.to_string())?;
    let settled = watch_table(&sandbox.client, args.timeout).await;
    print_calls(&sandbox);
    print_calendars(&sandbox.client).await;

    let outcome = match settled {
        Ok(()) => {
            println!("\nEvery EcsInstance has settled: Ready, or reporting why not.");
            Ok(())
        }
        Err(message) => Err(message),
    };
    if args.keep_running && outcome.is_ok() {
        keep_running(&sandbox).await?;
    }
    stop(controller).await;
    sandbox.shutdown().await;
    outcome
}

/// The holiday calendars and the schedules that use them, as their status controllers see them.
async fn print_calendars(client: &Client) {
    let Ok(calendars) = Api::<EcsHolidayCalendar>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return;
    };
    let schedules = Api::<EcsPowerSchedule>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    for calendar in calendars.items {
        let name = calendar.name_any();
        let days = calendar.spec.days.len();
        let next = match calendar.status.and_then(|s| s.next) {
            Some(day) => match day.name {
                Some(day_name) => format!("{} ({day_name})", day.date),
                None => day.date,
            },
            None => "-".to_string(),
        };
        let users: Vec<String> = schedules
            .iter()
            .filter(|s| s.namespace() == calendar.metadata.namespace)
            .filter(|s| s.spec.calendars.iter().any(|c| c.name == name))
            .map(|s| s.name_any())
            .collect();
        println!(
            "\nEcsHolidayCalendar {name}: {days} days, the next {next}; used by {}.",
            if users.is_empty() {
                "no schedule".to_string()
            } else {
                format!("EcsPowerSchedule {}", users.join(", "))
            }
        );
    }
}

fn demo_config() -> Config {
    Config {
        concurrency: 8,
        resync: Duration::from_secs(30),
        timings: Timings {
            transition_poll: Duration::from_secs(1),
            ..Timings::default()
        },
        ..Config::default()
    }
}

async fn stop(controller: RunningController) {
    if let Err(err) = controller.stop().await {
        eprintln!("demo: the controller stopped with an error: {err}");
    }
}

/// Every YAML document of every `*.yaml` file in `dir` (the kustomization excluded).
fn read_manifests(dir: &Path) -> Result<Vec<Value>, String> {
    let files = crate::cli::manifests::yaml_files(dir).map_err(|e| {
        format!(
            "cannot read --manifests {}: {e} (run the demo from the repository root)",
            dir.display()
        )
    })?;
    let mut docs = Vec::new();
    for file in files {
        docs.extend(crate::cli::manifests::documents(&file).map_err(|e| e.to_string())?);
    }
    if docs.is_empty() {
        return Err(format!("no manifests found in {}", dir.display()));
    }
    Ok(docs)
}

/// Creates the Secrets first, then the EcsHolidayCalendars, the EcsPowerSchedules, then the
/// EcsInstances.
async fn apply(client: &Client, docs: &[Value]) -> Result<(), String> {
    let kind = |d: &Value| {
        d.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let namespace = |d: &Value| {
        d.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    };
    for doc in docs.iter().filter(|d| kind(d) == "Secret") {
        let secret: Secret = serde_json::from_value(doc.clone())
            .map_err(|e| format!("a Secret manifest is invalid: {e}"))?;
        Api::<Secret>::namespaced(client.clone(), &namespace(doc))
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| format!("creating Secret {}: {e}", secret.name_any()))?;
    }
    // Calendars before the schedules that use them (a schedule whose calendar is missing
    // stalls its instances until it appears).
    for doc in docs.iter().filter(|d| kind(d) == "EcsHolidayCalendar") {
        let calendar: EcsHolidayCalendar = serde_json::from_value(doc.clone())
            .map_err(|e| format!("an EcsHolidayCalendar manifest is invalid: {e}"))?;
        Api::<EcsHolidayCalendar>::namespaced(client.clone(), &namespace(doc))
            .create(&PostParams::default(), &calendar)
            .await
            .map_err(|e| format!("creating EcsHolidayCalendar {}: {e}", calendar.name_any()))?;
    }
    // Schedules before the instances that will follow them.
    for doc in docs.iter().filter(|d| kind(d) == "EcsPowerSchedule") {
        let schedule: EcsPowerSchedule = serde_json::from_value(doc.clone())
            .map_err(|e| format!("an EcsPowerSchedule manifest is invalid: {e}"))?;
        Api::<EcsPowerSchedule>::namespaced(client.clone(), &namespace(doc))
            .create(&PostParams::default(), &schedule)
            .await
            .map_err(|e| format!("creating EcsPowerSchedule {}: {e}", schedule.name_any()))?;
    }
    for doc in docs.iter().filter(|d| {
        !matches!(
            kind(d).as_str(),
            "Secret" | "EcsHolidayCalendar" | "EcsPowerSchedule"
        )
    }) {
        if kind(doc) != "EcsInstance" {
            return Err(format!(
                "the demo applies Secrets, EcsHolidayCalendars, EcsPowerSchedules and EcsInstances only, not {}",
                kind(doc)
            ));
        }
        let mut obj: EcsInstance = serde_json::from_value(doc.clone())
            .map_err(|e| format!("an EcsInstance manifest is invalid: {e}"))?;
        // A time token in an example is a request made as the object is created: written now,
        // as `ecs-power-controller reboot` would. (A time older than the object is a copy of an
        // earlier object's request, a restore, and is adopted: see the README.)
        if let Some(reboot) = obj.spec.reboot.as_mut()
            && reboot.token.parse::<jiff::Timestamp>().is_ok()
        {
            reboot.token = jiff::Timestamp::now().to_string();
        }
        Api::<EcsInstance>::namespaced(client.clone(), &namespace(doc))
            .create(&PostParams::default(), &obj)
            .await
            .map_err(|e| format!("creating EcsInstance {}: {e}", obj.name_any()))?;
    }
    Ok(())
}

/// One row of the live table.
struct Row {
    name: String,
    instance: String,
    desired: String,
    /// The schedule followed and its next transition, or `-`.
    next: String,
    actual: String,
    ready: String,
    reason: String,
    settled: bool,
}

fn row(obj: &EcsInstance) -> Row {
    let status = obj.status.clone().unwrap_or_default();
    let condition = |t: &str| status.conditions.iter().find(|c| c.type_ == t).cloned();
    let ready = condition(conditions::READY);
    let reconciling = condition(conditions::RECONCILING).is_some_and(|c| c.status == "True");
    let current = status.observed_generation == obj.metadata.generation && ready.is_some();
    Row {
        name: obj.name_any(),
        instance: obj.spec.instance_id.clone(),
        desired: status
            .desired_power_state
            .or(obj.spec.power_state)
            .map_or("-", PowerState::as_str)
            .to_string(),
        next: match (&obj.spec.schedule_ref, &status.next_transition) {
            (Some(r), Some(t)) => format!("{}: {} at {}", r.name, t.power_state.as_str(), t.time.0),
            (Some(r), None) => format!("{}: -", r.name),
            (None, _) => "-".to_string(),
        },
        actual: status
            .instance_status
            .map_or("-".to_string(), |s| s.to_string()),
        ready: ready.as_ref().map_or("-".into(), |c| c.status.clone()),
        reason: ready.as_ref().map_or("-".into(), |c| c.reason.clone()),
        settled: current && !reconciling,
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<20} {:<8} {:<9} {:<6} {:<26} {}\n",
        "NAME", "INSTANCE", "DESIRED", "ACTUAL", "READY", "REASON", "SCHEDULE: NEXT"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:<20} {:<8} {:<9} {:<6} {:<26} {}\n",
            r.name, r.instance, r.desired, r.actual, r.ready, r.reason, r.next
        ));
    }
    out
}

/// Prints the table whenever it changes, until every object has settled or `timeout` passes.
async fn watch_table(client: &Client, timeout: Duration) -> Result<(), String> {
    let api: Api<EcsInstance> = Api::all(client.clone());
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing EcsInstances: {e}"))?;
        let mut rows: Vec<Row> = list.items.iter().map(row).collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let shown = table(&rows);
        if shown != last {
            println!("[{:>5.1}s]\n{shown}", started.elapsed().as_secs_f64());
            last = shown;
        }
        if !rows.is_empty() && rows.iter().all(|r| r.settled) {
            return Ok(());
        }
        if started.elapsed() > timeout {
            let waiting: Vec<String> = rows
                .iter()
                .filter(|r| !r.settled)
                .map(|r| format!("{} ({})", r.name, r.reason))
                .collect();
            return Err(format!(
                "not settled within {timeout:?}: {}",
                waiting.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What reached the simulated ECS, per instance: the proof of what the controller did.
fn print_calls(sandbox: &Sandbox) {
    println!("\nPower calls the simulated ECS received, by answer:");
    let calls = sandbox.sim.calls();
    for instance in sandbox.sim.instances() {
        let mut parts = Vec::new();
        for action in [
            Action::StartInstance,
            Action::StopInstance,
            Action::RebootInstance,
        ] {
            for count in calls.counters(Some(action), Some(&instance.id), None) {
                parts.push(format!(
                    "{action:?} {} x{}",
                    count.outcome.as_str(),
                    count.count
                ));
            }
        }
        let line = if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        };
        println!("  {:<20} {line}", instance.id);
    }
}

async fn keep_running(sandbox: &Sandbox) -> Result<(), String> {
    let dir =
        std::env::temp_dir().join(format!("ecs-power-controller-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("kubeconfig");
    let kube = sandbox
        .kube
        .as_ref()
        .ok_or("the demo runs in-process only")?;
    kube.write_kubeconfig(&path).map_err(|e| e.to_string())?;
    println!(
        "\nStill running. Try:\n  kubectl --kubeconfig {} get ecsi -w\nCtrl-C stops the demo.",
        path.display()
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
