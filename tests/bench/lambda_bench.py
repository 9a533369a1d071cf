#!/usr/bin/env python3
"""`make bench-lambda` (part of `make bench`): what a function costs before and while it serves.

1. Cold start, per function: the stripped arm64 `bootstrap` size (what Lambda loads, from
   `make lambda-artifacts`), and for the same code built natively with the same profile
   (`cargo build --profile artifact`: this machine is x86_64, and qemu would time the emulator, not
   the code): time from process start to its first poll of `/next` (INIT: config, the secret read
   from moto, the SDK and Keycloak clients built and warmed) and its resident memory then; the
   median of N starts (BENCH_STARTS, default 11), each a new process against a local Runtime API.
2. Login overhead: `POST /auth/login` through the same release login-sync processes (one per
   request in flight, as Lambda runs one request per instance) minus the bare Keycloak token call
   it makes, p50/p99 over BENCH_LOGINS requests (default 200), sequential and 16 in flight.

DynamoDB Local, moto and the Keycloak emulator run as `make up` starts them (free ports, a scratch DEV_DIR).
Prints Markdown tables.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "stack"))
from runtime_api import RuntimeApi, function_environment, http_event  # noqa: E402

STARTS = int(os.environ.get("BENCH_STARTS", "11"))
LOGINS = int(os.environ.get("BENCH_LOGINS", "200"))
IN_FLIGHT = 16
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/Cargo.toml"))
# The demo realm's dev secrets (infra/keycloak/realm.json), public by design.
LOGIN_SECRET = "dev-only-user-sync-secret-not-for-production"
ADMIN_SECRET = "dev-only-user-sync-admin-secret-not-for-production"


sys.path.insert(0, str(ROOT / "infra" / "local"))
from aws_local import free_port  # noqa: E402  (one way to pick a port for every local stack)


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_ms(pid):
    """User + system CPU time a process has used, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Stack:
    """DynamoDB Local, moto and the emulator, as `make up` starts them."""

    def __init__(self):
        self.dev = tempfile.mkdtemp(prefix="bench-lambda-")
        self.env = dict(os.environ, KEYCLOAK_PORT=str(free_port()), MOTO_PORT=str(free_port()),
                        DYNAMODB_PORT=str(free_port()), DEV_DIR=self.dev, TABLE_NAME="bench-lambda")
        self.env.pop("KEYCLOAK_URL", None)
        subprocess.run([sys.executable, str(ROOT / "infra/local/stack.py"), "up"], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)
        self.keycloak = f"http://127.0.0.1:{self.env['KEYCLOAK_PORT']}"
        self.dynamodb = f"http://127.0.0.1:{self.env['DYNAMODB_PORT']}"

    def function_env(self, binary):
        return {"PATH": os.environ.get("PATH", ""), **function_environment(self.env, binary)}

    def down(self):
        subprocess.run([sys.executable, str(ROOT / "infra/local/stack.py"), "down"], env=self.env,
                       stdout=subprocess.DEVNULL)


class Instance:
    """One function process against its own Runtime API, started and through INIT."""

    def __init__(self, stack, binary):
        self.api = RuntimeApi()
        self.proc = None
        self.rss_at_init = None
        self.api.on_first_poll = self.read_rss
        env = {**stack.function_env(binary), **self.api.environment(binary)}
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(ROOT / "target" / "artifact" / binary)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self.api.wait_for_init(30):
            self.stop()
            raise RuntimeError(f"{binary} did not finish INIT: {self.api.init_error}")
        self.init_ms = (self.api.first_poll_at - self.started) * 1000

    def read_rss(self):
        # Called by the Runtime API on the first poll; the process is then blocked on /next.
        while self.proc is None:
            time.sleep(0.0001)
        self.rss_at_init = rss_mib(self.proc.pid)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.api.close()


def cold_starts(stack):
    rows = []
    for binary in FUNCTIONS:
        inits, rss = [], []
        for _ in range(STARTS):
            instance = Instance(stack, binary)
            inits.append(instance.init_ms)
            rss.append(instance.rss_at_init)
            instance.stop()
        arm64 = ROOT / "target" / "lambda" / binary / "bootstrap"
        native = ROOT / "target" / "artifact" / binary
        rows.append((binary, arm64.stat().st_size / 1e6 if arm64.exists() else float("nan"),
                     native.stat().st_size / 1e6, statistics.median(inits), min(inits),
                     max(inits), statistics.median(rss)))
    return rows


def token_call(stack, user):
    username, password = user
    body = urllib.parse.urlencode({
        "grant_type": "password", "client_id": "user-sync", "client_secret": LOGIN_SECRET,
        "username": username, "password": password, "scope": "openid"}).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(f"{stack.keycloak}/realms/demo/protocol/openid-connect/token",
                                data=body, timeout=30) as r:
        r.read()
    return (time.perf_counter() - started) * 1000


def bench_users(stack, count):
    """`count` users with passwords, created through the admin API: one per request in flight,
    since the login throttle counts an account's attempts in flight (as it should)."""
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "user-sync-admin",
                                   "client_secret": ADMIN_SECRET}).encode()
    with urllib.request.urlopen(f"{stack.keycloak}/realms/demo/protocol/openid-connect/token",
                                data=body, timeout=30) as r:
        token = json.loads(r.read())["access_token"]
    users = []
    for i in range(count):
        name = f"bench-{i}"
        user = {"username": name, "email": f"{name}@example.org", "enabled": True,
                "firstName": "Bench", "lastName": str(i),
                "credentials": [{"type": "password", "value": f"{name}-password", "temporary": False}]}
        request = urllib.request.Request(f"{stack.keycloak}/admin/realms/demo/users",
                                         data=json.dumps(user).encode(), method="POST",
                                         headers={"authorization": f"Bearer {token}",
                                                  "content-type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
        users.append((name, f"{name}-password"))
    return users


def login_call(instance, n, user):
    username, password = user
    event = http_event("POST", "/auth/login", {"username": username, "password": password})
    # Each request from an address of its own: the per-IP abuse limits are not what is measured.
    event["requestContext"]["http"]["sourceIp"] = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    started = time.perf_counter()
    kind, answer = instance.api.invoke(event)
    elapsed = (time.perf_counter() - started) * 1000
    if kind != "response" or answer.get("statusCode") != 200:
        raise RuntimeError(f"login failed: {kind} {json.dumps(answer)[:300]}")
    return elapsed


def timed(calls, workers):
    """Latencies of `calls` (functions of a worker index and a request number), `workers` at once."""
    results = [None] * len(calls)
    counter = iter(range(len(calls)))
    lock = threading.Lock()

    def work(worker):
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            results[n] = calls[n](worker, n)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))
    return results


def login_overhead(stack):
    rows = []
    users = bench_users(stack, IN_FLIGHT)
    for workers in (1, IN_FLIGHT):
        instances = [Instance(stack, "login-sync") for _ in range(workers)]
        try:
            # Worker w signs in as users[w] only; the first round warms each instance up.
            timed([lambda w, n: login_call(instances[w], n, users[w])] * workers, workers)
            cpu_before = sum(cpu_ms(i.proc.pid) for i in instances)
            logins = timed([lambda w, n: login_call(instances[w], n + 1000, users[w])] * LOGINS,
                           workers)
            cpu = (sum(cpu_ms(i.proc.pid) for i in instances) - cpu_before) / LOGINS
            tokens = timed([lambda w, n: token_call(stack, users[w])] * LOGINS, workers)
            writes = timed([lambda w, n: store_write(stack, w)] * LOGINS, workers)
        finally:
            for i in instances:
                i.stop()
        rows.append((workers, percentile(logins, 50), percentile(logins, 99),
                     percentile(tokens, 50), percentile(tokens, 99), cpu,
                     percentile(writes, 50)))
    return rows


def store_write(stack, worker):
    """One UpdateItem against DynamoDB Local: what each of a login's store writes costs here."""
    body = json.dumps({"TableName": "bench-lambda", "Key": {"pk": {"S": f"BENCH#{worker}"},
                       "sk": {"S": "X"}}, "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}).encode()
    request = urllib.request.Request(stack.dynamodb, data=body, method="POST", headers={
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.UpdateItem",
        "authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    started = time.perf_counter()
    urllib.request.urlopen(request, timeout=30).read()
    return (time.perf_counter() - started) * 1000


def main():
    subprocess.run(["cargo", "build", "--quiet", "--profile", "artifact",
                    *[a for f in FUNCTIONS for a in ("-p", f)]], cwd=ROOT, check=True)
    parts = os.environ.get("BENCH_LAMBDA_PARTS", "cold,login").split(",")
    stack = Stack()
    try:
        starts = cold_starts(stack) if "cold" in parts else []
        logins = login_overhead(stack) if "login" in parts else []
    finally:
        stack.down()
    print(f"\nCold start, median of {STARTS} starts (INIT = process start to the first /next poll):\n")
    print("| function | arm64 bootstrap (MB) | x86_64 build (MB) | INIT median (ms) | min | max | RSS at INIT (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b, arm, native, med, lo, hi, rss in starts:
        print(f"| {b} | {arm:.2f} | {native:.2f} | {med:.1f} | {lo:.1f} | {hi:.1f} | {rss:.1f} |")
    print(f"\nPOST /auth/login through the release login-sync, {LOGINS} requests, vs the bare token call:\n")
    print("| in flight | login p50 (ms) | login p99 | token call p50 | token call p99 | overhead p50 | overhead p99 | function CPU per login (ms) | one DynamoDB Local UpdateItem p50 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers, l50, l99, t50, t99, cpu, w50 in logins:
        print(f"| {workers} | {l50:.1f} | {l99:.1f} | {t50:.1f} | {t99:.1f} | {l50 - t50:.1f} | {l99 - t99:.1f} | {cpu:.2f} | {w50:.1f} |")


if __name__ == "__main__":
    main()
