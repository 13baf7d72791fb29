"""A tiny ECS endpoint that checks every request's signature with the official SDKs' own code.

V3 (ACS3-HMAC-SHA256) is recomputed with `alibabacloud_openapi_util.client.Client.get_authorization`
over exactly the headers the request names in SignedHeaders; V1 (HMAC-SHA1) with the same
package's `Client.get_rpcsignature` and, independently, with the legacy `aliyunsdkcore` signer.
A request that matches gets a plausible ECS answer; one that does not gets HTTP 400
`SignatureDoesNotMatch`. Nothing here is ours: if this server accepts a request, the official SDK
agrees with our signing.

Usage: python verify_server.py ACCESS_KEY_ID ACCESS_KEY_SECRET
Prints `PORT <n>` on its first line once listening on 127.0.0.1 (ephemeral port).
"""

import hashlib
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

from alibabacloud_openapi_util.client import Client as OpenApiUtil
from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.auth.composer import rpc_signature_composer

ACCESS_KEYS = {}


def legacy_v1_signature(params, method, secret):
    # The legacy SDK's own composer (module-private helpers, reached by name).
    compose = getattr(rpc_signature_composer, "__compose_string_to_sign")
    string_to_sign = compose(method, params)
    return sha_hmac1.get_sign_string(string_to_sign, secret + "&")


def verify_v3(method, path, query, headers, body):
    auth = headers.get("authorization", "")
    if not auth.startswith("ACS3-HMAC-SHA256 "):
        return None, "not a V3 Authorization header"
    parts = dict(p.strip().split("=", 1) for p in auth[len("ACS3-HMAC-SHA256 "):].split(","))
    access_key_id = parts.get("Credential")
    if access_key_id not in ACCESS_KEYS:
        return None, "unknown AccessKeyId"
    signed = parts.get("SignedHeaders", "").split(";")
    for required in ("host", "x-acs-action", "x-acs-version", "x-acs-date",
                     "x-acs-signature-nonce", "x-acs-content-sha256"):
        if required not in signed:
            return None, "header %s is not signed" % required
    payload = hashlib.sha256(body).hexdigest()
    if headers.get("x-acs-content-sha256") != payload:
        return None, "x-acs-content-sha256 does not match the body"
    request = SimpleNamespace(
        method=method,
        pathname=path,
        query=dict(query),
        headers={name: headers.get(name, "") for name in signed},
    )
    expected = OpenApiUtil.get_authorization(
        request, "ACS3-HMAC-SHA256", payload, access_key_id, ACCESS_KEYS[access_key_id])
    if expected != auth:
        return None, "V3 signature mismatch"
    return headers.get("x-acs-action"), None


def verify_v1(method, params):
    access_key_id = params.get("AccessKeyId")
    if access_key_id not in ACCESS_KEYS:
        return None, "unknown AccessKeyId"
    for required in ("Action", "Version", "SignatureMethod", "SignatureNonce",
                     "SignatureVersion", "Timestamp", "Format"):
        if required not in params:
            return None, "missing %s" % required
    signed = {k: v for k, v in params.items() if k != "Signature"}
    secret = ACCESS_KEYS[access_key_id]
    ours = params.get("Signature")
    new_sdk = OpenApiUtil.get_rpcsignature(signed, method, secret)
    legacy = legacy_v1_signature(signed, method, secret)
    if new_sdk != legacy:
        return None, "the two official V1 signers disagree"
    if ours != new_sdk:
        return None, "V1 signature mismatch"
    return params.get("Action"), None


def truthy(value):
    return str(value).lower() == "true"


def answer(action, params):
    request_id = str(uuid.uuid4()).upper()
    if truthy(params.get("DryRun", "false")):
        return 400, {"RequestId": request_id, "HostId": "ecs.aliyuncs.com", "Code": "DryRunOperation",
                     "Message": "Request validation has been passed with DryRun flag set."}
    if action == "DescribeInstances":
        ids = json.loads(params.get("InstanceIds", "[]"))
        instances = [{
            "InstanceId": i, "RegionId": params.get("RegionId", ""), "Status": "Running",
            "StartTime": "2026-11-22T08:00Z", "InstanceTypeFamily": "ecs.g7",
            "InstanceChargeType": "PostPaid", "StoppedMode": "Not-applicable",
            "OperationLocks": {"LockReason": []},
        } for i in ids]
        return 200, {"RequestId": request_id, "TotalCount": len(instances), "NextToken": "",
                     "Instances": {"Instance": instances}}
    if action in ("StartInstance", "StopInstance", "RebootInstance"):
        if not params.get("InstanceId"):
            return 400, {"RequestId": request_id, "Code": "MissingParameter",
                         "Message": "The input parameter InstanceId that is mandatory for processing this request is not supplied."}
        return 200, {"RequestId": request_id}
    return 400, {"RequestId": request_id, "Code": "InvalidAction.NotFound",
                 "Message": "Specified api is not found, please check your url and method."}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        params = dict(query)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        if "authorization" in headers:
            action, problem = verify_v3(self.command, url.path or "/", query, headers, body)
        else:
            action, problem = verify_v1(self.command, params)
        if problem:
            status, document = 400, {
                "RequestId": str(uuid.uuid4()).upper(), "HostId": "ecs.aliyuncs.com",
                "Code": "SignatureDoesNotMatch",
                "Message": "Specified signature is not matched with our calculation (%s)." % problem,
            }
        else:
            status, document = answer(action, params)
        if problem:
            sys.stderr.write("verify_server: %s refused: %s\n" % (self.command, problem))
        payload = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json;charset=utf-8")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = handle_any
    do_POST = handle_any

    def log_message(self, *args):
        pass


def main():
    access_key_id, secret = sys.argv[1], sys.argv[2]
    ACCESS_KEYS[access_key_id] = secret
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
