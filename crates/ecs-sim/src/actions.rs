//! The ECS actions: parameters in, JSON body (or error) out, state changed.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::calls::{Action, Outcome};
use crate::codes::SimError;
use crate::fleet::{InstanceRecord, PowerOp};
use crate::state::{Shared, lock};
use ecs_client::types::{InstanceStatus, PowerAction, StoppedMode};

/// Merged query and form parameters (a later value of a repeated name wins).
pub(crate) struct Params<'a> {
    map: HashMap<&'a str, &'a str>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(pairs: impl IntoIterator<Item = &'a (String, String)>) -> Self {
        Self {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }

    /// A parameter, treating an empty value as absent (as ECS does).
    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.map.get(name).copied().filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&'a str, SimError> {
        self.get(name)
            .ok_or_else(|| SimError::missing_parameter(name))
    }

    /// Booleans case-insensitively: the Python SDK sends `True`/`False`.
    fn flag(&self, name: &str) -> Result<bool, SimError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(SimError::invalid_parameter(
                name,
                &format!("{v:?} is not true or false"),
            )),
        }
    }

    fn number(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, SimError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(SimError::invalid_parameter(
                name,
                &format!(
                    "{raw:?} is not a number in {}..={}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// `Prefix.1`, `Prefix.2`, … in index order, at most 100.
    fn indexed(&self, prefix: &str) -> Result<Vec<String>, SimError> {
        let mut found: Vec<(u32, &str)> = self
            .map
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
                (!v.is_empty()).then_some((index, *v))
            })
            .collect();
        if found.len() > 100 {
            return Err(SimError::invalid_parameter(prefix, "at most 100 values"));
        }
        found.sort_unstable();
        Ok(found.into_iter().map(|(_, v)| v.to_string()).collect())
    }
}

/// An action's answer: the body (without `RequestId`) or the error, and the per-instance
/// outcomes for the counters.
pub(crate) struct Answer {
    pub result: Result<Value, SimError>,
    pub instances: Vec<(String, Outcome)>,
}

impl Answer {
    fn fail(error: SimError) -> Self {
        Self {
            result: Err(error),
            instances: Vec::new(),
        }
    }
}

pub(crate) fn dispatch(shared: &Shared, action: Action, params: &Params<'_>) -> Answer {
    match action {
        Action::DescribeInstances => describe_instances(shared, params),
        Action::DescribeInstanceStatus => describe_instance_status(shared, params),
        Action::StartInstance | Action::StopInstance | Action::RebootInstance => {
            power(shared, action, params)
        }
        Action::StartInstances | Action::StopInstances | Action::RebootInstances => {
            batch(shared, action, params)
        }
    }
}

fn stopped_mode(params: &Params<'_>) -> Result<Option<StoppedMode>, SimError> {
    match params.get("StoppedMode") {
        None => Ok(None),
        Some("KeepCharging") => Ok(Some(StoppedMode::KeepCharging)),
        Some("StopCharging") => Ok(Some(StoppedMode::StopCharging)),
        Some(other) => Err(SimError::invalid_parameter(
            "StoppedMode",
            &format!("{other:?} is not KeepCharging or StopCharging"),
        )),
    }
}

/// The operation an action asks for, with its options read from the parameters.
fn power_op(action: Action, params: &Params<'_>) -> Result<PowerOp, SimError> {
    let Some((power, batch)) = action.power_action() else {
        return Err(SimError::known("InvalidParameter"));
    };
    Ok(match power {
        PowerAction::Start => {
            params.flag("InitLocalDisk")?;
            PowerOp::Start
        }
        PowerAction::Stop => PowerOp::Stop {
            force: params.flag("ForceStop")?,
            mode: stopped_mode(params)?,
        },
        // The batch form calls it ForceReboot.
        PowerAction::Reboot => PowerOp::Reboot {
            force: params.flag(if batch { "ForceReboot" } else { "ForceStop" })?,
        },
    })
}

/// StartInstance, StopInstance, RebootInstance.
fn power(shared: &Shared, action: Action, params: &Params<'_>) -> Answer {
    let id = match params.required("InstanceId") {
        Ok(id) => id.to_string(),
        Err(e) => return Answer::fail(e),
    };
    let parsed = power_op(action, params).and_then(|op| Ok((op, params.flag("DryRun")?)));
    let (op, dry_run) = match parsed {
        Ok(p) => p,
        Err(e) => return Answer::fail(e),
    };
    let region = params.get("RegionId");
    let now = shared.clock.now();
    let fired = lock(&shared.faults).take(action, Some(&id));
    let mut fleet = lock(&shared.fleet);
    let result = match fired {
        Some(fired) => {
            if fired.apply && !dry_run && fleet.check(&id, op, now).is_ok() {
                fleet.apply(&id, op, now);
            }
            Err(fired.error)
        }
        None => in_region(fleet.get(&id), region)
            .and_then(|_| fleet.check(&id, op, now))
            .and_then(|_| {
                if dry_run {
                    Err(SimError::known("DryRunOperation"))
                } else {
                    fleet.apply(&id, op, now);
                    Ok(json!({}))
                }
            }),
    };
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::error(&e.code),
    };
    Answer {
        result,
        instances: vec![(id, outcome)],
    }
}

/// An instance named with a RegionId it is not in does not exist, as far as that region's
/// endpoint knows.
fn in_region<'a>(
    record: Option<&'a InstanceRecord>,
    region: Option<&str>,
) -> Result<&'a InstanceRecord, SimError> {
    match record {
        Some(r) if region.is_none_or(|want| want == r.region) => Ok(r),
        _ => Err(SimError::known("InvalidInstanceId.NotFound")),
    }
}

/// StartInstances, StopInstances, RebootInstances.
fn batch(shared: &Shared, action: Action, params: &Params<'_>) -> Answer {
    let prepared = (|| {
        let region = params.required("RegionId")?;
        let ids = params.indexed("InstanceId")?;
        if ids.is_empty() {
            return Err(SimError::missing_parameter("InstanceId.1"));
        }
        let all_together = match params.get("BatchOptimization") {
            None | Some("AllTogether") => true,
            Some("SuccessFirst") => false,
            Some(other) => {
                return Err(SimError::invalid_parameter(
                    "BatchOptimization",
                    &format!("{other:?} is not AllTogether or SuccessFirst"),
                ));
            }
        };
        Ok((
            region,
            ids,
            all_together,
            power_op(action, params)?,
            params.flag("DryRun")?,
        ))
    })();
    let (region, ids, all_together, op, dry_run) = match prepared {
        Ok(p) => p,
        Err(e) => return Answer::fail(e),
    };
    let now = shared.clock.now();
    let mut faults = lock(&shared.faults);
    let mut fleet = lock(&shared.fleet);
    // Every instance's precheck, in the order given.
    let checks: Vec<(String, Result<InstanceStatus, SimError>, bool)> = ids
        .into_iter()
        .map(|id| match faults.take(action, Some(&id)) {
            Some(fired) => (id, Err(fired.error), fired.apply),
            None => {
                let check =
                    in_region(fleet.get(&id), Some(region)).and_then(|_| fleet.check(&id, op, now));
                (id, check, false)
            }
        })
        .collect();
    drop(faults);
    let first_error = checks
        .iter()
        .find_map(|(_, c, _)| c.as_ref().err().cloned());
    if dry_run || all_together {
        let refusal = match first_error {
            Some(e) => Some(e),
            None if dry_run => Some(SimError::known("DryRunOperation")),
            None => None,
        };
        if let Some(error) = refusal {
            let outcomes = checks
                .iter()
                .map(|(id, c, _)| match c {
                    Err(e) => (id.clone(), Outcome::error(&e.code)),
                    Ok(_) => (id.clone(), Outcome::error(&error.code)),
                })
                .collect();
            return Answer {
                result: Err(error),
                instances: outcomes,
            };
        }
    }
    let mut responses = Vec::with_capacity(checks.len());
    let mut outcomes = Vec::with_capacity(checks.len());
    for (id, check, apply_anyway) in checks {
        let current = fleet.get(&id).map(|r| r.status(now));
        match check {
            Ok(_) => {
                let t = fleet.apply(&id, op, now);
                responses.push(json!({
                    "InstanceId": id,
                    "Code": "200",
                    "Message": "success",
                    "PreviousStatus": t.map(|t| t.previous.as_str()).unwrap_or_default(),
                    "CurrentStatus": t.map(|t| t.current.as_str()).unwrap_or_default(),
                }));
                outcomes.push((id, Outcome::Ok));
            }
            Err(e) => {
                let mut after = current;
                if apply_anyway && fleet.check(&id, op, now).is_ok() {
                    after = fleet.apply(&id, op, now).map(|t| t.current);
                }
                responses.push(json!({
                    "InstanceId": id,
                    "Code": e.code,
                    "Message": e.message,
                    "PreviousStatus": current.map(InstanceStatus::as_str).unwrap_or_default(),
                    "CurrentStatus": after.map(InstanceStatus::as_str).unwrap_or_default(),
                }));
                outcomes.push((id, Outcome::error(&e.code)));
            }
        }
    }
    Answer {
        result: Ok(json!({ "InstanceResponses": { "InstanceResponse": responses } })),
        instances: outcomes,
    }
}

/// Which page of a listing to answer.
enum Paging {
    /// `MaxResults` + `NextToken` (the token is the last id of the previous page).
    Token { max: usize, after: Option<String> },
    /// `PageSize` + `PageNumber` (from 1).
    Number { size: usize, number: usize },
}

fn describe_instances(shared: &Shared, params: &Params<'_>) -> Answer {
    let prepared = (|| {
        let region = params.required("RegionId")?;
        let ids: Option<Vec<String>> = match params.get("InstanceIds") {
            None => None,
            Some(raw) => {
                let ids: Vec<String> = serde_json::from_str(raw)
                    .map_err(|_| SimError::known("InvalidInstanceIds.Malformed"))?;
                if ids.len() > 100 {
                    return Err(SimError::invalid_parameter(
                        "InstanceIds",
                        "at most 100 ids",
                    ));
                }
                Some(ids)
            }
        };
        let paging = if params.get("MaxResults").is_some() || params.get("NextToken").is_some() {
            Paging::Token {
                max: params.number("MaxResults", 10, 1..=100)? as usize,
                after: params.get("NextToken").map(str::to_string),
            }
        } else {
            Paging::Number {
                size: params.number("PageSize", 10, 1..=100)? as usize,
                number: params.number("PageNumber", 1, 1..=u32::MAX as u64)? as usize,
            }
        };
        Ok((region, ids, paging, params.get("Status")))
    })();
    let (region, ids, paging, status_filter) = match prepared {
        Ok(p) => p,
        Err(e) => return Answer::fail(e),
    };
    let named: Vec<(String, Outcome)> = ids
        .iter()
        .flatten()
        .map(|id| (id.clone(), Outcome::Ok))
        .collect();
    let fired = {
        let mut faults = lock(&shared.faults);
        match &ids {
            Some(ids) => ids
                .iter()
                .find_map(|id| faults.take(Action::DescribeInstances, Some(id))),
            None => faults.take(Action::DescribeInstances, None),
        }
    };
    if let Some(fired) = fired {
        let code = fired.error.code.clone();
        return Answer {
            result: Err(fired.error),
            instances: named
                .into_iter()
                .map(|(id, _)| (id, Outcome::Error(code.clone())))
                .collect(),
        };
    }
    let now = shared.clock.now();
    let fleet = lock(&shared.fleet);
    let matches = |r: &&InstanceRecord| {
        r.region == region && status_filter.is_none_or(|s| r.status(now).as_str() == s)
    };
    // Candidates in id order (the order NextToken pages through).
    let mut selected: Vec<&InstanceRecord> = Vec::new();
    let total;
    let mut next_token = String::new();
    match (&ids, &paging) {
        (Some(ids), _) => {
            let mut records: Vec<&InstanceRecord> = ids
                .iter()
                .filter_map(|id| fleet.get(id))
                .filter(matches)
                .collect();
            records.sort_by(|a, b| a.id.cmp(&b.id));
            records.dedup_by(|a, b| a.id == b.id);
            total = records.len();
            page(&records, &paging, &mut selected, &mut next_token);
        }
        (None, Paging::Token { max, after }) => {
            total = if status_filter.is_none() {
                fleet.region_len(region)
            } else {
                fleet
                    .region_ids(region, None)
                    .filter_map(|id| fleet.get(id))
                    .filter(matches)
                    .count()
            };
            let mut iter = fleet
                .region_ids(region, after.as_deref())
                .filter_map(|id| fleet.get(id))
                .filter(matches);
            selected.extend(iter.by_ref().take(*max));
            if iter.next().is_some()
                && let Some(last) = selected.last()
            {
                next_token = last.id.clone();
            }
        }
        (None, Paging::Number { .. }) => {
            let records: Vec<&InstanceRecord> = fleet
                .region_ids(region, None)
                .filter_map(|id| fleet.get(id))
                .filter(matches)
                .collect();
            total = records.len();
            page(&records, &paging, &mut selected, &mut next_token);
        }
    }
    let rows: Vec<(String, Value)> = selected
        .iter()
        .map(|r| (r.id.clone(), instance_json(r, now)))
        .collect();
    // A row missing from this answer (a scripted omission). The fleet is let go first: the
    // power calls lock the faults, then the fleet.
    drop(fleet);
    let before = rows.len();
    let instances: Vec<Value> = {
        let mut faults = lock(&shared.faults);
        rows.into_iter()
            .filter(|(id, _)| !faults.take_omission(id))
            .map(|(_, row)| row)
            .collect()
    };
    let total = total - (before - instances.len());
    let (page_size, page_number) = match paging {
        Paging::Token { max, .. } => (max, 1),
        Paging::Number { size, number } => (size, number),
    };
    Answer {
        result: Ok(json!({
            "TotalCount": total,
            "PageSize": page_size,
            "PageNumber": page_number,
            "NextToken": next_token,
            "Instances": { "Instance": instances },
        })),
        instances: named,
    }
}

/// Cuts one page out of `records` (already in id order).
fn page<'a>(
    records: &[&'a InstanceRecord],
    paging: &Paging,
    out: &mut Vec<&'a InstanceRecord>,
    next_token: &mut String,
) {
    match paging {
        Paging::Token { max, after } => {
            let start = match after {
                Some(after) => records.partition_point(|r| r.id.as_str() <= after.as_str()),
                None => 0,
            };
            let end = (start + max).min(records.len());
            out.extend_from_slice(&records[start..end]);
            if end < records.len() {
                *next_token = records[end - 1].id.clone();
            }
        }
        Paging::Number { size, number } => {
            out.extend(
                records
                    .iter()
                    .skip(size.saturating_mul(number - 1))
                    .take(*size),
            );
        }
    }
}

/// One `Instances.Instance[]` entry, with the fields ECS returns (network details are fixed).
fn instance_json(record: &InstanceRecord, now: jiff::Timestamp) -> Value {
    let view = record.view(now);
    let locks: Vec<Value> = view
        .locks
        .iter()
        .map(|reason| json!({ "LockReason": reason, "LockMsg": "" }))
        .collect();
    let tags: Vec<Value> = view
        .tags
        .iter()
        .map(|(key, value)| json!({ "TagKey": key, "TagValue": value }))
        .collect();
    let mut instance = json!({
        "InstanceId": view.id,
        "InstanceName": view.id,
        "HostName": view.id,
        "Description": "",
        "RegionId": view.region,
        "ZoneId": view.zone,
        "Status": view.status.as_str(),
        "StartTime": view.start_time.unwrap_or_default(),
        "StoppedMode": view.stopped_mode,
        "InstanceType": view.instance_type,
        "InstanceTypeFamily": view.instance_type_family,
        "InstanceChargeType": view.instance_charge_type,
        "InternetChargeType": "PayByTraffic",
        "ExpiredTime": view.expired_time,
        "CreationTime": view.creation_time,
        "Cpu": 2,
        "Memory": 8192,
        "OSType": "linux",
        "OSName": "Alibaba Cloud Linux  3.2104 LTS 64位",
        "OSNameEn": "Alibaba Cloud Linux  3.2104 LTS 64 bit",
        "ImageId": "aliyun_3_x64_20G_alibase_20240528.vhd",
        "InstanceNetworkType": "vpc",
        "IoOptimized": true,
        "DeletionProtection": false,
        "Recyclable": false,
        "SpotStrategy": "NoSpot",
    });
    let fixed = json!({
        "SerialNumber": format!("sim-{}", view.id),
        "ResourceGroupId": "",
        "InternetMaxBandwidthIn": 0,
        "InternetMaxBandwidthOut": 0,
        "OperationLocks": { "LockReason": locks },
        "Tags": { "Tag": tags },
        "SecurityGroupIds": { "SecurityGroupId": [] },
        "PublicIpAddress": { "IpAddress": [] },
        "InnerIpAddress": { "IpAddress": [] },
        "EipAddress": { "AllocationId": "", "IpAddress": "", "InternetChargeType": "" },
        "VpcAttributes": {
            "VpcId": "",
            "VSwitchId": "",
            "NatIpAddress": "",
            "PrivateIpAddress": { "IpAddress": [] }
        },
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut instance, fixed) {
        map.extend(more);
    }
    instance
}

fn describe_instance_status(shared: &Shared, params: &Params<'_>) -> Answer {
    let prepared = (|| {
        let region = params.required("RegionId")?;
        let ids = params.indexed("InstanceId")?;
        let size = params.number("PageSize", 10, 1..=50)? as usize;
        let number = params.number("PageNumber", 1, 1..=u32::MAX as u64)? as usize;
        Ok((region, ids, size, number))
    })();
    let (region, ids, size, number) = match prepared {
        Ok(p) => p,
        Err(e) => return Answer::fail(e),
    };
    let named: Vec<(String, Outcome)> = ids.iter().map(|id| (id.clone(), Outcome::Ok)).collect();
    let fired = {
        let mut faults = lock(&shared.faults);
        if ids.is_empty() {
            faults.take(Action::DescribeInstanceStatus, None)
        } else {
            ids.iter()
                .find_map(|id| faults.take(Action::DescribeInstanceStatus, Some(id)))
        }
    };
    if let Some(fired) = fired {
        return Answer::fail(fired.error);
    }
    let now = shared.clock.now();
    let fleet = lock(&shared.fleet);
    let mut records: Vec<&InstanceRecord> = if ids.is_empty() {
        fleet
            .region_ids(region, None)
            .filter_map(|id| fleet.get(id))
            .collect()
    } else {
        let mut r: Vec<_> = ids
            .iter()
            .filter_map(|id| fleet.get(id))
            .filter(|r| r.region == region)
            .collect();
        r.sort_by(|a, b| a.id.cmp(&b.id));
        r.dedup_by(|a, b| a.id == b.id);
        r
    };
    let total = records.len();
    let statuses: Vec<Value> = records
        .drain(..)
        .skip(size.saturating_mul(number - 1))
        .take(size)
        .map(|r| json!({ "InstanceId": r.id, "Status": r.status(now).as_str() }))
        .collect();
    Answer {
        result: Ok(json!({
            "TotalCount": total,
            "PageSize": size,
            "PageNumber": number,
            "InstanceStatuses": { "InstanceStatus": statuses },
        })),
        instances: named,
    }
}
