#!/usr/bin/env python3
"""Run a moto server for one test process: pick a free loopback port, start moto on it, print
`PORT <n>` once it answers, and stop it when standard input closes (the test process exited, however
it exited). Tests get a real DynamoDB/Secrets Manager endpoint and leave nothing behind."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port = free_port()
    moto = subprocess.Popen([str(VENV_BIN / "python"), str(Path(__file__).with_name("moto_atomic.py")),
                             "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            break
        except OSError:
            if moto.poll() is not None:
                sys.exit(f"moto exited with {moto.returncode}")
            time.sleep(0.1)
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()  # returns at EOF: the test process is gone
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        try:
            moto.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(moto.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
