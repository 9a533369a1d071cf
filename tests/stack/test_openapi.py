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


SECURITY_HEADERS = {"cache-control": "no-store", "pragma": "no-cache",
                    "x-content-type-options": "nosniff"}
GATEWAY_OWN = [(401, {"message": "Unauthorized"}), (404, {"message": "Not Found"}),
               (429, {"message": "Too Many Requests"})]


def call(gateway, method, path, body=None, token=None):
    """One request through the gateway from a loopback address of this test's own."""
    import http.client
    from urllib.parse import urlsplit
    url = urlsplit(gateway)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30,
                                      source_address=("127.46.46.46", 0))
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, None if body is None else json.dumps(body), headers)
    response = conn.getresponse()
    text = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, text


def assert_security_headers(answer, route):
    status, headers, _ = answer
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (route, status, name, headers)


def test_every_route_answers_with_no_store_and_nosniff(gateway):
    """Every route of openapi.yaml, as an admin, with a body every route refuses (so nothing
    changes), plus the token answers themselves: the function's answer carries the headers."""
    import uuid
    login = call(gateway, "POST", "/auth/login",
                 {"username": "alice", "password": "alice-dev-password"})
    assert login[0] == 200, login
    assert_security_headers(login, "POST /auth/login")
    tokens = json.loads(login[2])["tokens"]
    refreshed = call(gateway, "POST", "/auth/refresh", {"refreshToken": tokens["refreshToken"]})
    assert refreshed[0] == 200, refreshed
    assert_security_headers(refreshed, "POST /auth/refresh")
    token = json.loads(refreshed[2])["tokens"]["accessToken"]
    routes = documented_routes()
    assert len(routes) >= 20
    for method, path in sorted(routes):
        concrete = path.replace("{id}", str(uuid.uuid4())).replace("{sid}", str(uuid.uuid4())) \
                       .replace("{runId}", "no-such-run")
        body = {"notAField": True} if method in {"POST", "PATCH", "PUT"} else None
        answer = call(gateway, method, concrete, body, token)
        route = f"{method} {path}"
        assert (answer[0], json.loads(answer[2] or b"null")) not in GATEWAY_OWN, (route, answer)
        assert_security_headers(answer, route)


def test_schemathesis_finds_no_failure_against_the_local_gateway(gateway):
    env = dict(os.environ, API_TEST_GATEWAY=gateway, SCHEMATHESIS_HOOKS="hooks",
               PYTHONPATH=str(ROOT / "tests" / "api"))
    checks = ",".join([
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
        "missing_required_header", "ignored_auth", "errors_are_problem_json",
        "answers_are_never_cached_or_sniffed",
    ])
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", str(ROOT / "openapi.yaml"),
         "--url", gateway, "--checks", checks,
         "--max-examples", os.environ.get("API_TEST_EXAMPLES", "25"),
         "--generation-deterministic", "--request-timeout", "30", "--no-color"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
