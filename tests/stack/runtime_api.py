"""A local Lambda Runtime API (version 2018-06-01) for one function process, as Lambda runs a
`provided.al2023` bootstrap: the process polls `/next`, gets one event, posts its response (or
error) and polls again. Used by the artifact smoke test and the cold-start benchmark.

    api = RuntimeApi()
    proc = subprocess.Popen([bootstrap], env={..., **api.environment("login-sync")})
    api.wait_for_init(timeout=30)        # INIT done: the first poll of /next
    kind, body = api.invoke({...})       # ("response" | "error", parsed JSON)
"""

import json
import queue
import threading
import time
import tomllib
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIX = "/2018-06-01/runtime"
ROOT = Path(__file__).resolve().parents[2]


def manifest_env(binary):
    """The environment a function's Cargo.toml gives it under `cargo lambda watch`."""
    manifest = tomllib.loads((ROOT / "functions" / binary / "Cargo.toml").read_text())
    return manifest["package"]["metadata"]["lambda"]["watch"]["env"]


def function_environment(stack, binary):
    """The variables template.yaml gives the function, with the values of a local stack that
    `make up` started with `stack`'s ports and table name (the CA bundle as one file, as the
    template points at Amazon Linux's)."""
    moto = f"http://127.0.0.1:{stack['MOTO_PORT']}"
    return {
        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL": moto,
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{stack['DYNAMODB_PORT']}",
        "KEYCLOAK_URL": f"http://127.0.0.1:{stack['KEYCLOAK_PORT']}", "KEYCLOAK_REALM": "demo",
        "TABLE_NAME": stack["TABLE_NAME"], "JWT_AUDIENCE": "user-sync",
        "HOOK_QUEUE_URL": f"{moto}/123456789012/HookQueue.fifo",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        **{k: v for k, v in manifest_env(binary).items() if k.startswith(("KEYCLOAK_", "HOOK_"))},
    }


class RuntimeApi:
    def __init__(self, invocation_timeout_s=30):
        self.invocation_timeout_s = invocation_timeout_s
        self.events = queue.Queue()
        self.results = {}
        self.answered = threading.Condition()
        self.first_poll = threading.Event()
        self.first_poll_at = None
        self.on_first_poll = None
        self.init_error = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404, {"errorMessage": "unknown path"})
                if not api.first_poll.is_set():
                    api.first_poll_at = time.monotonic()
                    if api.on_first_poll:
                        api.on_first_poll()
                    api.first_poll.set()
                request_id, payload = api.events.get()
                deadline_ms = int(time.time() * 1000) + api.invocation_timeout_s * 1000
                self.reply(200, payload, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:123456789012:function:local",
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                })

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = body.decode()
                    api.first_poll.set()
                    return self.reply(202, {"status": "OK"})
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    with api.answered:
                        api.results[parts[1]] = (parts[2], body)
                        api.answered.notify_all()
                    return self.reply(202, {"status": "OK"})
                self.reply(404, {"errorMessage": "unknown path"})

            def reply(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return "%s:%d" % self.server.server_address

    def environment(self, function_name, memory_mb=256):
        """What Lambda sets for a function process besides its own variables."""
        return {
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
            "_HANDLER": "bootstrap",
        }

    def wait_for_init(self, timeout):
        """True once the process polled /next (INIT finished); False on an init error or timeout."""
        return self.first_poll.wait(timeout) and self.init_error is None

    def invoke(self, payload, timeout=60):
        request_id = str(uuid.uuid4())
        self.events.put((request_id, payload))
        with self.answered:
            if not self.answered.wait_for(lambda: request_id in self.results, timeout):
                raise TimeoutError(f"no answer to invocation {request_id} within {timeout} s")
            kind, body = self.results[request_id]
        return kind, json.loads(body or b"null")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def http_event(method, path, body=None, headers=None):
    """An API Gateway HTTP API (payload 2.0) event, as the integration sends it."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "smoke-test", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "localhost",
            "domainPrefix": "localhost", "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {path}", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "smoke-test"},
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }
