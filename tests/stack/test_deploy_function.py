"""`make deploy-function FN=... STACK=...` pushes one function's arm64 build with
`cargo lambda deploy` into a stack's function, against moto's CloudFormation and Lambda APIs
(AWS_ENDPOINT_URL): the code becomes the built bootstrap, and the runtime, architecture,
handler, environment and role stay as the stack set them. Needs `make lambda-artifacts`."""

import base64
import hashlib
import io
import json
import os
import subprocess
import zipfile

import pytest

from conftest import ROOT, aws

pytestmark = pytest.mark.artifacts

ENVIRONMENT = {"TABLE_NAME": "users", "KEYCLOAK_URL": "https://id.example.com",
               "KEYCLOAK_REALM": "demo", "KEYCLOAK_CLIENT_ID": "user-sync",
               "KEYCLOAK_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:login"}


def zipped(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return buf.getvalue()


def deployed_stack(stack, name):
    """What `sam deploy` leaves for one function: a role, an arm64 function configured as
    template.yaml configures it, and a stack whose outputs name it. (moto's CloudFormation drops a
    function's Architectures, so the function is created through the Lambda API.)"""
    role = aws(stack, "iam").create_role(
        RoleName=f"{name}-LoginSyncFunctionRole",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    function = aws(stack, "lambda").create_function(
        FunctionName=f"{name}-LoginSyncFunction-X1", Runtime="provided.al2023",
        Handler="bootstrap", Architectures=["arm64"], MemorySize=256, Timeout=10,
        TracingConfig={"Mode": "Active"}, Role=role, Environment={"Variables": ENVIRONMENT},
        Code={"ZipFile": zipped({"bootstrap": b"the first deploy's code"})})["FunctionName"]
    body = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"LoginSyncFunctionName": {"Value": function}}}
    aws(stack, "cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body))
    return function


def deploy_function(stack, fn, stack_name):
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{stack['MOTO_PORT']}",
               AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local",
               AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    return subprocess.run(["make", "-s", "deploy-function", f"FN={fn}", f"STACK={stack_name}"],
                          cwd=ROOT, env=env, capture_output=True, text=True)


def test_deploy_function_pushes_the_build_and_keeps_the_stacks_configuration(stack):
    name = deployed_stack(stack, "deployed")
    lam = aws(stack, "lambda")
    before = lam.get_function_configuration(FunctionName=name)
    run = deploy_function(stack, "login-sync", "deployed")
    assert run.returncode == 0, run.stdout + run.stderr
    after = lam.get_function(FunctionName=name)
    config = after["Configuration"]
    assert (config["Runtime"], config["Architectures"], config["Handler"], config["Role"],
            config["Environment"]["Variables"]) == (
        "provided.al2023", ["arm64"], "bootstrap", before["Role"], ENVIRONMENT)
    # The code Lambda now holds is the package cargo lambda made of the built bootstrap.
    package = (ROOT / "target" / "lambda" / "login-sync" / "bootstrap.zip").read_bytes()
    assert config["CodeSha256"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    built = (ROOT / "target" / "lambda" / "login-sync" / "bootstrap").read_bytes()
    assert zipfile.ZipFile(io.BytesIO(package)).read("bootstrap") == built


def test_deploy_function_refuses_a_function_the_stack_does_not_have(stack):
    deployed_stack(stack, "other")
    run = deploy_function(stack, "bulk-sync", "other")
    assert run.returncode != 0
    assert "has no output BulkSyncFunctionName" in run.stderr
