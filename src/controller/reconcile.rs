//! One reconciliation of one EcsInstance: observe → decide → act → record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::connect::credentials_key;
use super::decide::{self, Blocker, Decision, Facts, Mutation, Step, Timings, WaitReason};
use super::health::{Progress, Stall, Verdict};
use super::observe::{EcsConnector, Observer, Target};
use super::record::Record;
use crate::api::{ActionKind, EcsInstance, PowerState, RebootInFlight};
use crate::telemetry::Metrics;
use ecs_client::{Credentials, EcsApi, EcsError, ErrorClass, Instance, InstanceStatus};

/// The field manager of every status write.
pub const MANAGER: &str = "ecs-power-controller";

/// Controller-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Look at every object at least this often, so drift is found and corrected.
    pub resync: Duration,
    pub timings: Timings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            timings: Timings::default(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub connector: Arc<dyn EcsConnector>,
    pub observer: Arc<dyn Observer>,
    pub settings: Settings,
    pub metrics: Metrics,
}

/// Failures that end a reconcile early; kube-runtime requeues the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("EcsInstance {0} has no namespace")]
    NoNamespace(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("encoding the status: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What the credentials Secret gave, or why it gave nothing.
struct LoadedCredentials {
    credentials: Option<Credentials>,
    /// The Secret's resourceVersion: a change resets the backoff.
    secret_version: Option<String>,
}

/// Reconciles one object. Errors are only Kubernetes API failures; every ECS failure is
/// recorded in status and answered with a requeue.
#[instrument(skip_all, fields(namespace, name = %obj.name_any(), instance = %obj.spec.instance_id))]
pub async fn reconcile(obj: Arc<EcsInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = obj.name_any();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    tracing::Span::current().record("namespace", namespace.as_str());
    let api: Api<EcsInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = obj.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut record = Record::new(&previous, obj.meta().generation, now);
    let jitter = rand::random::<f64>();
    // Every status write is conditional on the version the decision was made from (or the one
    // our own intent write produced): a cache that trails the API server must not overwrite
    // what a newer reconcile recorded.
    let mut version = obj.resource_version();

    // Observe: credentials first, then the instance.
    let loaded = match load_credentials(&ctx.client, &obj, &namespace).await? {
        Ok(loaded) => loaded,
        Err((message, secret_version)) => {
            let delay = record.credentials_problem(message, secret_version, jitter);
            return write(&ctx, &api, &obj, version, record, delay).await;
        }
    };
    let backoff_reset = previous.observed_generation != obj.meta().generation
        || (previous.retry.count > 0 && previous.retry.secret_version != loaded.secret_version);
    if backoff_reset {
        record.reset_backoff();
    }
    let target = Target {
        ecs: ctx.connector.connect(loaded.credentials.as_ref()),
        credentials_key: credentials_key(loaded.credentials.as_ref()),
        region: obj.spec.region_id.clone(),
        instance_id: obj.spec.instance_id.clone(),
    };
    let instance = match ctx.observer.observe(&target).await {
        Ok(instance) => instance,
        Err(err) => {
            let delay = record.failed("DescribeInstances", &err, loaded.secret_version, jitter);
            return write(&ctx, &api, &obj, version, record, delay).await;
        }
    };
    record.observed(instance.as_ref());

    // Decide (`backoff_reset` lifts the window of `previous.retry`).
    let decision = decide::decide(&Facts {
        spec: &obj.spec,
        paused: obj.is_paused(),
        status: &previous,
        instance: instance.as_ref(),
        now,
        backoff_reset,
        timings: &ctx.settings.timings,
    });
    record.settle(&decision);

    // Act and record.
    let requeue = act(
        &ctx,
        &api,
        &obj,
        &mut record,
        &mut version,
        &decision,
        instance.as_ref(),
        &target.ecs,
        loaded.secret_version,
        jitter,
    )
    .await?;
    match requeue {
        Some(delay) => write(&ctx, &api, &obj, version, record, delay).await,
        // The intent write lost a race: look again with a fresh object.
        None => Ok(Action::requeue(Duration::from_secs(1))),
    }
}

/// Carries out the decision's step. `None`: nothing was done because the object changed under
/// us (retry right away with a fresh copy). `version` follows our own intent write.
#[allow(clippy::too_many_arguments)]
async fn act(
    ctx: &Context,
    api: &Api<EcsInstance>,
    obj: &EcsInstance,
    record: &mut Record,
    version: &mut Option<String>,
    decision: &Decision,
    instance: Option<&Instance>,
    ecs: &Arc<dyn EcsApi>,
    secret_version: Option<String>,
    jitter: f64,
) -> Result<Option<Duration>, Error> {
    let resync = ctx.settings.resync;
    let spec = &obj.spec;
    let delay = match &decision.step {
        Step::Converged => {
            record.succeeded();
            record.verdict(Verdict::Ready {
                reason: match spec.power_state {
                    PowerState::Running => "InstanceRunning",
                    PowerState::Stopped => "InstanceStopped",
                },
                message: format!(
                    "Instance {} is {} as desired.",
                    spec.instance_id,
                    spec.power_state.as_str()
                ),
            });
            resync
        }
        Step::Wait { reason, after } => {
            record.verdict(wait_verdict(*reason, instance, obj, record));
            *after
        }
        Step::Backoff { until, due } => {
            record.keep_conditions();
            info!(due = ?due, until = %until, "backoff window open; not calling ECS");
            decide::elapsed(*until, record.now()).max(Duration::from_secs(1))
        }
        Step::Blocked(blocker) => {
            record.verdict(blocked_verdict(blocker, obj));
            super::backoff::schedule(ErrorClass::Locked).first
        }
        Step::Paused { due } => {
            record.verdict(Verdict::Idle {
                reason: "Paused",
                message: format!(
                    "Paused by the {} annotation; due: {}. Remove the annotation to act.",
                    crate::api::PAUSED_ANNOTATION,
                    due.as_ref().map_or("nothing", mutation_name)
                ),
            });
            resync
        }
        Step::Call(mutation) => {
            if let Some(token) = mutation.carried_token() {
                let intent = RebootInFlight {
                    token: token.to_string(),
                    start_time_before: instance.and_then(|i| i.start_time.clone()),
                    requested_at: Time(record.now()),
                };
                let Some(written) = write_reboot_intent(api, obj, &intent).await? else {
                    return Ok(None);
                };
                *version = written;
                record.status.reboot_in_flight = Some(intent);
            }
            call(ctx, obj, record, mutation, ecs, secret_version, jitter).await
        }
    };
    Ok(Some(delay))
}

/// Makes the mutating call and records its outcome. Returns when to look again.
async fn call(
    ctx: &Context,
    obj: &EcsInstance,
    record: &mut Record,
    mutation: &Mutation,
    ecs: &Arc<dyn EcsApi>,
    secret_version: Option<String>,
    jitter: f64,
) -> Duration {
    let spec = &obj.spec;
    let (region, id) = (spec.region_id.as_str(), spec.instance_id.as_str());
    let previous_actual = obj.status.as_ref().and_then(|s| s.instance_status);
    let (kind, result) = match mutation {
        Mutation::Start { options, .. } => (
            ActionKind::Start,
            ecs.start_instance(region, id, options).await,
        ),
        Mutation::Stop { options } => (
            ActionKind::Stop,
            ecs.stop_instance(region, id, options).await,
        ),
        Mutation::Reboot { options, .. } => (
            ActionKind::Reboot,
            ecs.reboot_instance(region, id, options).await,
        ),
    };
    let action_name = mutation_name(mutation);
    match result {
        Ok(accepted) => {
            let (token, progress, reason) = match mutation {
                Mutation::Start {
                    satisfies_token, ..
                } => (satisfies_token.clone(), Progress::Starting, "Starting"),
                Mutation::Stop { .. } => (None, Progress::Stopping, "Stopping"),
                Mutation::Reboot { token, .. } => {
                    (Some(token.clone()), Progress::Rebooting, "Rebooting")
                }
            };
            if let Some(token) = &token {
                record.status.last_reboot_token = Some(token.clone());
                record.status.reboot_in_flight = None;
            }
            let drift = matches!(
                (mutation, previous_actual),
                (Mutation::Start { .. }, Some(InstanceStatus::Running))
                    | (Mutation::Stop { .. }, Some(InstanceStatus::Stopped))
            );
            if drift {
                record.event(
                    EventType::Warning,
                    "DriftDetected",
                    action_name,
                    format!(
                        "Instance {id} was {} outside the controller; setting it back to {}.",
                        if matches!(mutation, Mutation::Start { .. }) {
                            "stopped"
                        } else {
                            "started"
                        },
                        spec.power_state.as_str()
                    ),
                );
            }
            record.event(
                EventType::Normal,
                reason,
                action_name,
                format!("{action_name} accepted (RequestId {})", accepted.request_id),
            );
            record.accepted(kind, &accepted.request_id, token, false);
            record.verdict(Verdict::Progressing {
                why: progress,
                message: format!(
                    "{action_name} accepted (RequestId {}); waiting for the instance.",
                    accepted.request_id
                ),
            });
            ctx.settings.timings.transition_poll
        }
        Err(err) if err.is_dry_run_passed() => {
            let request_id = err.request_id().unwrap_or_default().to_string();
            record.accepted(kind, &request_id, None, true);
            record.event(
                EventType::Normal,
                "DryRun",
                action_name,
                format!(
                    "Dry run of {action_name} passed (RequestId {request_id}); nothing changed."
                ),
            );
            record.verdict(Verdict::Idle {
                reason: "DryRun",
                message: format!(
                    "spec.dryRun is set: {action_name} would be accepted (RequestId {request_id}); the instance was not changed."
                ),
            });
            ctx.settings.resync
        }
        Err(err) => {
            // A token-carrying call that may have gone out stays recorded as in flight; one that
            // surely did not is forgotten so it is retried.
            if mutation.carried_token().is_some() && !may_have_executed(&err) {
                record.status.reboot_in_flight = None;
            }
            info!(action = action_name, error = %err, "ECS refused the call");
            record.failed(action_name, &err, secret_version, jitter)
        }
    }
}

/// Transient failures (5xx, no answer, unreadable answer) leave a mutation's fate unknown.
fn may_have_executed(err: &EcsError) -> bool {
    err.class() == ErrorClass::Transient
}

fn mutation_name(mutation: &Mutation) -> &'static str {
    match mutation {
        Mutation::Start { .. } => "StartInstance",
        Mutation::Stop { .. } => "StopInstance",
        Mutation::Reboot { .. } => "RebootInstance",
    }
}

fn wait_verdict(
    reason: WaitReason,
    instance: Option<&Instance>,
    obj: &EcsInstance,
    record: &Record,
) -> Verdict {
    let rebooting = record.status.reboot_in_flight.is_some()
        || obj
            .status
            .as_ref()
            .and_then(|s| s.last_action.as_ref())
            .is_some_and(|a| a.action == ActionKind::Reboot && !a.dry_run);
    let status = instance.map_or(InstanceStatus::Unknown, |i| i.status);
    let (why, message) = match reason {
        WaitReason::Transition(InstanceStatus::Pending) => (
            Progress::WaitingForInstance,
            "The instance is being created (Pending).".to_string(),
        ),
        WaitReason::Transition(s) if rebooting => (
            Progress::Rebooting,
            format!("The instance is rebooting ({s})."),
        ),
        WaitReason::Transition(InstanceStatus::Starting) => (
            Progress::Starting,
            "The instance is starting.".to_string(),
        ),
        WaitReason::Transition(InstanceStatus::Stopping) => (
            Progress::Stopping,
            "The instance is stopping.".to_string(),
        ),
        WaitReason::Transition(s) => (
            Progress::WaitingForInstance,
            format!("Waiting for the instance ({s})."),
        ),
        WaitReason::RebootUnconfirmed => (
            Progress::Rebooting,
            "A reboot was requested; waiting for ECS to show it.".to_string(),
        ),
        WaitReason::RecentStart => (
            Progress::Rebooting,
            "The instance started within the last minute; the reboot is sent once that minute is over, so it can be proven.".to_string(),
        ),
        WaitReason::UnknownStatus => (
            Progress::WaitingForInstance,
            format!("ECS reports a status this controller does not know ({status})."),
        ),
    };
    Verdict::Progressing { why, message }
}

fn blocked_verdict(blocker: &Blocker, obj: &EcsInstance) -> Verdict {
    let spec = &obj.spec;
    match blocker {
        Blocker::InstanceNotFound => Verdict::Stalled {
            why: Stall::InstanceNotFound,
            message: format!(
                "DescribeInstances in {} does not list {}: check spec.instanceId and spec.regionId.",
                spec.region_id, spec.instance_id
            ),
        },
        Blocker::SecurityLock => Verdict::Stalled {
            why: Stall::InstanceLockedForSecurity,
            message: "The instance is locked for security reasons (OperationLocks: security); Start and Reboot are refused until it is lifted in the Alibaba Cloud Security Center.".to_string(),
        },
        Blocker::Locked(reasons) => Verdict::Stalled {
            why: Stall::InstanceLocked,
            message: format!(
                "The instance is locked ({}): settle the account or renew the instance.",
                reasons.join(", ")
            ),
        },
    }
}

/// Records the intent before a call that carries out a reboot token (RebootInstance, or a
/// StartInstance that satisfies one), conditional on the object not having
/// changed since it was read. `Some(version)`: written, the object's new resourceVersion.
/// `None`: it had changed (a stale cache, another writer), so the decision may rest on old facts
/// and must be made again.
async fn write_reboot_intent(
    api: &Api<EcsInstance>,
    obj: &EcsInstance,
    intent: &RebootInFlight,
) -> Result<Option<Option<String>>, Error> {
    let status = json!({ "rebootInFlight": intent });
    let written = patch_status_at(api, obj, obj.resource_version(), status).await?;
    Ok(written.map(|o| o.resource_version()))
}

/// Merge-patches the status, conditional on `version` (the object as it was read, or as our own
/// last write left it). `None`: the object has changed since (409 Conflict).
async fn patch_status_at(
    api: &Api<EcsInstance>,
    obj: &EcsInstance,
    version: Option<String>,
    status: serde_json::Value,
) -> Result<Option<EcsInstance>, Error> {
    let mut patch = json!({ "status": status });
    if let Some(version) = version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    match api
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Writes the finished status, publishes its events, and schedules the next look. The write is
/// conditional on `version`: when the object has moved on, the status is not written and the
/// object is looked at again soon, with a fresh copy. The events still go out: they report calls
/// that were made.
async fn write(
    ctx: &Context,
    api: &Api<EcsInstance>,
    obj: &EcsInstance,
    version: Option<String>,
    record: Record,
    delay: Duration,
) -> Result<Action, Error> {
    let (status, events) = record.finish();
    let mut next_look = delay.min(ctx.settings.resync);
    // At fleet scale most resyncs change nothing: skip the write then.
    if obj.status.as_ref() != Some(&status)
        && patch_status_at(api, obj, version, serde_json::to_value(&status)?)
            .await?
            .is_none()
    {
        info!("the object changed since it was read; status not written, looking again");
        next_look = Duration::from_secs(1);
    }
    let reference = obj.object_ref(&());
    for event in &events {
        if let Err(err) = ctx.recorder.publish(event, &reference).await {
            warn!(error = %err, reason = %event.reason, "could not publish an event");
        }
    }
    Ok(Action::requeue(next_look))
}

/// Reads the referenced Secret. `Err((message, version))`: a problem the user must fix.
async fn load_credentials(
    client: &Client,
    obj: &EcsInstance,
    namespace: &str,
) -> Result<Result<LoadedCredentials, (String, Option<String>)>, Error> {
    let Some(reference) = &obj.spec.credentials_secret_ref else {
        return Ok(Ok(LoadedCredentials {
            credentials: None,
            secret_version: None,
        }));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Err((
            format!(
                "Secret {namespace}/{} (spec.credentialsSecretRef) does not exist: create it with keys accessKeyId and accessKeySecret.",
                reference.name
            ),
            None,
        )));
    };
    let version = secret.resource_version();
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(match Credentials::from_secret_data(&data) {
        Ok(credentials) => Ok(LoadedCredentials {
            credentials: Some(credentials),
            secret_version: version,
        }),
        Err(err) => Err((
            format!("Secret {namespace}/{}: {err}", reference.name),
            version,
        )),
    })
}

/// Requeue after a Kubernetes API failure; ECS failures never get here.
pub fn error_policy(_obj: Arc<EcsInstance>, err: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
