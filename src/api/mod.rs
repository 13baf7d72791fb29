//! The custom resources (`ecs.powerctl.io/v1alpha1`): `EcsInstance` here, `EcsPowerSchedule` in
//! [`power_schedule`].
//!
//! The Rust types are the source of truth: `crds/<name>.yaml` is generated from them
//! (`ecs-power-controller crd <name>`, see [`CRDS`]), and a test fails when the two drift apart.

pub mod holiday_calendar;
pub mod power_schedule;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

use ecs_client::{InstanceStatus, PowerAction, StoppedMode};

pub use holiday_calendar::{
    CalendarDay, EcsHolidayCalendar, EcsHolidayCalendarSpec, EcsHolidayCalendarStatus,
};
pub use power_schedule::{
    CalendarReference, EcsPowerSchedule, EcsPowerScheduleSpec, EcsPowerScheduleStatus,
    NextTransition,
};

/// API group of every resource this controller serves.
pub const GROUP: &str = "ecs.powerctl.io";

/// `ecs.powerctl.io/paused: "true"`: observe and report, never mutate.
pub const PAUSED_ANNOTATION: &str = "ecs.powerctl.io/paused";

/// Desired state of one ECS instance. Deleting the object never touches the instance.
// Each printer column repeats `type_ = "string"`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.powerctl.io",
    version = "v1alpha1",
    kind = "EcsInstance",
    plural = "ecsinstances",
    shortname = "ecsi",
    namespaced,
    status = "EcsInstanceStatus",
    doc = "Declares the power state of one Alibaba Cloud ECS instance.",
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instanceId"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionId"),
    printcolumn(
        name = "Desired",
        type_ = "string",
        json_path = ".status.desiredPowerState"
    ),
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.scheduleRef.name"
    ),
    printcolumn(
        name = "Actual",
        type_ = "string",
        json_path = ".status.instanceStatus"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.powerState) != has(self.scheduleRef)").message("set exactly one of spec.powerState (a fixed power state) and spec.scheduleRef (follow an EcsPowerSchedule)"))]
pub struct EcsInstanceSpec {
    /// The ECS instance id, e.g. `i-bp67acfmxazb4ph1234`. Immutable: to manage another instance,
    /// create another EcsInstance.
    #[schemars(length(min = 3, max = 64), regex(pattern = r"^i-[a-z0-9]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceId is immutable: create a new EcsInstance for another instance"))]
    pub instance_id: String,

    /// The region the instance lives in, e.g. `cn-hangzhou`. Immutable.
    #[schemars(
        length(min = 4, max = 64),
        regex(pattern = r"^[a-z]{2,}(-[a-z0-9]+)+$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("regionId is immutable: create a new EcsInstance for another region"))]
    pub region_id: String,

    /// The power state to keep the instance in. Exactly one of `powerState` and `scheduleRef`
    /// is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,

    /// Follow an EcsPowerSchedule in the same namespace instead of a fixed `powerState`: the
    /// instance runs inside the schedule's windows and is stopped outside them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_ref: Option<ScheduleReference>,

    /// Ask for a reboot: any new `token` asks for exactly one reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootRequest>,

    /// Options passed to StartInstance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartSpec>,

    /// Options passed to StopInstance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSpec>,

    /// Send every mutation with `DryRun=true`: ECS checks it, the instance never changes.
    #[serde(default)]
    pub dry_run: bool,

    /// What to do when the instance leaves the desired state the controller brought it to,
    /// by another hand (started or stopped in the console, by a script, by ECS): `Correct`
    /// (default) sets it back; `Report` leaves it and reports `Ready=False`, reason `Drifted`.
    /// Either way a `DriftCorrected` or `DriftDetected` event and the metric
    /// `ecs_power_controller_drift_corrections_total` say so. A new desired state (a spec
    /// change, a schedule boundary) is acted on as usual.
    #[serde(default)]
    pub drift_policy: DriftPolicy,

    /// A Secret in the same namespace with keys `accessKeyId`, `accessKeySecret` and optionally
    /// `securityToken`. Without it the controller's own credentials (environment, RRSA, RAM role)
    /// are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// EcsInstances in the same namespace this one starts after: a start of this instance
    /// (from a schedule, a `powerState` edit, an override or a drift correction) waits until
    /// each of them is `Running` and `Ready`, and a stop of one of them waits until this one
    /// is `Stopped` (down in reverse order). While waiting: `Ready=False`, reason
    /// `WaitingForDependency`. A cycle stalls (reason `DependencyCycle`). Reboots are not
    /// ordered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"))]
    pub start_after: Vec<String>,
}

/// The power states a user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PowerState {
    Running,
    Stopped,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Stopped => "Stopped",
        }
    }
}

/// What the controller does about drift: an instance that left the desired state it was
/// brought to, by another hand.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DriftPolicy {
    /// Set the instance back to the desired state.
    #[default]
    Correct,
    /// Leave it, and report it: `Ready=False` with reason `Drifted`, an event, the metric.
    Report,
}

impl DriftPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Correct => "Correct",
            Self::Report => "Report",
        }
    }
}

/// A reboot request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebootRequest {
    /// Any new value asks for exactly one reboot (a timestamp is a good choice).
    #[schemars(length(min = 1, max = 253))]
    pub token: String,
    /// `Soft` (default) stops the OS cleanly; `Hard` is a power cycle (`ForceStop=true`).
    #[serde(default)]
    pub mode: RebootMode,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum RebootMode {
    #[default]
    Soft,
    Hard,
}

/// StartInstance options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartSpec {
    /// Recover local disks on start (D1, I1 and I2 families only).
    #[serde(default)]
    pub init_local_disk: bool,
}

/// StopInstance options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopSpec {
    /// Power off without a clean OS shutdown (`ForceStop=true`).
    #[serde(default)]
    pub force: bool,
    /// `KeepCharging` (default) or `StopCharging` (releases vCPU and memory; a later start may
    /// find no stock).
    #[serde(default)]
    pub stopped_mode: StoppedMode,
}

/// A Secret in the EcsInstance's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// An EcsPowerSchedule in the EcsInstance's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleReference {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// What the controller last saw and did.
///
/// Optional fields serialize as `null` (never skipped) so that a merge patch of the whole status
/// clears what is no longer true.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = kubernetes_integer_formats)]
pub struct EcsInstanceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// The power state the controller keeps the instance in now: `spec.powerState`, or what
    /// the schedule (or an override of it) says. Unset while the schedule cannot be read.
    #[serde(default)]
    pub desired_power_state: Option<PowerState>,
    /// The next change of the desired state (schedules and overrides only).
    #[serde(default)]
    pub next_transition: Option<NextTransition>,
    /// The override annotations as the controller last read them (schedules only).
    #[serde(default)]
    pub power_override: Option<OverrideStatus>,
    /// The instance's status as ECS last reported it.
    #[serde(default)]
    pub instance_status: Option<InstanceStatus>,
    /// The instance's last start as ECS reports it (minute precision).
    #[serde(default)]
    pub start_time: Option<String>,
    /// `OperationLocks` reasons (`security`, `financial`, …).
    #[serde(default)]
    pub lock_reasons: Vec<String>,
    /// The spec's reboot token once it is settled: carried out, skipped, satisfied by a start
    /// or a later boot, adopted, or recognised as already done (see `rebootHistory`).
    #[serde(default)]
    pub last_reboot_token: Option<String>,
    /// The last reboot tokens settled, oldest first, at most 16 (`REBOOT_HISTORY_LIMIT`): a token
    /// listed here is never carried out again (a GitOps revert is not a request).
    #[serde(default)]
    #[schemars(length(max = REBOOT_HISTORY_LIMIT))]
    pub reboot_history: Vec<RebootRecord>,
    /// The spec's reboot token while the controller has seen it and not yet carried it out
    /// (waiting out a recent start, a backoff, a pause): when the spec moves on to another
    /// token first, this one goes into `rebootHistory` as `Superseded`.
    #[serde(default)]
    pub pending_reboot_token: Option<String>,
    /// A reboot recorded before RebootInstance is called, so a controller that dies mid-way
    /// decides from the instance, not from memory, whether the call went out.
    #[serde(default)]
    pub reboot_in_flight: Option<RebootInFlight>,
    /// The last mutating call ECS accepted.
    #[serde(default)]
    pub last_action: Option<LastAction>,
    /// When this object claimed its ECS instance: written by its first reconcile as the owner
    /// and, at the latest, before its first StartInstance, StopInstance or RebootInstance. Among
    /// EcsInstances naming one instance, an object that has claimed it keeps it: another object
    /// never takes it over while this one exists (see "Security" in the README). Cleared on an
    /// object that finds another one owns its instance.
    #[serde(default)]
    pub claimed_at: Option<MicroTime>,
    /// Backoff state, kept here so a restarted controller does not hammer the API.
    #[serde(default)]
    pub retry: RetryStatus,
    /// Set while the instance is out of the desired state the controller had brought it to,
    /// by another hand (drift): what was seen, and when first. Cleared once it is back (by
    /// itself, or set back by the controller), or the desired state changes.
    #[serde(default)]
    pub drift: Option<DriftStatus>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// What the override annotations said at the last look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideStatus {
    /// `Active` (it decides the desired state), `Expired` or `Invalid` (both ignored).
    pub state: OverrideState,
    #[serde(default)]
    pub power_state: Option<PowerState>,
    #[serde(default)]
    pub until: Option<Time>,
    /// Why an invalid override is ignored, naming the annotation.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OverrideState {
    Active,
    Expired,
    Invalid,
}

/// The intent of a reboot, written before the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebootInFlight {
    pub token: String,
    /// The instance's StartTime when the reboot was decided; a later one proves the reboot.
    #[serde(default)]
    pub start_time_before: Option<String>,
    pub requested_at: Time,
}

/// How many settled reboot tokens `status.rebootHistory` keeps (the oldest is dropped).
pub const REBOOT_HISTORY_LIMIT: usize = 16;

/// A reboot token settled, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebootRecord {
    pub token: String,
    /// When it was settled (for a reboot: when RebootInstance was sent).
    pub time: Time,
    pub outcome: RebootOutcome,
}

/// How a reboot token was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RebootOutcome {
    /// RebootInstance carried it out.
    Rebooted,
    /// The instance was stopped: the StartInstance that booted it carried it out.
    Started,
    /// The desired power state was Stopped: recorded without a reboot.
    Skipped,
    /// It was in the spec when the controller first saw the object: taken as done, no call.
    Adopted,
    /// A time token: the instance booted after that time, which satisfies it.
    BootedAfter,
    /// The controller saw it pending, and the spec moved on to another token before it was
    /// carried out: the newer request replaces it, and a revert to it is not a request.
    Superseded,
}

impl RebootOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rebooted => "Rebooted",
            Self::Started => "Started",
            Self::Skipped => "Skipped",
            Self::Adopted => "Adopted",
            Self::BootedAfter => "BootedAfter",
            Self::Superseded => "Superseded",
        }
    }
}

/// A mutating call and ECS's answer to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastAction {
    pub action: PowerAction,
    pub request_id: String,
    pub time: Time,
    /// The reboot token this action carried out, if any.
    #[serde(default)]
    pub token: Option<String>,
    /// True when the call was a dry run (ECS checked it; nothing changed).
    #[serde(default)]
    pub dry_run: bool,
}

/// Drift as first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// What ECS showed when the drift was first seen (`Running` or `Starting` while `Stopped` is
    /// desired; `Stopped` or `Stopping` while `Running` is).
    pub instance_status: InstanceStatus,
    /// When the controller first saw it.
    pub seen_at: Time,
}

/// Per-object backoff.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// Consecutive failures of the same kind of step.
    #[serde(default)]
    pub count: u32,
    /// No mutating call before this time.
    #[serde(default)]
    pub next_attempt_after: Option<Time>,
    #[serde(default)]
    pub last_error_code: Option<String>,
    /// The `resourceVersion` of the credentials Secret when the failures began: a change of the
    /// Secret resets the backoff.
    #[serde(default)]
    pub secret_version: Option<String>,
}

impl EcsInstance {
    /// True when the paused annotation is set to `"true"`.
    pub fn is_paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The integer `format`s Kubernetes knows are `int32` and `int64`; schemars names Rust's widths
/// (`uint32`, `uint8`, `int16`...), which a real API server accepts with a warning on every apply
/// (`unrecognized format "uint32"`). Applied (by `#[schemars(transform = ...)]`) to the status
/// types, so the schema states the Rust type's range instead: `uint32` becomes `int64` with
/// `maximum` 4294967295 (a value the controller could not read back is refused by the server),
/// the narrower widths `int32` with their own bounds, `uint64` `int64`.
pub fn kubernetes_integer_formats(schema: &mut schemars::Schema) {
    fn rewrite(schema: &mut schemars::Schema) {
        let (format, maximum) = match schema.get("format").and_then(|f| f.as_str()) {
            Some("uint32") => ("int64", Some(u64::from(u32::MAX))),
            Some("uint16") => ("int32", Some(u64::from(u16::MAX))),
            Some("uint8") => ("int32", Some(u64::from(u8::MAX))),
            Some("int16" | "int8") => ("int32", None),
            Some("uint64" | "uint" | "int") => ("int64", None),
            _ => return,
        };
        schema.insert("format".into(), format.into());
        if let Some(maximum) = maximum
            && schema.get("maximum").is_none()
        {
            schema.insert("maximum".into(), maximum.into());
        }
    }
    use schemars::transform::Transform;
    schemars::transform::RecursiveTransform(rewrite).transform(schema);
}

/// Builds one CRD from the Rust types.
pub type CrdFn = fn() -> CustomResourceDefinition;

/// Every CRD of the project: the file stem under `crds/` and the definition.
pub const CRDS: &[(&str, CrdFn)] = &[
    ("ecsinstance", EcsInstance::crd),
    ("ecspowerschedule", EcsPowerSchedule::crd),
    ("ecsholidaycalendar", EcsHolidayCalendar::crd),
];

/// A CRD as YAML, exactly as `crds/<name>.yaml` holds it.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(crd)
}

impl EcsInstanceSpec {
    /// Only what is required: `instance_id` in `region_id` held in `power_state`, with no
    /// reboot token, no start or stop options, and the controller's own credentials.
    pub fn new(instance_id: &str, region_id: &str, power_state: PowerState) -> Self {
        Self {
            instance_id: instance_id.into(),
            region_id: region_id.into(),
            power_state: Some(power_state),
            schedule_ref: None,
            reboot: None,
            start: None,
            stop: None,
            dry_run: false,
            drift_policy: DriftPolicy::Correct,
            credentials_secret_ref: None,
            start_after: Vec::new(),
        }
    }

    /// [`EcsInstanceSpec::new`] in cn-hangzhou (tests).
    #[cfg(test)]
    pub(crate) fn minimal(instance_id: &str, power_state: PowerState) -> Self {
        Self::new(instance_id, "cn-hangzhou", power_state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for (name, crd) in CRDS {
            let generated = crd_yaml(&crd()).unwrap();
            let committed =
                std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap_or_default();
            assert!(
                generated == committed,
                "crds/{name}.yaml is out of date: run `cargo run -- crd {name} > crds/{name}.yaml`"
            );
        }
        // kustomize applies exactly these files.
        let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
        let listed: Vec<&str> = kustomization
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .collect();
        let expected: Vec<String> = CRDS.iter().map(|(n, _)| format!("{n}.yaml")).collect();
        assert_eq!(listed, expected, "crds/kustomization.yaml resources");
    }

    /// Every `format` in the generated CRDs is one the API server knows (it warns on any other, on
    /// every apply); the integer ones are int32/int64 (crates/envtest's suite checks the same on a
    /// real server).
    #[test]
    fn every_schema_format_is_one_kubernetes_knows() {
        const KNOWN: &[&str] = &[
            "bsonobjectid",
            "uri",
            "email",
            "hostname",
            "ipv4",
            "ipv6",
            "cidr",
            "mac",
            "uuid",
            "uuid3",
            "uuid4",
            "uuid5",
            "isbn",
            "isbn10",
            "isbn13",
            "creditcard",
            "ssn",
            "hexcolor",
            "rgbcolor",
            "byte",
            "password",
            "date",
            "duration",
            "datetime",
            "date-time",
            "int32",
            "int64",
            "float",
            "double",
        ];
        fn walk(path: &str, v: &serde_json::Value, found: &mut Vec<(String, String)>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(f) = map.get("format").and_then(|f| f.as_str()) {
                        found.push((path.to_string(), f.to_string()));
                    }
                    for (k, v) in map {
                        walk(&format!("{path}.{k}"), v, found);
                    }
                }
                serde_json::Value::Array(items) => {
                    for v in items {
                        walk(path, v, found);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for (name, crd) in CRDS {
            walk(name, &serde_json::to_value(crd()).unwrap(), &mut found);
        }
        let unknown: Vec<_> = found
            .iter()
            .filter(|(_, f)| !KNOWN.contains(&f.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "formats Kubernetes does not know: {unknown:?}"
        );
        // The u32 counters keep their range: int64 bounded by u32::MAX.
        let crd = serde_json::to_value(EcsInstance::crd()).unwrap();
        let count = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["retry"]["properties"]["count"];
        assert_eq!(count["format"], "int64");
        assert_eq!(count["maximum"].as_f64(), Some(f64::from(u32::MAX)));
    }

    #[test]
    fn the_issue_example_parses() {
        let yaml = r#"
apiVersion: ecs.powerctl.io/v1alpha1
kind: EcsInstance
metadata: {name: web-1, namespace: default}
spec:
  instanceId: i-bp67acfmxazb4ph1234
  regionId: cn-hangzhou
  powerState: Running
  reboot: {token: "2026-11-22T10:00:00Z", mode: Soft}
  start: {initLocalDisk: false}
  stop: {force: false, stoppedMode: KeepCharging}
  dryRun: false
  credentialsSecretRef: {name: ecs-credentials}
"#;
        let obj: EcsInstance = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(obj.spec.power_state, Some(PowerState::Running));
        assert_eq!(obj.spec.reboot.unwrap().mode, RebootMode::Soft);
        assert_eq!(
            obj.spec.stop.unwrap().stopped_mode,
            StoppedMode::KeepCharging
        );
    }

    #[test]
    fn paused_annotation() {
        let mut obj = EcsInstance::new("x", EcsInstanceSpec::minimal("i-a", PowerState::Running));
        assert!(!obj.is_paused());
        obj.metadata.annotations =
            Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        assert!(obj.is_paused());
    }
}
