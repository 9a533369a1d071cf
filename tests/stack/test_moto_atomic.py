"""infra/local/moto_atomic.py answers a paged index scan exactly as moto itself does (its kept
index order is a speed-up only), also when the table changes between pages."""

import subprocess
import sys
import time

import boto3
import pytest
from moto import mock_aws

from conftest import ROOT, free_port

TABLE = {
    "TableName": "t",
    "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"}
                             for a in ("pk", "sk", "gpk", "gsk")],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [{
        "IndexName": "ByG",
        "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"},
                      {"AttributeName": "gsk", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["v"]},
    }],
    "BillingMode": "PAY_PER_REQUEST",
}


def item(i):
    # Shared GSI sort keys (i % 7) make the table keys decide the order within them.
    return {"pk": {"S": f"USER#{i:04d}"}, "sk": {"S": "PROFILE"}, "gpk": {"S": f"G#{i % 3}"},
            "gsk": {"S": f"name{i % 7}"}, "v": {"S": str(i)}, "big": {"S": "x" * (i % 50)}}


def session(ddb):
    """Fills the table, pages the index in 3 segments of 9 items, and changes the table between
    pages (a new item, a removed one, one moved in the order). Answers every response."""
    ddb.create_table(**TABLE)
    for i in range(300):
        ddb.put_item(TableName="t", Item=item(i))
    ddb.put_item(TableName="t", Item={"pk": {"S": "SESSION#1"}, "sk": {"S": "x"}})  # not indexed
    pages = []
    for segment in range(3):
        start, n = None, 0
        while True:
            args = {"TableName": "t", "IndexName": "ByG", "Limit": 9, "Segment": segment,
                    "TotalSegments": 3}
            if start:
                args["ExclusiveStartKey"] = start
            page = ddb.scan(**args)
            pages.append((page["Items"], page.get("LastEvaluatedKey"), page["Count"]))
            n += 1
            if n == 3:
                ddb.put_item(TableName="t", Item=item(1000 + segment))
                ddb.delete_item(TableName="t", Key={"pk": {"S": f"USER#{200 + segment:04d}"},
                                                    "sk": {"S": "PROFILE"}})
                moved = item(100 + segment)
                moved["gsk"] = {"S": "name9"}
                ddb.put_item(TableName="t", Item=moved)
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    return pages


def client(**kw):
    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", **kw)


@pytest.fixture
def server():
    port = free_port()
    p = subprocess.Popen([sys.executable, str(ROOT / "infra/local/moto_atomic.py"), "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ddb = client(endpoint_url=f"http://127.0.0.1:{port}")
    for _ in range(100):
        try:
            ddb.list_tables()
            break
        except Exception:  # not listening yet
            time.sleep(0.1)
    yield ddb
    p.terminate()
    p.wait()


def test_paged_index_scans_answer_what_moto_answers_with_writes_between_pages(server):
    with mock_aws():
        expected = session(client())
    got = session(server)
    assert len(got) > 30, "the index was read in many pages"
    assert got == expected
