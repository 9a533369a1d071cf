#!/usr/bin/env python3
"""`make bench-webhooks` (part of `make bench`): how long a change made in Keycloak takes to reach
DynamoDB through the webhook path, with no sync run.

The whole local stack runs as `make dev` runs it (`stack.py up-all`, free ports, a scratch
DEV_DIR): the emulator sends signed webhooks to the gateway's /hooks/keycloak, the hook queues
them in moto's SQS, the local event source mapping runs the consumer under `cargo lambda watch`.
BENCH_WEBHOOK_CHANGES users (default 200) are created and synced once; then each gets one change
through Keycloak's admin API, one at a time. The latency of a change is from just before the
admin call to the store record's `updated_at` (the consumer's write), read back from DynamoDB.
Prints p50, p90, p99 and max.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHANGES = int(os.environ.get("BENCH_WEBHOOK_CHANGES", "200"))
# The demo realm's dev secret (infra/keycloak/realm.json), public by design.
ADMIN_SECRET = "dev-only-user-sync-admin-secret-not-for-production"


sys.path.insert(0, str(ROOT / "infra" / "local"))
from aws_local import free_port  # noqa: E402  (one way to pick a port for every local stack)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def call(method, url, body=None, token=None, form=None, timeout=300):
    headers = {}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as r:
        text = r.read()
        return json.loads(text) if text else None


def main():
    dev = tempfile.mkdtemp(prefix="bench-webhooks-")
    env = dict(os.environ, DEV_DIR=dev, TABLE_NAME="bench-webhooks", STACK_NO_RELOAD="1",
               **{k: str(free_port()) for k in ("KEYCLOAK_PORT", "MOTO_PORT", "DYNAMODB_PORT", "LAMBDA_PORT",
                                                "LAMBDA_ASYNC_PORT", "GATEWAY_PORT")})
    env.pop("KEYCLOAK_URL", None)
    stack = [sys.executable, str(ROOT / "infra/local/stack.py")]
    subprocess.run(stack + ["up-all"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        latencies = measure(env)
    finally:
        subprocess.run(stack + ["down"], env=env, stdout=subprocess.DEVNULL)
    print(f"\nWebhook path, Keycloak admin write to the DynamoDB write, {len(latencies)} changes "
          "one at a time:\n")
    print("| p50 (ms) | p90 | p99 | max |")
    print("|---:|---:|---:|---:|")
    print(f"| {percentile(latencies, 50):.0f} | {percentile(latencies, 90):.0f} | "
          f"{percentile(latencies, 99):.0f} | {max(latencies):.0f} |")


def measure(env):
    import boto3

    keycloak = f"http://127.0.0.1:{env['KEYCLOAK_PORT']}"
    lam = f"http://127.0.0.1:{env['LAMBDA_PORT']}"
    ddb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{env['DYNAMODB_PORT']}",
                       region_name="us-east-1", aws_access_key_id="local",
                       aws_secret_access_key="local")
    call("POST", f"{keycloak}/_emulator/realms/demo/users/bulk",
         {"count": CHANGES, "prefix": "wh", "password": "bench-password-1"})
    # One full sync stores them (and starts the functions under cargo lambda watch).
    call("POST", f"{lam}/2015-03-31/functions/bulk-sync/invocations", {"mode": "full"}, timeout=900)
    token = call("POST", f"{keycloak}/realms/demo/protocol/openid-connect/token",
                 form={"grant_type": "client_credentials", "client_id": "user-sync-admin",
                       "client_secret": ADMIN_SECRET})["access_token"]
    users = call("GET", f"{keycloak}/admin/realms/demo/users?search=wh&max={CHANGES}", token=token)

    def change(user, name, limit):
        started = time.time() * 1000
        call("PUT", f"{keycloak}/admin/realms/demo/users/{user['id']}", {"firstName": name},
             token=token)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            item = ddb.get_item(TableName="bench-webhooks", Key={
                "pk": {"S": f"USER#{user['id']}"}, "sk": {"S": "PROFILE"}}).get("Item", {})
            if item.get("first_name", {}).get("S") == name:
                return int(item["updated_at"]["N"]) - started
            time.sleep(0.02)
        raise RuntimeError(f"{user['username']}: not applied within {limit} s")

    # The first delivery starts the hook and the consumer (`cargo run` each): not timed.
    change(users[0], "Warm", 120)
    return [change(u, f"Changed{i}", 30) for i, u in enumerate(users)]


if __name__ == "__main__":
    main()
