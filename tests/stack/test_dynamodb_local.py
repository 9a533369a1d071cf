"""What the store relies on from DynamoDB, checked against the DynamoDB Local the stack runs (the
behaviours moto needed a wrapper for, now answered by AWS's own implementation): two conditional
writes on one version, exactly one wins; a paged, segmented index scan with writes between its
pages returns every item that stayed exactly once; a cancelled transaction names the item whose
condition failed and writes nothing; a scan page stops at 1 MB; and what DynamoDB Local reports
as consumed capacity for the writes the sync makes (README "Benchmark")."""

import json
import subprocess
import sys
import threading

import boto3
import pytest

from conftest import ROOT

SPEC = json.loads((ROOT / "infra/local/table.json").read_text())
SPEC.pop("TimeToLiveAttribute")
COUNTER = iter(range(10**6))


@pytest.fixture(scope="module")
def ddb():
    p = subprocess.Popen([sys.executable, str(ROOT / "infra/local/aws_local.py"), "for-tests",
                          "dynamodb"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("PORT "), line
    yield boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{line.split()[1]}",
                       region_name="us-east-1", aws_access_key_id="local",
                       aws_secret_access_key="local")
    p.stdin.close()
    p.wait(timeout=30)


@pytest.fixture
def table(ddb):
    name = f"spec-{next(COUNTER)}"
    ddb.create_table(TableName=name, **SPEC)
    return name


def user(i, **extra):
    return {"pk": {"S": f"USER#{i:06d}"}, "sk": {"S": "PROFILE"},
            "gsi1pk": {"S": f"USERNAME#{i % 4}"}, "gsi1sk": {"S": f"user{i % 13:03d}"},
            "gsi2pk": {"S": f"EMAIL#{i % 4}"}, "gsi2sk": {"S": f"user{i}@example.org"},
            "kc_hash": {"S": "h"}, "status": {"S": "active"}, "version": {"N": "1"}, **extra}


def test_of_two_conditional_writes_on_one_version_exactly_one_wins(ddb, table):
    for round_ in range(20):
        ddb.put_item(TableName=table, Item=user(round_))
        wins, errors = [], []

        def edit(who):
            try:
                ddb.update_item(
                    TableName=table, Key={"pk": {"S": f"USER#{round_:06d}"}, "sk": {"S": "PROFILE"}},
                    UpdateExpression="SET version = :next, editor = :who",
                    ConditionExpression="version = :seen",
                    ExpressionAttributeValues={":seen": {"N": "1"}, ":next": {"N": "2"},
                                               ":who": {"S": who}})
                wins.append(who)
            except ddb.exceptions.ConditionalCheckFailedException:
                pass
            except Exception as e:  # anything else fails the test below
                errors.append(e)

        threads = [threading.Thread(target=edit, args=(f"admin{k}",)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(wins) == 1, wins
        stored = ddb.get_item(TableName=table, Key={"pk": {"S": f"USER#{round_:06d}"},
                                                    "sk": {"S": "PROFILE"}})["Item"]
        assert stored["editor"]["S"] == wins[0]


def test_a_paged_segmented_index_scan_with_writes_between_pages_returns_every_staying_item_once(ddb, table):
    for i in range(300):
        ddb.put_item(TableName=table, Item=user(i))
    seen, total_pages = [], 0
    for segment in range(3):
        start, pages = None, 0
        while True:
            args = {"TableName": table, "IndexName": "SyncDigest", "Limit": 9,
                    "Segment": segment, "TotalSegments": 3}
            if start:
                args["ExclusiveStartKey"] = start
            page = ddb.scan(**args)
            seen += [item["pk"]["S"] for item in page["Items"]]
            pages += 1
            total_pages += 1
            if pages == 3:  # a new user, a deleted one, one renamed (moved in the index order)
                ddb.put_item(TableName=table, Item=user(1000 + segment))
                ddb.delete_item(TableName=table, Key={"pk": {"S": f"USER#{200 + segment:06d}"},
                                                      "sk": {"S": "PROFILE"}})
                ddb.put_item(TableName=table, Item=user(100 + segment, gsi1sk={"S": "zzz"}))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    changed = {f"USER#{i:06d}" for i in (*range(1000, 1003), *range(200, 203), *range(100, 103))}
    staying = [f"USER#{i:06d}" for i in range(300) if f"USER#{i:06d}" not in changed]
    assert total_pages > 30, "the index was read in many pages"
    assert sorted(p for p in seen if p not in changed) == staying


def test_a_cancelled_transaction_names_the_failed_condition_and_writes_nothing(ddb, table):
    ddb.put_item(TableName=table, Item=user(1))
    puts = [{"Put": {"TableName": table, "Item": user(i),
                     "ConditionExpression": "attribute_not_exists(pk)"}} for i in (0, 1, 2)]
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as e:
        ddb.transact_write_items(TransactItems=puts)
    codes = [r["Code"] for r in e.value.response["CancellationReasons"]]
    assert codes == ["None", "ConditionalCheckFailed", "None"]
    for i in (0, 2):
        assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": f"USER#{i:06d}"},
                                                                "sk": {"S": "PROFILE"}})


def test_a_scan_page_stops_at_one_megabyte(ddb, table):
    filler = "x" * 100_000
    for i in range(25):  # 2.5 MB
        ddb.put_item(TableName=table, Item=user(i, filler={"S": filler}))
    page = ddb.scan(TableName=table)
    assert "LastEvaluatedKey" in page
    assert 8 <= page["Count"] <= 11, page["Count"]


def test_consumed_capacity_of_the_writes_a_sync_makes(ddb, table):
    """A plain or conditional put of a small item reports one unit for the table and one per index
    that holds it, as DynamoDB bills it. A transaction is under-reported: DynamoDB bills two units
    per item on the table (and one per index entry); DynamoDB Local reports a fixed 2 for the
    table and each index, whatever the number of items. The benchmark therefore shows the billed
    units computed from the item sizes next to what DynamoDB Local reports."""
    put = ddb.put_item(TableName=table, Item=user(1), ReturnConsumedCapacity="INDEXES",
                       ConditionExpression="attribute_not_exists(pk)")["ConsumedCapacity"]
    assert put["Table"]["CapacityUnits"] == 1.0
    assert {k: v["CapacityUnits"] for k, v in put["GlobalSecondaryIndexes"].items()} == {
        "GSI1": 1.0, "GSI2": 1.0, "SyncDigest": 1.0}
    assert put["CapacityUnits"] == 4.0
    tx = ddb.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": user(i),
                                "ConditionExpression": "attribute_not_exists(pk)"}}
                       for i in range(10, 20)],
        ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"][0]
    billed = 10 * 2 + 10 * 3
    assert tx["CapacityUnits"] < billed, "DynamoDB Local under-reports transactions"
