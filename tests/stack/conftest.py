"""The local stack as `make up` starts it (DynamoDB Local, moto, the Keycloak emulator), on free
ports with its own .dev directory (so it never touches a running dev stack): one per test module
that asks for it."""

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "local"))
from aws_local import free_port  # noqa: E402  (one way to pick a port for every local stack)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = dict(os.environ)
    env.update(
        KEYCLOAK_PORT=str(free_port()),
        MOTO_PORT=str(free_port()),
        DYNAMODB_PORT=str(free_port()),
        DEV_DIR=str(tmp_path_factory.mktemp("dev")),
        TABLE_NAME="stack-test-table",
    )
    env.pop("KEYCLOAK_URL", None)
    up = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    yield env
    subprocess.run(["make", "-s", "down"], cwd=ROOT, env=env, capture_output=True, text=True)


def keycloak(env):
    return f"http://127.0.0.1:{env['KEYCLOAK_PORT']}"


def aws(env, service):
    """A client of the stack's DynamoDB Local for DynamoDB, of its moto for the rest."""
    port = env["DYNAMODB_PORT"] if service == "dynamodb" else env["MOTO_PORT"]
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}",
                        region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")




def pytest_configure(config):
    config.addinivalue_line(
        "markers", "artifacts: needs `make sam-build` and `make qemu` (run by `make artifact-test`)")
