#!/usr/bin/env python3
"""Lambda's asynchronous invocation, locally, as template.yaml's EventInvokeConfig configures it.

`cargo lambda watch` runs every invocation synchronously and has no retries or failure
destinations. The functions' Lambda endpoint (AWS_ENDPOINT_URL_LAMBDA) points here instead:

- `X-Amz-Invocation-Type: Event` is accepted at once (202) and run in the background against
  `cargo lambda watch`; a function error is retried `MaximumRetryAttempts` times (AWS waits about a
  minute, then two; here LAMBDA_ASYNC_RETRY_DELAY seconds, default 1), an event older than
  `MaximumEventAgeInSeconds` is dropped, and either way the event then goes to the `OnFailure` SQS
  queue (in moto, named after its logical id) as Lambda's invocation record.
- Any other invocation is passed through unchanged.

    lambda_async.py --port 9001 --lambda-url http://127.0.0.1:9000 --template template.yaml \
                    --moto-url http://127.0.0.1:4566
"""

import argparse
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
from samtranslator.yaml_helper import yaml_parse

INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


def binary_of(logical_id):
    """`BulkSyncFunction` -> `bulk-sync`, the project's naming convention."""
    return re.sub(r"(?<!^)([A-Z])", r"-\1", logical_id.removesuffix("Function")).lower()


def invoke_configs(template_path):
    """{function name: (retries, max age s, OnFailure queue logical id or None)}."""
    doc = yaml_parse(Path(template_path).read_text())
    out = {}
    for logical_id, res in doc["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        cfg = res.get("Properties", {}).get("EventInvokeConfig")
        if not cfg:
            continue
        on_failure = cfg.get("DestinationConfig", {}).get("OnFailure", {})
        queue_id = None
        if on_failure.get("Type") == "SQS":
            queue_id = on_failure["Destination"]["Fn::GetAtt"][0]
        out[binary_of(logical_id)] = (int(cfg.get("MaximumRetryAttempts", 2)),
                                      int(cfg.get("MaximumEventAgeInSeconds", 21600)), queue_id)
    return out


def failure_queues(template_path):
    """Logical ids of the SQS queues that are OnFailure destinations (stack.py creates them)."""
    return sorted({q for _, _, q in invoke_configs(template_path).values() if q})


class AsyncInvoker:
    def __init__(self, lambda_url, template_path, sqs, retry_delay):
        self.lambda_url = lambda_url.rstrip("/")
        self.configs = invoke_configs(template_path)
        self.sqs = sqs
        self.retry_delay = retry_delay
        self.events = queue.Queue()
        threading.Thread(target=self.work, daemon=True).start()

    def call(self, function, body, invocation_type="RequestResponse"):
        request = urllib.request.Request(
            f"{self.lambda_url}/2015-03-31/functions/{function}/invocations", data=body,
            headers={"content-type": "application/json", "x-amz-invocation-type": invocation_type},
            method="POST")
        try:
            with urllib.request.urlopen(request, timeout=900) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()
        except OSError as e:
            return 502, {}, json.dumps({"errorMessage": str(e)}).encode()

    def work(self):
        # One event at a time, as the bulk-sync function's reserved concurrency mostly does.
        while True:
            function, body, accepted_at, request_id = self.events.get()
            retries, max_age, queue_id = self.configs.get(function, (2, 21600, None))
            attempts, condition, status, payload = 0, "RetriesExhausted", 0, b""
            while True:
                if time.time() - accepted_at > max_age:
                    condition = "EventAgeExceeded"
                    break
                attempts += 1
                status, _, payload = self.call(function, body)
                if status < 300 or attempts > retries:
                    break
                time.sleep(self.retry_delay * attempts)
            if status < 300 and condition != "EventAgeExceeded":
                continue
            print(f"lambda-async: {function} failed after {attempts} attempt(s) ({condition})",
                  flush=True)
            if queue_id:
                self.to_failure_queue(queue_id, function, body, request_id, attempts, condition,
                                      status, payload)

    def to_failure_queue(self, queue_id, function, body, request_id, attempts, condition, status,
                         payload):
        try:
            response_payload = json.loads(payload or b"null")
        except ValueError:
            response_payload = payload.decode(errors="replace")
        record = {
            "version": "1.0",
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST",
                "condition": condition, "approximateInvokeCount": attempts,
            },
            "requestPayload": json.loads(body or b"null"),
            "responseContext": {"statusCode": status, "executedVersion": "$LATEST",
                                "functionError": "Unhandled"},
            "responsePayload": response_payload,
        }
        url = self.sqs.get_queue_url(QueueName=queue_id)["QueueUrl"]
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))


def serve(port, invoker):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            m = INVOKE.match(self.path.split("?")[0])
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if not m:
                return self.reply(404, {}, b'{"message":"unknown path"}')
            function = m[1]
            invocation_type = self.headers.get("x-amz-invocation-type", "RequestResponse")
            if invocation_type == "Event":
                request_id = str(uuid.uuid4())
                invoker.events.put((function, body, time.time(), request_id))
                return self.reply(202, {"x-amzn-requestid": request_id}, b"")
            status, headers, payload = invoker.call(function, body, invocation_type)
            self.reply(status, {k: v for k, v in headers.items()
                                if k.lower() in ("content-type", "x-amz-function-error")}, payload)

        def reply(self, status, headers, payload):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lambda-url", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--moto-url", required=True)
    p.add_argument("--retry-delay", type=float, default=1.0)
    a = p.parse_args()
    sqs = boto3.client("sqs", endpoint_url=a.moto_url, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    serve(a.port, AsyncInvoker(a.lambda_url, a.template, sqs, a.retry_delay))


if __name__ == "__main__":
    main()
