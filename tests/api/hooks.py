"""Schemathesis hooks for `make api-test` (tests/stack/test_openapi.py runs it).

- Bearer routes get a real admin token: alice signs in through the gateway itself (so her session
  is recorded as every client's is), from a loopback address of her own, so the abuse limits that
  the generated logins trip never block her. Schemathesis reuses ids it saw in responses, so
  alice herself is kept out of the path parameters: a generated password reset on her own id
  would sign the run out for good.
- Two checks of our own: every answer of a function is marked not to be cached or sniffed
  (`answers_are_never_cached_or_sniffed`), and every error the functions answer is
  `application/problem+json` with the status in its body. API Gateway's own answers, before any function runs, are the exceptions:
  `401 {"message": "Unauthorized"}` from the JWT authorizer, `404 {"message": "Not Found"}`
  for a method or path that has no route, and `429 {"message": "Too Many Requests"}` from the
  route throttling.
"""

import http.client
import json
import os
from urllib.parse import urlsplit

import schemathesis

GATEWAY = urlsplit(os.environ["API_TEST_GATEWAY"])
SOURCE = ("127.45.45.45", 0)
GATEWAY_ANSWERS = {401: {"message": "Unauthorized"}, 404: {"message": "Not Found"},
                   429: {"message": "Too Many Requests"}}
SIGNED_IN = set()  # the ids of the users this run signs in as


def sign_in(username, password):
    conn = http.client.HTTPConnection(GATEWAY.hostname, GATEWAY.port, timeout=30,
                                      source_address=SOURCE)
    conn.request("POST", "/auth/login", json.dumps({"username": username, "password": password}),
                 {"content-type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read() or b"null")
    if response.status != 200:
        raise RuntimeError(f"sign-in of {username} failed: {response.status} {body}")
    SIGNED_IN.add(body["user"]["id"])
    return body["tokens"]["accessToken"]


@schemathesis.auth(refresh_interval=60)
class AdminToken:
    def get(self, case, ctx):
        return sign_in("alice", "alice-dev-password")

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    return not path_parameters or path_parameters.get("id") not in SIGNED_IN


@schemathesis.check
def answers_are_never_cached_or_sniffed(ctx, response, case):
    """Every answer of a function says `Cache-Control: no-store`, `Pragma: no-cache` and
    `X-Content-Type-Options: nosniff` (API Gateway's own answers cannot carry them)."""
    try:
        if json.loads(response.text or "null") in GATEWAY_ANSWERS.values():
            return None
    except ValueError:
        pass
    for name, value in [("cache-control", "no-store"), ("pragma", "no-cache"),
                        ("x-content-type-options", "nosniff")]:
        got = (response.headers.get(name) or [None])[0]
        if got != value:
            raise AssertionError(f"{response.status_code} answer has {name}: {got!r}")
    return None


@schemathesis.check
def errors_are_problem_json(ctx, response, case):
    """Every 4xx/5xx is a problem (RFC 9457) whose `status` is the response's."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    body = response.text
    if content_type == "application/json" \
            and GATEWAY_ANSWERS.get(response.status_code) == json.loads(body or "null"):
        return None  # API Gateway itself, before any function runs
    if content_type != "application/problem+json":
        raise AssertionError(f"{response.status_code} answered as {content_type!r}: {body[:200]}")
    problem = json.loads(body)
    if problem.get("status") != response.status_code or not problem.get("code"):
        raise AssertionError(f"problem body does not match its response: {body[:200]}")
    return None
