"""Drive the ECS simulator with the official Alibaba Cloud Python SDKs.

Usage: sim_flows.py HOST:PORT

Runs the same describe/start/stop/reboot flows and error cases three times: with
`alibabacloud-ecs20140526` signing V3 (its default), with the same SDK and
`signature_algorithm='v2'` (legacy V1 RPC signature), and with `aliyun-python-sdk-core` +
`aliyun-python-sdk-ecs`. Before each run it resets the simulator through the admin API.

The simulator must be started with the fleet and keys of `tests/sim_official_sdks.rs`.
Exits non-zero, naming the flavour and the step, at the first mismatch.
"""

import json
import re
import sys
import urllib.request

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import utils_models as openapi
from darabonba.runtime import RuntimeOptions

from aliyunsdkcore.acs_exception.exceptions import ServerException as LegacyServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526 import (
    DescribeInstanceStatusRequest,
    DescribeInstancesRequest,
    RebootInstanceRequest,
    RebootInstancesRequest,
    StartInstanceRequest,
    StartInstancesRequest,
    StopInstanceRequest,
)

HOST = sys.argv[1]
REGION = "cn-hangzhou"
KEY, SECRET = "sdk-ak", "sdk-sk"
STS_KEY, STS_SECRET, STS_TOKEN = "STS.sdk-ak", "sts-sk", "sts-token-value"
MINUTE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\dZ$")


class Mismatch(Exception):
    pass


def expect(what, got, want):
    if got != want:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{HOST}/_sim{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def count(action, instance, outcome):
    q = f"/calls?action={action}&instance={instance}&outcome={outcome}"
    return admin("GET", q)["total"]


class Failure(Exception):
    """An API error as the SDK reported it: code and HTTP status."""

    def __init__(self, code, status):
        super().__init__(f"{code} ({status})")
        self.code, self.status = code, status


class TeaFlavour:
    """alibabacloud-ecs20140526 (tea-openapi), V3 by default or V1 with algorithm='v2'."""

    def __init__(self, algorithm, key=KEY, secret=SECRET, token=None):
        self.name = "tea-" + (algorithm or "v3")
        config = openapi.Config(
            access_key_id=key,
            access_key_secret=secret,
            security_token=token,
            endpoint=HOST,
            protocol="http",
            region_id=REGION,
            signature_algorithm=algorithm,
        )
        self.client = EcsClient(config)
        self.algorithm = algorithm

    def with_key(self, key, secret, token=None):
        return TeaFlavour(self.algorithm, key, secret, token)

    def call(self, method, request):
        try:
            return getattr(self.client, method + "_with_options")(request, RuntimeOptions()).body.to_map()
        except Exception as e:  # the SDK's ClientException / ServerException
            if getattr(e, "code", None) is None:
                raise
            raise Failure(e.code, e.status_code) from None

    def describe(self, ids):
        body = self.call("describe_instances", ecs.DescribeInstancesRequest(region_id=REGION, instance_ids=json.dumps(ids)))
        return {i["InstanceId"]: i for i in body["Instances"]["Instance"]}

    def statuses(self, ids):
        body = self.call("describe_instance_status", ecs.DescribeInstanceStatusRequest(region_id=REGION, instance_id=ids))
        return {s["InstanceId"]: s["Status"] for s in body["InstanceStatuses"]["InstanceStatus"]}

    def start(self, instance_id, dry_run=None):
        return self.call("start_instance", ecs.StartInstanceRequest(instance_id=instance_id, dry_run=dry_run))

    def stop(self, instance_id, force=None, mode=None):
        return self.call("stop_instance", ecs.StopInstanceRequest(instance_id=instance_id, force_stop=force, stopped_mode=mode))

    def reboot(self, instance_id, dry_run=None, force=None):
        return self.call("reboot_instance", ecs.RebootInstanceRequest(instance_id=instance_id, dry_run=dry_run, force_stop=force))

    def start_many(self, ids, optimization):
        body = self.call("start_instances", ecs.StartInstancesRequest(region_id=REGION, instance_id=ids, batch_optimization=optimization))
        return body["InstanceResponses"]["InstanceResponse"]

    def reboot_many(self, ids, optimization, force=None):
        body = self.call("reboot_instances", ecs.RebootInstancesRequest(region_id=REGION, instance_id=ids, batch_optimization=optimization, force_reboot=force))
        return body["InstanceResponses"]["InstanceResponse"]

    # The wrong-secret answer: the tea SDK passes the server's code through.
    wrong_secret_code = "SignatureDoesNotMatch"


class LegacyFlavour:
    """aliyun-python-sdk-core + aliyun-python-sdk-ecs (V1 signature), retries off."""

    name = "legacy-core"
    # The legacy SDK compares the server's string to sign (after the first ':' of the message)
    # with its own; equal strings turn SignatureDoesNotMatch into InvalidAccessKeySecret.
    wrong_secret_code = "InvalidAccessKeySecret"

    def __init__(self, key=KEY, secret=SECRET, token=None):
        if token is None:
            self.client = AcsClient(key, secret, REGION, auto_retry=False)
        else:
            self.client = AcsClient(region_id=REGION, auto_retry=False, credential=StsTokenCredential(key, secret, token))

    def with_key(self, key, secret, token=None):
        return LegacyFlavour(key, secret, token)

    def call(self, request):
        request.set_endpoint(HOST)
        request.set_protocol_type("http")
        try:
            return json.loads(self.client.do_action_with_exception(request))
        except LegacyServerException as e:
            raise Failure(e.get_error_code(), e.get_http_status()) from None

    def describe(self, ids):
        r = DescribeInstancesRequest.DescribeInstancesRequest()
        r.set_InstanceIds(json.dumps(ids))
        return {i["InstanceId"]: i for i in self.call(r)["Instances"]["Instance"]}

    def statuses(self, ids):
        r = DescribeInstanceStatusRequest.DescribeInstanceStatusRequest()
        r.set_InstanceIds(ids)
        return {s["InstanceId"]: s["Status"] for s in self.call(r)["InstanceStatuses"]["InstanceStatus"]}

    def start(self, instance_id, dry_run=None):
        r = StartInstanceRequest.StartInstanceRequest()
        if instance_id is not None:
            r.set_InstanceId(instance_id)
        if dry_run is not None:
            r.set_DryRun(dry_run)
        return self.call(r)

    def stop(self, instance_id, force=None, mode=None):
        r = StopInstanceRequest.StopInstanceRequest()
        r.set_InstanceId(instance_id)
        if force is not None:
            r.set_ForceStop(force)
        if mode is not None:
            r.set_StoppedMode(mode)
        return self.call(r)

    def reboot(self, instance_id, dry_run=None, force=None):
        r = RebootInstanceRequest.RebootInstanceRequest()
        r.set_InstanceId(instance_id)
        if dry_run is not None:
            r.set_DryRun(dry_run)
        if force is not None:
            r.set_ForceStop(force)
        return self.call(r)

    def start_many(self, ids, optimization):
        r = StartInstancesRequest.StartInstancesRequest()
        r.set_InstanceIds(ids)
        r.set_BatchOptimization(optimization)
        return self.call(r)["InstanceResponses"]["InstanceResponse"]

    def reboot_many(self, ids, optimization, force=None):
        r = RebootInstancesRequest.RebootInstancesRequest()
        r.set_InstanceIds(ids)
        r.set_BatchOptimization(optimization)
        if force is not None:
            r.set_ForceReboot(force)
        return self.call(r)["InstanceResponses"]["InstanceResponse"]


def expect_error(what, code, status, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except Failure as f:
        expect(f"{what}: error code", f.code, code)
        expect(f"{what}: HTTP status", f.status, status)
        return
    raise Mismatch(f"{what}: succeeded, want {code} ({status})")


def flows(sdk):
    admin("POST", "/reset")

    # Describe: the fields the controller reads, in ECS's formats.
    seen = sdk.describe(["i-stopped", "i-running", "i-locked", "i-absent"])
    expect("describe: instances found", sorted(seen), ["i-locked", "i-running", "i-stopped"])
    expect("describe: Stopped status", seen["i-stopped"]["Status"], "Stopped")
    expect("describe: StoppedMode of a stopped instance", seen["i-stopped"]["StoppedMode"], "KeepCharging")
    expect("describe: Running status", seen["i-running"]["Status"], "Running")
    if not MINUTE.match(seen["i-running"]["StartTime"]):
        raise Mismatch(f"describe: StartTime {seen['i-running']['StartTime']!r} is not yyyy-MM-ddTHH:mmZ")
    locks = [l["LockReason"] for l in seen["i-locked"]["OperationLocks"]["LockReason"]]
    expect("describe: security lock", locks, ["security"])
    expect("describe: InstanceTypeFamily", seen["i-running"]["InstanceTypeFamily"], "ecs.g7")
    expect("describe: InstanceChargeType", seen["i-running"]["InstanceChargeType"], "PostPaid")

    # Start, stop (forced, StopCharging), reboot: each takes effect (transitions are instant).
    sdk.start("i-stopped")
    expect("start: status after", sdk.describe(["i-stopped"])["i-stopped"]["Status"], "Running")
    sdk.stop("i-running", force=True, mode="StopCharging")
    after = sdk.describe(["i-running"])["i-running"]
    expect("stop: status after", after["Status"], "Stopped")
    expect("stop: StoppedMode after", after["StoppedMode"], "StopCharging")
    sdk.reboot("i-stopped", force=False)
    expect("reboot: status after", sdk.statuses(["i-stopped"]), {"i-stopped": "Running"})
    expect("reboot: reached the simulator once", count("RebootInstance", "i-stopped", "Ok"), 1)

    # Batch forms.
    answers = sdk.start_many(["i-running", "i-absent"], "SuccessFirst")
    codes = {a["InstanceId"]: str(a["Code"]) for a in answers}
    expect("StartInstances SuccessFirst: per-instance codes", codes, {"i-running": "200", "i-absent": "InvalidInstanceId.NotFound"})
    expect_error("RebootInstances AllTogether with a Pending instance", "InstanceNotReady", 403, sdk.reboot_many, ["i-running", "i-pending"], "AllTogether", True)
    expect("RebootInstances AllTogether refused: nothing rebooted", count("RebootInstances", "i-running", "Ok"), 0)
    answers = sdk.reboot_many(["i-running"], "AllTogether", True)
    expect("RebootInstances: code", [str(a["Code"]) for a in answers], ["200"])

    # Every error of the seed pages, when its condition holds.
    expect_error("start a Running instance", "IncorrectInstanceStatus", 403, sdk.start, "i-running")
    expect_error("start a security-locked instance", "InstanceLockedForSecurity", 403, sdk.start, "i-locked")
    expect_error("reboot a security-locked instance", "InstanceLockedForSecurity", 403, sdk.reboot, "i-locked")
    expect_error("start a Pending instance", "InstanceNotReady", 403, sdk.start, "i-pending")
    expect_error("start with an overdue account", "InsufficientBalance", 403, sdk.start, "i-overdue")
    expect_error("start an expired subscription", "InstanceExpired", 403, sdk.start, "i-expired")
    expect_error("reboot in arrears", "InstanceExpiredOrInArrears", 403, sdk.reboot, "i-arrears")
    expect_error("start an unknown instance", "InvalidInstanceId.NotFound", 404, sdk.start, "i-absent")
    expect_error("start with a disk fault", "DiskError", 403, sdk.start, "i-disk")
    expect_error("dry-run reboot that would pass", "DryRunOperation", 400, sdk.reboot, "i-running", True)
    expect_error("dry-run start that would fail", "IncorrectInstanceStatus", 403, sdk.start, "i-running", True)
    expect_error("start without InstanceId", "MissingParameter", 400, sdk.start, None)
    expect("dry run changed nothing", sdk.statuses(["i-running"]), {"i-running": "Running"})

    # Injected faults.
    admin("POST", "/faults", {"action": "RebootInstance", "instance": "i-running", "code": "InvalidParameter.KMSKeyId.KMSUnauthorized"})
    expect_error("injected KMS fault", "InvalidParameter.KMSKeyId.KMSUnauthorized", 403, sdk.reboot, "i-running")
    admin("POST", "/faults", {"action": "StopInstance", "instance": "i-running", "code": "InternalError"})
    expect_error("injected InternalError", "InternalError", 500, sdk.stop, "i-running")
    admin("POST", "/faults", {"action": "DescribeInstances", "code": "ServiceUnavailable"})
    expect_error("injected ServiceUnavailable", "ServiceUnavailable", 503, sdk.describe, ["i-running"])
    expect("faults fire once", sdk.describe(["i-running"])["i-running"]["Status"], "Running")
    admin("PUT", "/quotas", {"DescribeInstanceStatus": 1})
    throttled = 0
    for _ in range(3):
        try:
            sdk.statuses(["i-running"])
        except Failure as f:
            expect("over quota: code", (f.code, f.status), ("Throttling.User", 400))
            throttled += 1
    if throttled == 0:
        raise Mismatch("quota of 1/s: three quick calls, none throttled")
    admin("PUT", "/quotas", {})

    # Signatures: wrong secret, unknown key, STS token.
    expect_error("wrong secret", sdk.wrong_secret_code, 400, sdk.with_key(KEY, "not-the-secret").describe, ["i-running"])
    expect_error("unknown key", "InvalidAccessKeyId.NotFound", 404, sdk.with_key("LTAI-unknown", SECRET).describe, ["i-running"])
    expect("STS credential with its token", list(sdk.with_key(STS_KEY, STS_SECRET, STS_TOKEN).describe(["i-running"])), ["i-running"])
    expect_error("STS credential with another token", "InvalidSecurityToken.MismatchWithAccessKey", 400, sdk.with_key(STS_KEY, STS_SECRET, "forged").describe, ["i-running"])


def main():
    for sdk in (TeaFlavour(None), TeaFlavour("v2"), LegacyFlavour()):
        try:
            flows(sdk)
        except Mismatch as m:
            print(f"[{sdk.name}] MISMATCH: {m}", file=sys.stderr)
            return 1
        except Failure as f:
            print(f"[{sdk.name}] unexpected API error: {f}", file=sys.stderr)
            return 1
        print(f"[{sdk.name}] ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
