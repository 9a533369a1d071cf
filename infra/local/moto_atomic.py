#!/usr/bin/env python3
"""moto's server, one request at a time: `moto_atomic.py -H 127.0.0.1 -p 4566`.

DynamoDB applies a conditional write atomically: of two `UpdateItem`s conditioned on the same
version, exactly one succeeds. moto's server runs requests on threads and its backends take no lock,
so both can pass the condition (an e2e test of two concurrent PATCHes with one ETag saw it). Here
every request runs to completion under one lock, which is what the functions rely on from DynamoDB;
moto is one Python process under the GIL, so little concurrency is given up.

moto rolls a failed `TransactWriteItems` back by deep-copying every table it touches, once per item
of the transaction: a 100-item transaction on a 10 000-user table copied a million items, and a
first sync of 10 000 users (one transaction per 100 new users) ran moto out of memory. Here the
rollback keeps only the items the transaction writes; the outcome (all or nothing) is moto's own.

moto answers every page of an index scan by collecting, sorting and walking the whole index up to
the page's start key: reading a 100 000-user index in pages of 1 000 items took more than an hour.
Here an index's order (per scan segment) is computed by a scan's first page and kept for its
following pages until the next request that is not a DynamoDB read; a page starts by binary search
in it. What each page holds is moto's own answer
(its own loop, limit, size cap, filters and projection run on the kept order).
"""

import argparse
import bisect
import copy
import json
import signal
import sys
import threading
from types import SimpleNamespace

import moto.dynamodb.models as ddb_models

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


# DynamoDB requests that change no table: the kept index orders stay valid across them.
READS = {"Scan", "Query", "GetItem", "BatchGetItem", "DescribeTable", "ListTables",
         "DescribeTimeToLive"}


class KeptOrders:
    """Each index's items in scan order, per (table, index, segment), until the next write."""

    def __init__(self):
        self.orders = {}

    def forget_unless_read(self, environ):
        service, _, op = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        if not (service.startswith("DynamoDB_") and op in READS):
            self.orders.clear()


KEPT = KeptOrders()


def index_scan_from_a_kept_order(original):
    def scan(self, filters, limit, exclusive_start_key, filter_expression=None, index_name=None,
             consistent_read=False, projection_expression=None, segments=(None, None)):
        args = (filters, limit, exclusive_start_key, filter_expression, index_name,
                consistent_read, projection_expression)
        if not index_name or consistent_read or index_name not in {i.name for i in self.all_indexes()}:
            return original(self, *args, segments=segments)
        schema = self.get_index(index_name).schema
        hash_attrs = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
        range_attrs = [k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"]
        hash_attrs.append(self.hash_key_attr)
        range_attrs.append(self.range_key_attr)
        by = self._generate_attr_to_sort_by(hash_attrs, range_attrs)
        key = (id(self), index_name, tuple(segments))
        # A scan's first page computes the order; its following pages use it.
        if not exclusive_start_key or key not in KEPT.orders:
            ordered = [i for i in original_sorted_items(self, hash_attrs, range_attrs,
                                                        original_has_idx_items(self, index_name))
                       if i.is_within_segment(segments)]
            try:
                keys = [tuple(i.attrs[a].cast_value for a in by) for i in ordered]
            except (KeyError, TypeError):
                keys = None  # an order this shortcut cannot search: moto's own walk
            KEPT.orders[key] = (ordered, keys)
        ordered, keys = KEPT.orders[key]
        if keys is None:
            return original(self, *args, segments=segments)
        start = 0
        if exclusive_start_key:
            try:
                after = tuple(ddb_models.DynamoType(exclusive_start_key[a]).cast_value for a in by)
                start = bisect.bisect_right(keys, after)
            except (KeyError, TypeError):
                return original(self, *args, segments=segments)
        rest = ordered[start:]
        # moto's scan, on the items after the start key: one request at a time, so the instance
        # attributes below are seen by this call only.
        self.has_idx_items = lambda _name: rest
        self.sorted_items = lambda _h, _r, items: items
        try:
            return original(self, filters, limit, None, *args[3:], segments=segments)
        finally:
            del self.has_idx_items
            del self.sorted_items
    original_sorted_items = ddb_models.Table.sorted_items
    original_has_idx_items = ddb_models.Table.has_idx_items
    return scan


class OneAtATime:
    """WSGI middleware: the wrapped app handles one request at a time, body included."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            KEPT.forget_unless_read(environ)
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                if hasattr(body, "close"):
                    body.close()


def transact_write_items_keeping_only_touched_items(original):
    def transact_write_items(self, transact_items):
        saved = {}
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            name = op.get("TableName")
            if name not in self.tables:
                continue
            table = self.tables[name]
            key = op.get("Key")
            if key is None and "Item" in op:
                attrs = op["Item"]
                key = {a: attrs[a] for a in (table.hash_key_attr, table.range_key_attr)
                       if a is not None and a in attrs}
            if not key:
                continue
            current = self.get_item(name, key)
            saved[(name, json.dumps(key, sort_keys=True))] = (
                name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None)
        # The tables themselves are not copied: a "copy" is the table, so moto's own rollback
        # puts back the object it already has, and the saved items are restored below.
        no_table_copies = SimpleNamespace(
            deepcopy=lambda x, *a: x if isinstance(x, ddb_models.Table) else copy.deepcopy(x, *a))
        ddb_models.copy = no_table_copies
        try:
            return original(self, transact_items)
        except Exception:
            for name, key, old in saved.values():
                if old is None:
                    self.delete_item(name, key)
                else:
                    self.put_item(name, old)
            raise
        finally:
            ddb_models.copy = copy
    return transact_write_items


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, required=True)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    backend = ddb_models.DynamoDBBackend
    backend.transact_write_items = transact_write_items_keeping_only_touched_items(
        backend.transact_write_items)
    ddb_models.Table.scan = index_scan_from_a_kept_order(ddb_models.Table.scan)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(a.host, a.port, OneAtATime(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
