#!/usr/bin/env python3
"""moto's server, one request at a time: `moto_atomic.py -H 127.0.0.1 -p 4566`.

DynamoDB applies a conditional write atomically: of two `UpdateItem`s conditioned on the same
version, exactly one succeeds. moto's server runs requests on threads and its backends take no lock,
so both can pass the condition (an e2e test of two concurrent PATCHes with one ETag saw it). Here
every request runs to completion under one lock, which is what the functions rely on from DynamoDB;
moto is one Python process under the GIL, so little concurrency is given up.
"""

import argparse
import signal
import sys
import threading

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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, required=True)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(a.host, a.port, OneAtATime(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
