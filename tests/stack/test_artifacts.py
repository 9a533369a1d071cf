"""The deployable artifacts, proven before any deploy: every `bootstrap` that `sam build` put in
.aws-sam/build (arm64, as Lambda runs them) starts against a local Lambda Runtime API, finishes
INIT (its secret read from moto, Keycloak reachable) and answers one invocation.

This machine is x86_64: the arm64 binaries run under qemu-user (Debian's qemu-user-static, with
Debian's arm64 glibc as the sysroot; `make qemu` fetches both, pinned). Run by `make artifact-test`
after `make sam-build`.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from samtranslator.yaml_helper import yaml_parse

from conftest import ROOT
from test_template import binary_of
from runtime_api import RuntimeApi, function_environment, http_event

pytestmark = pytest.mark.artifacts

BUILD = ROOT / ".aws-sam" / "build"
QEMU = ROOT / ".tools" / "qemu" / "usr" / "bin" / "qemu-aarch64-static"
SYSROOT = ROOT / ".tools" / "arm64-sysroot"


TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
FUNCTIONS = {k: r for k, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def first_route(function):
    """The first HTTP route a function serves, or None for the others."""
    for event in function["Properties"].get("Events", {}).values():
        if event["Type"] == "HttpApi":
            return event["Properties"]["Method"], event["Properties"]["Path"]
    return None


def sqs_consumer(logical_id):
    """Whether an SQS event source mapping feeds the function."""
    return any(r["Type"] == "AWS::Lambda::EventSourceMapping"
               and r["Properties"]["FunctionName"] == {"Ref": logical_id}
               for r in TEMPLATE["Resources"].values())


def sqs_event(body):
    return {"Records": [{"messageId": "m-1", "receiptHandle": "r-1", "body": json.dumps(body),
                         "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": "g"},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:HookQueue.fifo",
                         "awsRegion": "us-east-1"}]}


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_each_built_bootstrap_finishes_init_and_answers_one_invocation(stack, logical_id):
    bootstrap = BUILD / logical_id / "bootstrap"
    assert bootstrap.is_file(), f"{bootstrap} missing: run `make sam-build`"
    architecture = subprocess.run(["file", "-b", str(bootstrap)], capture_output=True, text=True).stdout
    assert "ARM aarch64" in architecture and "stripped" in architecture, architecture
    api = RuntimeApi(invocation_timeout_s=120)
    env = {"PATH": os.environ["PATH"], **api.environment(binary_of(logical_id)),
           **function_environment(stack, binary_of(logical_id))}
    proc = subprocess.Popen([str(QEMU), "-L", str(SYSROOT), str(bootstrap)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert api.wait_for_init(timeout=120), f"INIT did not finish: {api.init_error}"
        route = first_route(FUNCTIONS[logical_id])
        if route:
            method, path = route
            kind, answer = api.invoke(http_event(method, path, body={}), timeout=120)
            assert kind == "response", answer
            # No token, or an empty body: a client error, answered as problem+json.
            assert 400 <= answer["statusCode"] < 500, answer
            assert answer["headers"]["content-type"] == "application/problem+json", answer
        elif sqs_consumer(logical_id):
            # A change of a user neither Keycloak nor the store has: read, nothing to do.
            change = {"eventId": "e-1", "userId": "no-such-user", "time": 1,
                      "kind": "admin.USER-UPDATE"}
            kind, answer = api.invoke(sqs_event(change), timeout=120)
            assert kind == "response", answer
            assert answer["batchItemFailures"] == [], answer
        else:
            kind, answer = api.invoke({"mode": "incremental"}, timeout=300)
            assert kind == "response", answer
            assert answer["status"] == "succeeded", answer
    finally:
        proc.kill()
        output, _ = proc.communicate()
        api.close()
    # AWS_LAMBDA_LOG_FORMAT=JSON: every line the function wrote is JSON (logs and EMF alike).
    for line in output.splitlines():
        assert json.loads(line), line
