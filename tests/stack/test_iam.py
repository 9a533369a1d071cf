"""Least privilege, proven: each function's role grants exactly the AWS actions its code calls.

Each function lists the AWS actions its code calls in its Cargo.toml (`[package.metadata.iam]`).
template.yaml is expanded into CloudFormation by the SAM translator (the pinned
aws-sam-translator that `sam validate` and `sam deploy` use), and each function's expanded role
must allow exactly those actions, on exactly their resources, plus what the Lambda platform itself
needs for the function's configuration, and nothing else. The e2e suites record every AWS call
each function makes (AWS_CALL_LOG_DIR, shared/src/outside/aws_calls.rs): the code calls nothing the table
leaves out, and every action in the table is called.
"""

import os
import re
import tomllib
from pathlib import Path

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_RESOURCES = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
XRAY = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"

# The resources each kind of call is allowed on, as the expanded template writes them (see
# `resource`): the table, its indexes, the function's own client secret, the bulk-sync function.
TABLE = "{UsersTable.Arn}"
INDEXES = "{UsersTable.Arn}/index/*"
HOOK_QUEUE = "{HookQueue.Arn}"
SQS_POLLER = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
BULK_SYNC = "arn:{AWS::Partition}:lambda:{AWS::Region}:{AWS::AccountId}:function:{AWS::StackName}-bulk-sync"


class ManagedPolicies:
    """The managed-policy names SAM may attach, as the translator's loader answers them."""

    def load(self):
        return {"AWSLambdaBasicExecutionRole": BASIC, "AWSXrayWriteOnlyAccess": XRAY}


def binary_of(logical_id):
    return re.sub(r"(?<!^)([A-Z])", r"-\1", logical_id.removesuffix("Function")).lower()


def expanded(**parameters):
    """The CloudFormation template `sam deploy` would create, for these parameter values."""
    doc = yaml_parse((ROOT / "template.yaml").read_text())
    doc["Globals"]["Function"]["CodeUri"] = "s3://artifacts/code.zip"  # as `sam package` sets it
    values = {"KeycloakUrl": "https://sso.example.com", "KeycloakRealm": "demo",
              "KeycloakLoginSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:login",
              "KeycloakAdminSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:admin"}
    values.update(parameters)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(doc, values, ManagedPolicies())


def resource(node):
    """An intrinsic as a comparable string: `{Name}` for a Ref, `{Res.Attr}` for a GetAtt."""
    if isinstance(node, str):
        return node
    (fn, arg), = node.items()
    if fn == "Ref":
        return "{%s}" % arg
    if fn == "Fn::GetAtt":
        return "{%s}" % ".".join(arg if isinstance(arg, list) else arg.split("."))
    if fn == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        return re.sub(r"\$\{([^}]+)\}",
                      lambda m: resource(variables[m[1]]) if m[1] in variables else "{%s}" % m[1],
                      text)
    raise AssertionError(f"unexpected intrinsic in a policy: {node}")


def as_list(v):
    return v if isinstance(v, list) else [v]


def granted(role):
    """(action, resource) pairs a role allows; anything but a plain Allow fails the test."""
    pairs = set()
    for policy in role["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            assert st["Effect"] == "Allow" and set(st) <= {"Effect", "Action", "Resource"}, st
            for action in as_list(st["Action"]):
                for res in as_list(st["Resource"]):
                    pairs.add((action, resource(res)))
    return pairs


def iam_table(binary):
    manifest = tomllib.loads((ROOT / "functions" / binary / "Cargo.toml").read_text())
    return manifest["package"]["metadata"]["iam"]


def declared(binary):
    return iam_table(binary)["calls"]


def expected(binary, function):
    """What the code's table needs, on its resources, and what the platform needs."""
    env = function["Properties"]["Environment"]["Variables"]
    secret = resource(env.get("KEYCLOAK_SECRET_ID") or env.get("KEYCLOAK_ADMIN_SECRET_ID")
                      or env["HOOK_SECRET_ID"])
    pairs = set()
    for call in declared(binary):
        action, _, where = call.partition("@")
        service = action.split(":")[0]
        pairs.add((action, {"dynamodb": INDEXES if where == "index" else TABLE,
                            "secretsmanager": secret, "lambda": BULK_SYNC,
                            "sqs": HOOK_QUEUE}[service]))
    # An SQS event source mapping polls the queue as the function's role.
    for mapping in TEMPLATE_RESOURCES.values():
        if (mapping["Type"] == "AWS::Lambda::EventSourceMapping"
                and binary_of(mapping["Properties"]["FunctionName"]["Ref"]) == binary):
            queue = resource(mapping["Properties"]["EventSourceArn"])
            pairs |= {(a, queue) for a in SQS_POLLER}
    # Lambda delivers a failed asynchronous event to the OnFailure queue as the function's role.
    on_failure = (function["Properties"].get("EventInvokeConfig", {})
                  .get("DestinationConfig", {}).get("OnFailure"))
    if on_failure:
        pairs.add(("sqs:SendMessage", resource(on_failure["Destination"])))
    return pairs


def functions(template):
    return {binary_of(k): r for k, r in template["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


def roles_by_function(cfn):
    out = {}
    for logical_id, r in cfn["Resources"].items():
        if r["Type"] == "AWS::Lambda::Function":
            role = r["Properties"]["Role"]["Fn::GetAtt"][0]
            out[binary_of(logical_id)] = cfn["Resources"][role]
    return out


def test_each_role_allows_exactly_the_calls_its_function_makes():
    cfn = expanded()
    template = yaml_parse((ROOT / "template.yaml").read_text())
    roles = roles_by_function(cfn)
    assert set(roles) == {p.parent.name for p in (ROOT / "functions").glob("*/Cargo.toml")}
    for binary, function in functions(template).items():
        assert granted(roles[binary]) == expected(binary, function), binary


def test_nothing_on_star_but_the_logs_aws_requires_and_xray_only_when_tracing():
    for mode, managed in (("Disabled", [BASIC]), ("Active", [BASIC, XRAY])):
        for binary, role in roles_by_function(expanded(TracingMode=mode)).items():
            assert role["Properties"]["ManagedPolicyArns"] == managed, (binary, mode)
            assert all(res != "*" for _, res in granted(role)), binary


def test_a_policy_line_no_call_needs_fails_the_check():
    """The check is not vacuous: one extra action in a role, or one missing, is caught."""
    cfn = expanded()
    template = yaml_parse((ROOT / "template.yaml").read_text())
    role = roles_by_function(cfn)["logout"]
    statement = role["Properties"]["Policies"][-1]["PolicyDocument"]["Statement"][0]
    statement["Action"] = as_list(statement["Action"]) + ["dynamodb:Scan"]
    assert granted(role) != expected("logout", functions(template)["logout"])


@pytest.fixture(scope="module")
def recorded():
    directory = os.environ.get("AWS_CALL_LOG_DIR")
    if not directory:
        pytest.skip("AWS_CALL_LOG_DIR is not set: `make test` records the e2e suites' AWS calls")
    calls = {}
    for path in Path(directory).glob("*.calls"):
        calls[path.stem] = set(path.read_text().split())
    assert calls, f"no AWS calls were recorded in {directory}: run `make unit` first"
    return calls


@pytest.mark.parametrize("binary", sorted(p.parent.name for p in (ROOT / "functions").glob("*/Cargo.toml")))
def test_the_code_calls_exactly_what_its_table_declares(recorded, binary):
    """Nothing called that the table leaves out; everything in the table called, except the few
    calls whose path only a narrower test reaches (`unrecorded`, each with the test named)."""
    calls = recorded.get(binary, set())
    table = iam_table(binary)
    unrecorded = set(table.get("unrecorded", []))
    assert unrecorded <= set(table["calls"]), binary
    assert calls <= set(table["calls"]), f"{binary} calls {calls - set(table['calls'])} undeclared"
    assert set(table["calls"]) - unrecorded <= calls, \
        f"{binary} declares {set(table['calls']) - unrecorded - calls} that no test made it call"
