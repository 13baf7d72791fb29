//! What a simulator starts with: instances, keys, transition times, quotas and faults.
//!
//! The same types are the YAML instances file (`simulate --instances FILE`), the admin API's
//! JSON bodies and the library's [`SimConfig`]. Every struct denies unknown fields so a typo in
//! the file is an error naming the field, not a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calls::Action;
use ecs_client::types::{InstanceStatus, StoppedMode};

/// The access key the simulator accepts when none is configured (printed at start-up).
pub(crate) const DEFAULT_ACCESS_KEY_ID: &str = "LTAI5tSimulatorDefault";
/// Its secret. Only ever meaningful against a local simulator.
pub(crate) const DEFAULT_ACCESS_KEY_SECRET: &str = "simulator-secret-not-for-production";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("instances file {path}: {source}")]
    /// The instances file could not be read.
    Read {
        /// The file's path.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    #[error("instances file: {0}")]
    /// The instances file is not valid YAML for a [`SimConfig`] (serde's message names the field).
    Yaml(String),
    #[error("{field}: {problem}")]
    /// A value is out of range; `field` is its path, e.g. `instances[2].id`.
    Invalid {
        /// The value's path.
        field: String,
        /// What is wrong with it and what would do.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Everything a [`crate::Simulator`] starts with. The YAML instances file deserializes into
/// this (minus `listen`, `seed` and `log_capacity`, which are runtime settings).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Where to listen; `127.0.0.1:0` (an ephemeral port) by default.
    #[serde(skip, default = "default_listen")]
    pub listen: SocketAddr,
    /// Seed of the random draws (error rates, latency jitter), for reproducible runs.
    #[serde(skip, default = "default_seed")]
    pub seed: u64,
    /// How many recent requests the log keeps (counters are unbounded). 0 disables the log.
    #[serde(skip, default = "default_log_capacity")]
    pub log_capacity: usize,
    #[serde(default)]
    /// The fleet at start-up.
    pub instances: Vec<InstanceSpec>,
    /// Accepted access keys. Empty: the default key alone.
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    #[serde(default)]
    /// How long Starting/Stopping/Pending last.
    pub transitions: TransitionTimes,
    /// Per-action quota in requests per second; above it, `Throttling.User`.
    #[serde(default)]
    pub quotas: BTreeMap<Action, u32>,
    #[serde(default)]
    /// Random error answers, per action, drawn with [`SimConfig::seed`].
    pub error_rates: ErrorRates,
    #[serde(default)]
    /// Added response latency.
    pub latency: Latency,
    /// Scripted faults: the next `count` calls of an action (for an instance, or any) answer a
    /// code.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_seed() -> u64 {
    0x05ee_dec5_5131
}
fn default_log_capacity() -> usize {
    100_000
}

impl Default for SimConfig {
    /// No instances, the default key, realistic transition times.
    fn default() -> Self {
        Self {
            listen: default_listen(),
            seed: default_seed(),
            log_capacity: default_log_capacity(),
            instances: Vec::new(),
            keys: Vec::new(),
            transitions: TransitionTimes::default(),
            quotas: BTreeMap::new(),
            error_rates: ErrorRates::default(),
            latency: Latency::default(),
            faults: Vec::new(),
        }
    }
}

impl SimConfig {
    /// For tests: no instances, the default key, every transition instantaneous.
    pub fn instant() -> Self {
        Self {
            transitions: TransitionTimes::ZERO,
            ..Self::default()
        }
    }

    /// Adds an instance to the start-up fleet.
    pub fn with_instance(mut self, instance: InstanceSpec) -> Self {
        self.instances.push(instance);
        self
    }

    /// Adds an accepted AccessKey pair.
    pub fn with_key(mut self, id: &str, secret: &str) -> Self {
        self.keys.push(KeySpec {
            id: id.into(),
            secret: secret.into(),
            security_token: None,
        });
        self
    }

    /// Sets the transition times.
    pub fn with_transitions(mut self, transitions: TransitionTimes) -> Self {
        self.transitions = transitions;
        self
    }

    /// Parses and checks the YAML instances file.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The documented default fleet of `simulate` without `--instances`: one instance for each
    /// manifest in `deploy/examples/`, so `demo` (and `kubectl apply -f deploy/examples/`
    /// against a controller pointed at `simulate`) show every behaviour. Running instances
    /// started an hour before the simulator did, so a reboot of them can be proven at once; the
    /// two of the reboot examples on 2026-11-01, before their tokens' times (2026-11-22), so
    /// those tokens are requests even on objects the controller sees for the first time.
    pub fn default_fleet() -> Self {
        let an_hour_ago = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(1))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H:%MZ")
            .to_string();
        let hangzhou = |id: &str| InstanceSpec::new(id, "cn-hangzhou");
        let shanghai = |id: &str| InstanceSpec::new(id, "cn-shanghai");
        let running = |mut spec: InstanceSpec| {
            spec.status = InstanceStatus::Running;
            spec.start_time = Some(an_hour_ago.clone());
            spec
        };
        let booted_before_the_examples = |mut spec: InstanceSpec| {
            spec.status = InstanceStatus::Running;
            spec.start_time = Some("2026-11-01T00:00Z".into());
            spec
        };
        let mut not_ready = shanghai("i-uf6demopending01");
        not_ready.faults = vec![FaultSpec::new(Action::StartInstance, "InstanceNotReady").times(2)];
        let mut overdue = shanghai("i-uf6demooverdue1");
        overdue.overdue = true;
        overdue.locks = vec!["financial".into()];
        Self {
            instances: vec![
                hangzhou("i-bp1demorunning01"),
                running(hangzhou("i-bp1demostopped01")),
                booted_before_the_examples(hangzhou("i-bp1demoreboot001")),
                booted_before_the_examples(hangzhou("i-bp1demohardboot1")),
                running(shanghai("i-uf6demodryrun001")),
                hangzhou("i-bp1demosecret001"),
                running(hangzhou("i-bp1demopaused001")),
                running(hangzhou("i-bp1demoschedule1")),
                // The two-tier pair (deploy/examples/ordered.yaml): down in reverse order
                // when the schedule says Stopped.
                running(hangzhou("i-bp1demoorderdb1")),
                running(hangzhou("i-bp1demoorderapp1")),
                not_ready,
                shanghai("i-uf6demolocked001").lock("security"),
                overdue,
            ],
            ..Self::default()
        }
    }

    /// The keys actually accepted (the default key when none is configured).
    pub fn effective_keys(&self) -> Vec<KeySpec> {
        if self.keys.is_empty() {
            vec![KeySpec {
                id: DEFAULT_ACCESS_KEY_ID.into(),
                secret: DEFAULT_ACCESS_KEY_SECRET.into(),
                security_token: None,
            }]
        } else {
            self.keys.clone()
        }
    }

    /// Checks what serde cannot: unique ids, sane statuses and rates.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, instance) in self.instances.iter().enumerate() {
            instance.validate(&format!("instances[{i}]"))?;
            if !seen.insert(instance.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("instances[{i}].id"),
                    format!("duplicate instance id {:?}", instance.id),
                ));
            }
        }
        for (i, key) in self.keys.iter().enumerate() {
            if key.id.is_empty() || key.secret.is_empty() {
                return Err(ConfigError::invalid(
                    format!("keys[{i}]"),
                    "id and secret must both be non-empty",
                ));
            }
        }
        self.error_rates.validate()?;
        for (i, fault) in self.faults.iter().enumerate() {
            fault.validate(&format!("faults[{i}]"))?;
        }
        Ok(())
    }
}

/// One instance of the fleet.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// The instance id, e.g. `i-abc`.
    pub id: String,
    /// The region the instance lives in (requests for another region do not see it).
    pub region: String,
    /// Initial status: `Pending` (becomes Stopped after `transitions.pending`), `Starting`,
    /// `Running`, `Stopping` or `Stopped` (default).
    #[serde(default = "default_status")]
    pub status: InstanceStatus,
    /// Default: `<region>-a`.
    #[serde(default)]
    pub zone: Option<String>,
    /// Default: `ecs.g7`.
    #[serde(default = "default_family")]
    pub instance_type_family: String,
    /// Default: `<family>.large`.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// `PostPaid` (pay-as-you-go, default) or `PrePaid` (subscription).
    #[serde(default)]
    pub charge_type: ChargeType,
    /// `OperationLocks` reasons: `security`, `financial`, `recycling`, …
    #[serde(default)]
    pub locks: Vec<String>,
    /// Tags (`TagKey` → `TagValue`), returned by DescribeInstances as `Tags.Tag[]`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Account in arrears: Start answers `InsufficientBalance`, Reboot
    /// `InstanceExpiredOrInArrears`.
    #[serde(default)]
    pub overdue: bool,
    /// Subscription expired: Start answers `InstanceExpired`, Reboot
    /// `InstanceExpiredOrInArrears`.
    #[serde(default)]
    pub expired: bool,
    /// A disk in an abnormal state: Start and Reboot answer `DiskError`.
    #[serde(default)]
    pub disk_fault: bool,
    /// No stock of the instance's type in its zone: Start of the instance stopped with
    /// `StopCharging` answers `OperationDenied.NoStock`.
    #[serde(default)]
    pub no_stock: bool,
    /// `ExpiredTime` as reported (`yyyy-MM-ddTHH:mmZ`). Default: `2099-12-31T15:59Z`.
    #[serde(default)]
    pub expired_time: Option<String>,
    /// `StoppedMode` of a Stopped instance (default `KeepCharging`).
    #[serde(default)]
    pub stopped_mode: Option<StoppedMode>,
    /// Initial `StartTime` (`yyyy-MM-ddTHH:mmZ`); default: start-up time for a Running one.
    #[serde(default)]
    pub start_time: Option<String>,
    /// Scripted faults for this instance (`instance` defaults to this one).
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

fn default_status() -> InstanceStatus {
    InstanceStatus::Stopped
}
fn default_family() -> String {
    "ecs.g7".into()
}

impl InstanceSpec {
    /// A Stopped `ecs.g7` pay-as-you-go instance with no locks or flags.
    pub fn new(id: &str, region: &str) -> Self {
        Self {
            id: id.into(),
            region: region.into(),
            status: default_status(),
            zone: None,
            instance_type_family: default_family(),
            instance_type: None,
            charge_type: ChargeType::default(),
            locks: Vec::new(),
            tags: BTreeMap::new(),
            overdue: false,
            expired: false,
            disk_fault: false,
            no_stock: false,
            expired_time: None,
            stopped_mode: None,
            start_time: None,
            faults: Vec::new(),
        }
    }

    /// Starts the instance in `status`.
    pub fn status(mut self, status: InstanceStatus) -> Self {
        self.status = status;
        self
    }

    /// Adds an `OperationLocks` reason, e.g. `security` or `financial`.
    pub fn lock(mut self, reason: &str) -> Self {
        self.locks.push(reason.into());
        self
    }

    /// Sets a tag (`TagKey` → `TagValue`), e.g. the one a tag guard reads.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the instance type family (and so the instance type ECS reports).
    pub fn family(mut self, family: &str) -> Self {
        self.instance_type_family = family.into();
        self
    }

    pub(crate) fn validate(&self, field: &str) -> Result<(), ConfigError> {
        if self.id.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.id"),
                "must not be empty",
            ));
        }
        if self.region.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.region"),
                "must not be empty (e.g. cn-hangzhou)",
            ));
        }
        if self.status == InstanceStatus::Unknown {
            return Err(ConfigError::invalid(
                format!("{field}.status"),
                "must be one of Pending, Starting, Running, Stopping, Stopped",
            ));
        }
        for (name, value) in [
            ("start_time", &self.start_time),
            ("expired_time", &self.expired_time),
        ] {
            if let Some(value) = value
                && ecs_client::types::parse_ecs_time(value).is_none()
            {
                return Err(ConfigError::invalid(
                    format!("{field}.{name}"),
                    format!("{value:?} is not a time like 2026-01-31T08:00Z"),
                ));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            let name = format!("{field}.faults[{i}]");
            fault.validate(&name)?;
            if fault.instance.as_ref().is_some_and(|id| *id != self.id) {
                return Err(ConfigError::invalid(
                    format!("{name}.instance"),
                    "names another instance; put it in the top-level faults list",
                ));
            }
        }
        Ok(())
    }
}

/// `InstanceChargeType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeType {
    #[default]
    /// Pay-as-you-go (the default).
    PostPaid,
    /// Subscription.
    PrePaid,
}

impl ChargeType {
    /// The value ECS reports in `InstanceChargeType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostPaid => "PostPaid",
            Self::PrePaid => "PrePaid",
        }
    }
}

/// An accepted AccessKey pair; with `security_token`, an STS credential whose requests must
/// carry exactly that token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The AccessKey id.
    pub id: String,
    /// The AccessKey secret (never printed: `KeySpec`'s `Debug` redacts it).
    pub secret: String,
    #[serde(default)]
    /// The STS token requests with this key must carry; `None` for a long-term key.
    pub security_token: Option<String>,
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySpec")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How long each transition takes. In the file: seconds (fractions allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransitionTimes {
    /// Pending → Stopped.
    #[serde(with = "secs")]
    pub pending: Duration,
    /// Starting → Running.
    #[serde(with = "secs")]
    pub starting: Duration,
    /// Stopping → Stopped (and the stop half of a reboot).
    #[serde(with = "secs")]
    pub stopping: Duration,
    /// Stopping → Stopped with ForceStop / ForceReboot.
    #[serde(with = "secs")]
    pub force_stopping: Duration,
}

impl TransitionTimes {
    /// Every transition instantaneous: a Start answers and the instance is Running.
    pub const ZERO: Self = Self {
        pending: Duration::ZERO,
        starting: Duration::ZERO,
        stopping: Duration::ZERO,
        force_stopping: Duration::ZERO,
    };

    /// Every transition takes `d`.
    pub fn uniform(d: Duration) -> Self {
        Self {
            pending: d,
            starting: d,
            stopping: d,
            force_stopping: d,
        }
    }
}

impl Default for TransitionTimes {
    /// Roughly what a small Linux instance takes.
    fn default() -> Self {
        Self {
            pending: Duration::from_secs(30),
            starting: Duration::from_secs(15),
            stopping: Duration::from_secs(20),
            force_stopping: Duration::from_secs(5),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!(
                "{secs} is not a duration in seconds (a number ≥ 0)"
            ))
        })
    }
}

/// Global random failures, as fractions of requests (0.0–1.0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRates {
    /// Fraction answered `InternalError` (500).
    pub internal_error: f64,
    /// Fraction answered `ServiceUnavailable` (503).
    pub service_unavailable: f64,
}

impl ErrorRates {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (name, rate) in [
            ("error_rates.internal_error", self.internal_error),
            ("error_rates.service_unavailable", self.service_unavailable),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::invalid(name, "must be between 0.0 and 1.0"));
            }
        }
        if self.internal_error + self.service_unavailable > 1.0 {
            return Err(ConfigError::invalid(
                "error_rates",
                "internal_error + service_unavailable must not exceed 1.0",
            ));
        }
        Ok(())
    }
}

/// Added latency: `fixed_ms` plus a uniform draw in `0..=jitter_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    /// Milliseconds added to every answer.
    pub fixed_ms: u64,
    /// Up to this many milliseconds more, drawn uniformly per answer.
    pub jitter_ms: u64,
}

/// A scripted fault: the next `count` calls of `action` (naming `instance`, or any) answer
/// `code`. In `instances[].faults`, `instance` defaults to that instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The action whose calls answer the fault.
    pub action: Action,
    /// Only calls naming this instance; absent: any call of the action.
    #[serde(default)]
    pub instance: Option<String>,
    /// The error code to answer, e.g. `InternalError`, `InvalidParameter.KMSKeyId.KMSUnauthorized`.
    pub code: String,
    /// How many calls answer it (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Default: the code's documented status (400 for codes the simulator does not know).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Default: the code's documented message.
    #[serde(default)]
    pub message: Option<String>,
    /// Apply the call anyway and answer the error (a response lost after the fact).
    #[serde(default)]
    pub apply: bool,
    /// Extra headers on the error answer: `Retry-After: 30` (seconds, what a gateway in front
    /// of ECS sends with 429/503) or `x-acs-retry-after: 1500` (milliseconds, ECS's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

impl FaultSpec {
    /// The next call of `action` (any instance) answers `code`.
    pub fn new(action: Action, code: &str) -> Self {
        Self {
            action,
            instance: None,
            code: code.into(),
            count: 1,
            http_status: None,
            message: None,
            apply: false,
            headers: BTreeMap::new(),
        }
    }

    /// Adds a header to the error answer (e.g. `Retry-After`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Only calls naming instance `id`.
    pub fn instance(mut self, id: &str) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// The next `n` calls instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.count = n;
        self
    }

    /// The call takes effect anyway and only its answer is the error (a lost response).
    pub fn applied(mut self) -> Self {
        self.apply = true;
        self
    }

    /// The HTTP status of the error answer, instead of the code's usual one.
    pub fn http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub(crate) fn validate(&self, field: &str) -> Result<(), ConfigError> {
        if self.code.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.code"),
                "must not be empty",
            ));
        }
        if let Some(status) = self.http_status
            && !(400..=599).contains(&status)
        {
            return Err(ConfigError::invalid(
                format!("{field}.http_status"),
                "must be an error status (400–599)",
            ));
        }
        for (name, value) in &self.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(value).is_err()
            {
                return Err(ConfigError::invalid(
                    format!("{field}.headers.{name}"),
                    "must be a valid HTTP header name and value",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_file_parses() {
        let config = SimConfig::from_yaml(
            r#"
instances:
  - id: i-one
    region: cn-hangzhou
    status: Running
    instance_type_family: ecs.d1
    charge_type: PrePaid
    locks: [security]
    overdue: true
    expired_time: 2027-01-01T00:00Z
    faults:
      - { action: StartInstance, code: InternalError, count: 2 }
keys:
  - { id: ak, secret: sk }
  - { id: sts-ak, secret: sts-sk, security_token: tok }
transitions: { pending: 1, starting: 0.5, stopping: 2, force_stopping: 0 }
quotas: { StartInstance: 10 }
error_rates: { internal_error: 0.01 }
latency: { fixed_ms: 5, jitter_ms: 10 }
faults:
  - { action: RebootInstance, instance: i-one, code: InvalidParameter.KMSKeyId.KMSUnauthorized, apply: false }
"#,
        )
        .unwrap();
        assert_eq!(config.instances[0].status, InstanceStatus::Running);
        assert_eq!(config.instances[0].faults[0].count, 2);
        assert_eq!(config.transitions.starting, Duration::from_millis(500));
        assert_eq!(config.quotas[&Action::StartInstance], 10);
        assert_eq!(config.faults[0].instance.as_deref(), Some("i-one"));
    }

    #[test]
    fn a_misspelt_field_is_named_in_the_error() {
        let err =
            SimConfig::from_yaml("instances:\n  - id: i-a\n    region: r\n    stauts: Running\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("stauts"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_bad_rates_are_refused() {
        let err = SimConfig::from_yaml(
            "instances:\n  - {id: i-a, region: r}\n  - {id: i-a, region: r}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("instances[1].id"), "{err}");
        let err = SimConfig::from_yaml("error_rates: { internal_error: 2 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("error_rates.internal_error"), "{err}");
        let err = SimConfig::from_yaml("transitions: { starting: -1 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("-1"), "{err}");
    }

    #[test]
    fn the_default_fleet_is_valid_and_spans_two_regions() {
        let fleet = SimConfig::default_fleet();
        fleet.validate().unwrap();
        let regions: std::collections::BTreeSet<_> =
            fleet.instances.iter().map(|i| i.region.as_str()).collect();
        assert_eq!(regions.len(), 2);
    }

    #[test]
    fn key_secrets_do_not_reach_debug_output() {
        let key = KeySpec {
            id: "ak".into(),
            secret: "very-secret".into(),
            security_token: Some("tok-secret".into()),
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("tok-secret"));
    }
}
