#!/usr/bin/env python3
"""Lambda's SQS event source mapping, locally, as template.yaml configures it.

For every SQS event source mapping (`AWS::Lambda::EventSourceMapping`), the queue (in moto, named after its logical id) is
created with the template's attributes (FIFO, visibility timeout, the redrive policy to its
dead-letter queue) and polled: up to `BatchSize` messages are received, sent to the function on
`cargo lambda watch` as Lambda's SQS event, and deleted when handled. With
`FunctionResponseTypes: [ReportBatchItemFailures]` only the messages named in the answer's
`batchItemFailures` stay; a function error (or an unreadable answer) leaves the whole batch. A
message left on the queue comes back when its visibility timeout ends, and moto moves it to the
dead-letter queue once it has been received `maxReceiveCount` times, as SQS does.

    sqs_poller.py --lambda-url http://127.0.0.1:9000 --template template.yaml \
                  --moto-url http://127.0.0.1:4566 [--provision-only]
"""

import argparse
import hashlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from samtranslator.yaml_helper import yaml_parse

from lambda_async import binary_of

REGION = "us-east-1"


def logical_id(ref):
    """`!GetAtt HookQueue.Arn` as the SAM loader reads it."""
    if isinstance(ref, dict) and "Fn::GetAtt" in ref:
        target = ref["Fn::GetAtt"]
        return (target if isinstance(target, list) else target.split("."))[0]
    raise ValueError(f"expected !GetAtt <Queue>.Arn, got {ref!r}")


def queue_name(queue_id, props):
    return queue_id + (".fifo" if props.get("FifoQueue") else "")


def mappings(template_path):
    """(function, queue id, batch size, report failures) for every SQS event source mapping of
    the template (`AWS::Lambda::EventSourceMapping` from a queue to a `!Ref`'d function)."""
    doc = yaml_parse(Path(template_path).read_text())
    out = []
    for res in doc["Resources"].values():
        if res.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        p = res["Properties"]
        queue_id = logical_id(p["EventSourceArn"])
        if doc["Resources"][queue_id]["Type"] != "AWS::SQS::Queue":
            continue
        out.append((binary_of(p["FunctionName"]["Ref"]), queue_id, int(p.get("BatchSize", 10)),
                    "ReportBatchItemFailures" in p.get("FunctionResponseTypes", [])))
    return doc, out


def provision(sqs, doc, queue_id):
    """Create the queue and its dead-letter queue as the template defines them; its URL."""
    props = doc["Resources"][queue_id]["Properties"]
    attributes = {}
    if props.get("FifoQueue"):
        attributes["FifoQueue"] = "true"
        attributes["ContentBasedDeduplication"] = str(
            props.get("ContentBasedDeduplication", False)).lower()
    if "VisibilityTimeout" in props:
        attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"])
    redrive = props.get("RedrivePolicy")
    if redrive:
        dlq_id = logical_id(redrive["deadLetterTargetArn"])
        dlq_url = provision(sqs, doc, dlq_id)
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": int(redrive["maxReceiveCount"])})
    return sqs.create_queue(QueueName=queue_name(queue_id, props),
                            Attributes=attributes)["QueueUrl"]


def event_of(messages, queue_arn):
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": m.get("MessageAttributes", {}),
        "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    } for m in messages]}


def poll(sqs, lambda_url, function, queue_url, batch_size, report_failures, stop):
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    url = f"{lambda_url}/2015-03-31/functions/{function}/invocations"
    while not stop.is_set():
        try:
            # Short polls, 0.1 s apart when the queue is empty: a stop is seen at once, and a
            # message waits at most that long (Lambda's own poller long-polls; the latency is
            # the same order).
            received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch_size,
                                           WaitTimeSeconds=0, AttributeNames=["All"],
                                           MessageAttributeNames=["All"])
        except Exception as e:  # moto going away at shutdown, or a transient error
            print(f"sqs_poller: receive from {queue_url}: {e}", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        messages = received.get("Messages", [])
        if not messages:
            time.sleep(0.1)
            continue
        request = urllib.request.Request(url, data=json.dumps(event_of(messages, queue_arn)).encode(),
                                         headers={"content-type": "application/json"},
                                         method="POST")
        keep = {m["MessageId"] for m in messages}
        try:
            with urllib.request.urlopen(request, timeout=900) as r:
                answer = json.loads(r.read() or b"{}")
            if r.headers.get("X-Amz-Function-Error"):
                raise ValueError(f"function error: {answer}")
            failures = {f.get("itemIdentifier") for f in (answer or {}).get("batchItemFailures", [])}
            # Without ReportBatchItemFailures the answer is ignored: a success deletes the batch.
            keep = failures & keep if report_failures else set()
        except (OSError, ValueError) as e:
            print(f"sqs_poller: {function}: {e}; the batch stays on the queue", file=sys.stderr,
                  flush=True)
        done = [m for m in messages if m["MessageId"] not in keep]
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lambda-url", required=False)
    p.add_argument("--template", required=True)
    p.add_argument("--moto-url", required=True)
    p.add_argument("--provision-only", action="store_true",
                   help="create the queues, print {queue id: url} as JSON, and exit")
    a = p.parse_args()
    sqs = boto3.client("sqs", endpoint_url=a.moto_url, region_name=REGION,
                       aws_access_key_id="local", aws_secret_access_key="local")
    doc, found = mappings(a.template)
    urls = {queue_id: provision(sqs, doc, queue_id) for _, queue_id, _, _ in found}
    if a.provision_only:
        print(json.dumps(urls))
        return
    stop = threading.Event()
    threads = [threading.Thread(target=poll, args=(sqs, a.lambda_url, function, urls[queue_id],
                                                   batch, report, stop), daemon=True)
               for function, queue_id, batch, report in found]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":
    main()
