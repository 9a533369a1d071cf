"""openapi.yaml is the HTTP API that template.yaml deploys: the same routes with the same
security, and - by schemathesis against the local gateway - the answers the functions give."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_template import functions

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}


def document():
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


def template_routes():
    """{(METHOD, path): needs a bearer token} from every function's HttpApi events."""
    routes = {}
    for fn in functions().values():
        for event in fn["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            p = event["Properties"]
            public = p.get("Auth", {}).get("Authorizer") == "NONE"
            routes[(p["Method"].upper(), p["Path"])] = not public
    return routes


def documented_routes():
    doc = document()
    default_secured = bool(doc.get("security"))
    routes = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                routes[(method.upper(), path)] = bool(op.get("security", doc.get("security"))) \
                    if "security" in op else default_secured
    return routes


def test_the_document_has_exactly_the_routes_the_template_deploys():
    assert set(documented_routes()) == set(template_routes())


def test_each_route_is_documented_with_the_security_the_template_gives_it():
    template = template_routes()
    assert {r: secured for r, secured in documented_routes().items() if r in template} == template


def test_every_error_response_is_a_documented_problem_or_the_authorizers_401():
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                ref = response["$ref"].rsplit("/", 1)[-1]
                content = doc["components"]["responses"][ref]["content"]
                assert "application/problem+json" in content, (method, path, status)


def serve_for_tests(env):
    """The whole stack (functions and gateway included), as the e2e suites start it."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "infra/local/stack.py"), "serve-for-tests"],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)
    proc.wait()
    raise RuntimeError(f"the stack did not start; see {env['DEV_DIR']}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from conftest import free_port

    env = dict(os.environ)
    env.update(
        DEV_DIR=str(tmp_path_factory.mktemp("api-dev")),
        KEYCLOAK_PORT=str(free_port()), MOTO_PORT=str(free_port()), DYNAMODB_PORT=str(free_port()),
        LAMBDA_PORT=str(free_port()),
        LAMBDA_ASYNC_PORT=str(free_port()), GATEWAY_PORT=str(free_port()),
        TABLE_NAME="api-test-table", STACK_NO_RELOAD="1",
    )
    env.pop("KEYCLOAK_URL", None)
    proc, info = serve_for_tests(env)
    yield info["gateway"]
    proc.stdin.close()
    proc.wait(timeout=60)


def test_schemathesis_finds_no_failure_against_the_local_gateway(gateway):
    env = dict(os.environ, API_TEST_GATEWAY=gateway, SCHEMATHESIS_HOOKS="hooks",
               PYTHONPATH=str(ROOT / "tests" / "api"))
    checks = ",".join([
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
        "missing_required_header", "ignored_auth", "errors_are_problem_json",
    ])
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", str(ROOT / "openapi.yaml"),
         "--url", gateway, "--checks", checks,
         "--max-examples", os.environ.get("API_TEST_EXAMPLES", "25"),
         "--generation-deterministic", "--request-timeout", "30", "--no-color"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
