#!/usr/bin/env python3
"""The demo app of `make dev` (http://127.0.0.1:3001): a page that signs in on Keycloak's page with
keycloak-js and calls the API (app.js), and a small back end for the server-side flow:
`/sign-in` sends the browser to the API's /auth/authorize, `/signed-in` redeems the handle the
API sends back (POST /auth/callback/redeem) and shows who signed in. No token is kept.

    serve.py --port 3001 --api http://127.0.0.1:3000 --keycloak http://127.0.0.1:8080 \
             --realm demo --client user-sync-web
"""

import argparse
import html
import json
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/vendor/keycloak.js": ("node_modules/keycloak-js/lib/keycloak.js", "text/javascript; charset=utf-8"),
}


def page(title, state, text):
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1><p id=\"status\" data-state=\"{state}\">"
            f"{html.escape(text)}</p><p><a href=\"/\">Back</a></p></body></html>").encode()


def handler(args):
    class Demo(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # the query carries the handle: log the path only
            print(f"demo: {self.command} {urllib.parse.urlsplit(self.path).path}", flush=True)

        def answer(self, status, body, content_type="text/html; charset=utf-8", headers=()):
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("cache-control", "no-store")
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            origin = f"http://{self.headers.get('host', f'127.0.0.1:{args.port}')}"
            if url.path in FILES:
                name, content_type = FILES[url.path]
                return self.answer(200, (HERE / name).read_bytes(), content_type)
            if url.path == "/config.json":
                config = {"api": args.api, "keycloak": args.keycloak, "realm": args.realm,
                          "clientId": args.client}
                return self.answer(200, json.dumps(config).encode(), "application/json")
            if url.path == "/health":
                return self.answer(200, b"ok", "text/plain")
            if url.path == "/sign-in":
                target = urllib.parse.urlencode({"redirect": f"{origin}/signed-in"})
                return self.answer(302, b"", headers=[("location", f"{args.api}/auth/authorize?{target}")])
            if url.path == "/signed-in":
                return self.signed_in(urllib.parse.parse_qs(url.query))
            self.answer(404, page("Not found", "missing", url.path))

        def signed_in(self, query):
            if "error" in query:
                return self.answer(200, page("Not signed in", "failed", query["error"][0]))
            handle = query.get("handle", [""])[0]
            request = urllib.request.Request(
                f"{args.api}/auth/callback/redeem", data=json.dumps({"handle": handle}).encode(),
                headers={"content-type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    body = json.load(r)
            except urllib.error.HTTPError as e:
                code = json.loads(e.read() or b"{}").get("code", e.code)
                return self.answer(200, page("Not signed in", "failed", f"redeem answered {code}"))
            user = body["user"]["username"]
            return self.answer(200, page("Signed in", "signed-in-server", f"Signed in as {user}"))

    return Demo


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3001)
    p.add_argument("--api", required=True)
    p.add_argument("--keycloak", required=True)
    p.add_argument("--realm", required=True)
    p.add_argument("--client", default="user-sync-web")
    args = p.parse_args()
    ThreadingHTTPServer((args.host, args.port), handler(args)).serve_forever()


if __name__ == "__main__":
    main()
