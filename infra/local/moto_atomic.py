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
"""

import argparse
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


class OneAtATime:
    """WSGI middleware: the wrapped app handles one request at a time, body included."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
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
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(a.host, a.port, OneAtATime(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
