//! Everything the controller is configured with, in one tree.
//!
//! [`Config`] is built from the `run` flags in one place (`cli::run`), and directly by
//! the demo, the benchmark and the tests. It is plain data: no clap derives (the flags are the
//! command's business), no behaviour beyond defaults. Every other controller module reads its
//! part of the tree; none defines settings of its own.

use std::time::Duration;

use ecs_client::client::MAX_IDS_PER_CALL;

/// The controller's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch one namespace (`None`: all).
    pub namespace: Option<String>,
    /// Only objects matching this label selector (for sharding across deployments).
    pub selector: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Look at every object at least this often, so drift is found and corrected.
    pub resync: Duration,
    /// What the decisions wait for.
    pub timings: Timings,
    /// How often the Secrets of objects in a credentials backoff are looked at (by name), so
    /// that fixing or rotating one retries at once.
    pub secret_recheck: Duration,
    /// Coalesce observations and mutations into ECS batch calls (`None`: one call per object).
    pub batch: Option<BatchSettings>,
    /// Leader election; `None` runs unconditionally (one replica).
    pub lease: Option<LeaseSettings>,
    /// The `reportingController` of events.
    pub reporter: String,
    /// The `reportingInstance` of events (the pod name).
    pub instance: Option<String>,
    /// A Namespace label selector: only EcsInstances in matching namespaces may use the
    /// controller's own credentials (`None`: every namespace may).
    pub shared_credentials_selector: Option<String>,
    /// An ECS tag that must list an EcsInstance's namespace before the controller starts, stops
    /// or reboots its instance (`None`: no such check).
    pub instance_tag_guard: Option<String>,
    /// Added to the clock where power schedules are evaluated; zero in production. The
    /// scenarios and the demo stand a few seconds before a schedule's boundary this way,
    /// instead of waiting for 08:00. Nothing else (backoff, StartTime checks, status times)
    /// sees the shift.
    pub schedule_clock_offset: jiff::SignedDuration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            selector: None,
            concurrency: 16,
            resync: Duration::from_secs(300),
            timings: Timings::default(),
            secret_recheck: Duration::from_secs(10),
            batch: None,
            lease: None,
            reporter: "ecs-power-controller".to_string(),
            instance: None,
            shared_credentials_selector: None,
            instance_tag_guard: None,
            schedule_clock_offset: jiff::SignedDuration::ZERO,
        }
    }
}

/// Timings the decision depends on.
#[derive(Clone, Debug)]
pub struct Timings {
    /// How often to look at an instance that is moving (Starting, Stopping, Pending).
    pub transition_poll: Duration,
    /// How long after a reboot call (or a crash around it) we wait for ECS to show the reboot
    /// before concluding that the call never went out.
    pub reboot_confirmation_grace: Duration,
    /// How far past the end of the StartTime minute the clock must be before a reboot is sent.
    /// StartTime has minute precision: a reboot inside the minute of the last start would leave
    /// it unchanged, and then a crash could not be told apart from a call never made.
    pub start_time_margin: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            transition_poll: Duration::from_secs(5),
            reboot_confirmation_grace: Duration::from_secs(60),
            start_time_margin: Duration::from_secs(30),
        }
    }
}

/// How long calls wait for company, and how many share one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// The longest any call waits before its batch is sent.
    pub window: Duration,
    /// A batch that no call has joined for this long is sent before the window ends.
    pub quiet: Duration,
    /// Calls per batch (ECS takes at most 100 ids).
    pub max_batch: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(50),
            quiet: Duration::from_millis(10),
            max_batch: MAX_IDS_PER_CALL,
        }
    }
}

impl BatchSettings {
    /// Within what ECS and the coalescer can do: `quiet` no longer than `window`, 1 to 100 calls.
    pub(crate) fn normalised(self) -> Self {
        Self {
            window: self.window,
            quiet: self.quiet.min(self.window),
            max_batch: self.max_batch.clamp(1, MAX_IDS_PER_CALL),
        }
    }
}

/// Lease timings (client-go's defaults are 15 s / 10 s / 2 s).
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
    /// The leader steps down when it has not renewed for this long (< `duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates retry.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's timings for the Lease `name` in `namespace`, held by `identity`.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}
