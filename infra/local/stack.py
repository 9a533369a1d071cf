#!/usr/bin/env python3
"""Start, check and stop the local stack on loopback: DynamoDB Local (AWS's own), moto (Secrets
Manager, SQS) and the Keycloak emulator, then create the table in DynamoDB Local and the queues and
the two client secrets in moto; with `dev`, also the functions (`cargo lambda watch`) and the local
API Gateway.

    stack.py up | up-all | dev | down | status | env | serve-for-tests

Ports and names come from the environment (defaults in brackets): STACK_BIND [127.0.0.1] (moto
and the emulator; 0.0.0.0 for `sam local`), KEYCLOAK_PORT [8080],
MOTO_PORT [4566], DYNAMODB_PORT [8000], TABLE_NAME [keycloak-user-sync], DEV_DIR [.dev]; GATEWAY_PARAMETERS adds
template parameter overrides for the gateway (`Name=Value ...`). Each function's Keycloak client
and secret name come from its Cargo.toml (`[package.metadata.lambda.watch.env]`), as template.yaml gives
each deployed function its own. With KEYCLOAK_URL set, no emulator is started and that Keycloak
is used (with the same client ids); the two client secrets are then read from
KEYCLOAK_CLIENT_SECRET and KEYCLOAK_ADMIN_CLIENT_SECRET.
With the functions, the webhook queues are polled as Lambda's SQS event source does
(sqs_poller.py), a random webhook secret is put in Secrets Manager, and the emulator is subscribed
to send its events to the gateway's /hooks/keycloak, signed with it (README "Webhooks").
Pids and logs go under DEV_DIR. `up` is safe to run twice. No secret is printed.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aws_local

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# Where moto and the emulator listen: loopback, unless containers must reach them (`sam local`,
# README): STACK_BIND=0.0.0.0.
BIND = os.environ.get("STACK_BIND", HOST)
REGION = os.environ.get("AWS_REGION", "us-east-1")
DEV = Path(os.environ.get("DEV_DIR", ROOT / ".dev")).resolve()
KEYCLOAK_PORT = int(os.environ.get("KEYCLOAK_PORT", "8080"))
MOTO_PORT = int(os.environ.get("MOTO_PORT", "4566"))
DYNAMODB_PORT = int(os.environ.get("DYNAMODB_PORT", "8000"))
LAMBDA_PORT = int(os.environ.get("LAMBDA_PORT", "9000"))
LAMBDA_ASYNC_PORT = int(os.environ.get("LAMBDA_ASYNC_PORT", "9001"))
GATEWAY_PORT = int(os.environ.get("GATEWAY_PORT", "3000"))
# The demo app (infra/demo): a page that signs in on Keycloak's page, served here.
DEMO_PORT = int(os.environ.get("DEMO_PORT", "3001"))
TABLE_NAME = os.environ.get("TABLE_NAME", "keycloak-user-sync")
REALM_FILE = ROOT / "infra" / "keycloak" / "realm.json"
TABLE_FILE = ROOT / "infra" / "local" / "table.json"
EXTERNAL_KEYCLOAK = os.environ.get("KEYCLOAK_URL")
EMULATOR_BIN = Path(
    os.environ.get("KEYCLOAK_EMULATOR_BIN", ROOT / "target" / "debug" / "keycloak-emulator")
)
VENV_BIN = ROOT / ".venv" / "bin"
GATEWAY_BIN = ROOT / "target" / "debug" / "local-gateway"
MOTO_URL = f"http://{HOST}:{MOTO_PORT}"
DYNAMODB_URL = f"http://{HOST}:{DYNAMODB_PORT}"
# Where the hook function reads the webhook secret (functions/keycloak-hook/Cargo.toml).
WEBHOOK_SECRET_ID = "keycloak-user-sync/webhook"
# Queue logical id -> URL in moto, filled by provision().
HOOK_QUEUES = {}

# moto and DynamoDB Local accept any credentials; these keep the SDKs from looking for real ones.
# The SDKs send DynamoDB calls to its service-specific endpoint and every other service to moto.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ENDPOINT_URL": MOTO_URL,
    "AWS_ENDPOINT_URL_DYNAMODB": DYNAMODB_URL,
}


def realm_export():
    return json.loads(REALM_FILE.read_text())


# The demo realm names the gateway's own URLs (the standard flow's redirect URI, the back-channel
# logout URL) and the demo app's at the default ports; a stack on other ports gets a copy naming
# its own.
DEFAULT_URLS = {"http://127.0.0.1:3000": "GATEWAY_PORT", "http://127.0.0.1:3001": "DEMO_PORT"}


def realm_file():
    ports = {"GATEWAY_PORT": GATEWAY_PORT, "DEMO_PORT": DEMO_PORT}
    moved = {url: f"http://{HOST}:{ports[name]}" for url, name in DEFAULT_URLS.items()}
    if all(old == new for old, new in moved.items()):
        return REALM_FILE
    DEV.mkdir(parents=True, exist_ok=True)
    copy = DEV / "realm.json"
    text = REALM_FILE.read_text()
    for old, new in moved.items():
        text = text.replace(old, new)
    copy.write_text(text)
    return copy


def realm_name():
    return os.environ.get("KEYCLOAK_REALM") or realm_export()["realm"]


def function_manifests():
    import tomllib

    return {p.parent.name: tomllib.loads(p.read_text())
            for p in sorted((ROOT / "functions").glob("*/Cargo.toml"))}


def keycloak_clients():
    """The Keycloak clients the functions use locally: {client id: (secret id, env of its secret)}."""
    pairs = {"KEYCLOAK_CLIENT_ID": ("KEYCLOAK_SECRET_ID", "KEYCLOAK_CLIENT_SECRET"),
             "KEYCLOAK_ADMIN_CLIENT_ID": ("KEYCLOAK_ADMIN_SECRET_ID", "KEYCLOAK_ADMIN_CLIENT_SECRET")}
    clients = {}
    for manifest in function_manifests().values():
        env = manifest["package"]["metadata"]["lambda"]["watch"]["env"]
        for id_var, (secret_var, value_var) in pairs.items():
            if id_var in env:
                clients[env[id_var]] = (env[secret_var], value_var)
    return clients


def login_client_id():
    return next(env["KEYCLOAK_CLIENT_ID"] for m in function_manifests().values()
                if "KEYCLOAK_CLIENT_ID" in (env := m["package"]["metadata"]["lambda"]["watch"]["env"]))


def keycloak_url():
    return EXTERNAL_KEYCLOAK or f"http://{HOST}:{KEYCLOAK_PORT}"


def services(with_functions=False):
    out = {
        "dynamodb": {
            "cmd": aws_local.dynamodb_command(DYNAMODB_PORT),
            "port": DYNAMODB_PORT,
            "ready": aws_local.ready_url("dynamodb", DYNAMODB_PORT),
            "hint": "DYNAMODB_PORT",
        },
        "moto": {
            "cmd": aws_local.moto_command(BIND, MOTO_PORT),
            "port": MOTO_PORT,
            "ready": aws_local.ready_url("moto", MOTO_PORT),
            "hint": "MOTO_PORT",
        },
    }
    if not EXTERNAL_KEYCLOAK:
        out["keycloak"] = {
            "cmd": [str(EMULATOR_BIN), "--realm", str(realm_file()), "--host", BIND,
                    "--port", str(KEYCLOAK_PORT)],
            "port": KEYCLOAK_PORT,
            "ready": f"http://{HOST}:{KEYCLOAK_PORT}/_emulator/health",
            "hint": "KEYCLOAK_PORT (or KEYCLOAK_URL for a real Keycloak)",
        }
    if with_functions:
        out["functions"] = {
            "cmd": [str(VENV_BIN / "cargo-lambda"), "lambda", "watch", "--invoke-address", HOST,
                    "--invoke-port", str(LAMBDA_PORT), "--env-file", str(DEV / "functions.env"),
                    "--concurrency", "4", "--quiet"]
                   + (["--ignore-changes"] if os.environ.get("STACK_NO_RELOAD") else []),
            "port": LAMBDA_PORT,
            "ready": None,
            "hint": "LAMBDA_PORT",
        }
        # Asynchronous invokes with EventInvokeConfig's retries and failure queue (lambda_async.py).
        out["lambda-async"] = {
            "cmd": [str(VENV_BIN / "python"), str(ROOT / "infra" / "local" / "lambda_async.py"),
                    "--port", str(LAMBDA_ASYNC_PORT), "--lambda-url", f"http://{HOST}:{LAMBDA_PORT}",
                    "--template", str(ROOT / "template.yaml"), "--moto-url", MOTO_URL,
                    "--retry-delay", os.environ.get("LAMBDA_ASYNC_RETRY_DELAY", "1")],
            "port": LAMBDA_ASYNC_PORT,
            "ready": None,
            "hint": "LAMBDA_ASYNC_PORT",
        }
        # The SQS event source mappings (the webhook queue to the hook consumer).
        out["sqs-poller"] = {
            "cmd": [str(VENV_BIN / "python"), str(ROOT / "infra" / "local" / "sqs_poller.py"),
                    "--lambda-url", f"http://{HOST}:{LAMBDA_PORT}",
                    "--template", str(ROOT / "template.yaml"), "--moto-url", MOTO_URL],
            "port": None,
            "ready": None,
            "hint": None,
        }
        out["gateway"] = {
            "cmd": [str(GATEWAY_BIN), "--template", str(ROOT / "template.yaml"), "--host", HOST,
                    "--port", str(GATEWAY_PORT), "--lambda-url", f"http://{HOST}:{LAMBDA_PORT}",
                    "--parameter", f"KeycloakUrl={keycloak_url()}",
                    "--parameter", f"KeycloakRealm={realm_name()}",
                    "--parameter", f"JwtAudience={login_client_id()}",
                    # The demo app calls the API from its own origin.
                    "--parameter", f"CorsAllowedOrigins={demo_url()}"]
                   + [arg for p in os.environ.get("GATEWAY_PARAMETERS", "").split()
                      for arg in ("--parameter", p)],
            "port": GATEWAY_PORT,
            "ready": f"http://{HOST}:{GATEWAY_PORT}/",
            "hint": "GATEWAY_PORT",
        }
        out["demo"] = {
            "cmd": [sys.executable, str(ROOT / "infra" / "demo" / "serve.py"), "--host", HOST,
                    "--port", str(DEMO_PORT), "--api", f"http://{HOST}:{GATEWAY_PORT}",
                    "--keycloak", keycloak_url(), "--realm", realm_name(), "--client", "user-sync-web"],
            "port": DEMO_PORT,
            "ready": f"{demo_url()}/health",
            "hint": "DEMO_PORT",
        }
    return out


def demo_url():
    return f"http://{HOST}:{DEMO_PORT}"


def say(msg):
    try:
        print(f"stack: {msg}", flush=True)
    except OSError:
        pass  # whoever read our output is gone (tests): stopping must go on regardless


def fail(msg):
    print(f"stack: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def pid_file(name):
    return DEV / f"{name}.pid"


def read_pid(name):
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours would still answer kill(0); check its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def port_taken(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def is_ready(svc):
    """A service answers its readiness URL, or listens on its port; one without either (the SQS
    poller) is ready once it runs."""
    if svc["ready"]:
        return aws_local.answers(svc["ready"])
    return port_taken(svc["port"]) if svc["port"] else True


def start(name, svc):
    pid = read_pid(name)
    if alive(pid) and is_ready(svc):
        say(f"{name} already running (pid {pid})")
        return
    if svc["port"] and port_taken(svc["port"]):
        fail(f"port {svc['port']} on {HOST} is taken by another process; "
             f"stop it or choose another port with {svc['hint']}")
    if name == "dynamodb" and (why := aws_local.missing_dynamodb_local()):
        fail(why)
    if name != "dynamodb" and not Path(svc["cmd"][0]).exists():
        fail(f"{svc['cmd'][0]} is missing: run `make tools` and `cargo build -p keycloak-emulator`")
    log = open(DEV / f"{name}.log", "ab")
    proc = subprocess.Popen(svc["cmd"], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    pid_file(name).write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (DEV / f"{name}.log").read_text(errors="replace")[-2000:]
            fail(f"{name} exited with status {proc.returncode}:\n{tail}")
        if is_ready(svc):
            where = f" on http://{HOST}:{svc['port']}" if svc["port"] else ""
            say(f"{name} up (pid {proc.pid}){where}")
            return
        time.sleep(0.1)
    fail(f"{name} did not answer on port {svc['port']} within 60 s; see {DEV / (name + '.log')}")


def aws(service):
    import boto3  # from .venv (moto depends on it)

    endpoint = DYNAMODB_URL if service == "dynamodb" else MOTO_URL
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="local", aws_secret_access_key="local")


def client_secret(client, value_var):
    if EXTERNAL_KEYCLOAK:
        secret = os.environ.get(value_var)
        if not secret:
            fail(f"KEYCLOAK_URL is set: also set {value_var} (the secret of client {client})")
        return secret
    for c in realm_export().get("clients", []):
        if c.get("clientId") == client:
            return c["secret"]
    fail(f"client {client} not found in {REALM_FILE}")


def provision():
    ddb = aws("dynamodb")
    spec = json.loads(TABLE_FILE.read_text())
    ttl_attribute = spec.pop("TimeToLiveAttribute")
    if TABLE_NAME in ddb.list_tables()["TableNames"]:
        say(f"table {TABLE_NAME} exists")
    else:
        ddb.create_table(TableName=TABLE_NAME, **spec)
        ddb.get_waiter("table_exists").wait(TableName=TABLE_NAME)
        ddb.update_time_to_live(TableName=TABLE_NAME, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl_attribute})
        say(f"table {TABLE_NAME} created")
    sqs = aws("sqs")
    sys.path.insert(0, str(ROOT / "infra" / "local"))
    from lambda_async import failure_queues

    for queue_id in failure_queues(ROOT / "template.yaml"):
        sqs.create_queue(QueueName=queue_id)  # idempotent for the same name
        say(f"queue {queue_id} ready")
    from sqs_poller import mappings, provision as provision_queue

    doc, found = mappings(ROOT / "template.yaml")
    for _, queue_id, _, _ in found:
        HOOK_QUEUES[queue_id] = provision_queue(sqs, doc, queue_id)
        say(f"queue {queue_id} ready (and its dead-letter queue)")
    sm = aws("secretsmanager")
    try:
        sm.describe_secret(SecretId=WEBHOOK_SECRET_ID)
        say(f"secret {WEBHOOK_SECRET_ID} (webhook) exists")
    except sm.exceptions.ResourceNotFoundException:
        value = json.dumps({"webhook_secret": secrets.token_hex(32)})
        sm.create_secret(Name=WEBHOOK_SECRET_ID, SecretString=value)
        say(f"secret {WEBHOOK_SECRET_ID} (webhook) created with a random value")
    for client, (secret_id, value_var) in keycloak_clients().items():
        value = json.dumps({"client_secret": client_secret(client, value_var)})
        try:
            sm.create_secret(Name=secret_id, SecretString=value)
            say(f"secret {secret_id} (client {client}) created")
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=secret_id, SecretString=value)
            say(f"secret {secret_id} (client {client}) updated")


def function_env():
    """What every function sees, as a deployed function gets it from template.yaml; each function's
    own Keycloak client comes from its Cargo.toml."""
    values = dict(AWS_ENV)
    values.update({
        "KEYCLOAK_URL": keycloak_url(),
        "KEYCLOAK_REALM": realm_name(),
        "TABLE_NAME": TABLE_NAME,
        "JWT_AUDIENCE": login_client_id(),
        # The demo realm's browser app (keycloak-js): POST /auth/sync takes its tokens.
        "TOKEN_SYNC_CLIENT_IDS": os.environ.get("TOKEN_SYNC_CLIENT_IDS", "user-sync-web"),
        "PASSWORD_LOGIN_ENABLED": os.environ.get("PASSWORD_LOGIN_ENABLED", "true"),
        # The standard flow (login-sync): this gateway's callback, and the demo app as the one
        # place a signed-in browser may be sent back to.
        "CALLBACK_URL": f"http://{HOST}:{GATEWAY_PORT}/auth/callback",
        "SIGN_IN_REDIRECT_URIS": os.environ.get(
            "SIGN_IN_REDIRECT_URIS", f"http://{HOST}:{DEMO_PORT}/signed-in"),
        # POST /admin/sync and the hand-over invoke bulk-sync asynchronously: through
        # lambda_async.py (retries, failure queue), which runs it on cargo lambda watch.
        "AWS_ENDPOINT_URL_LAMBDA": f"http://{HOST}:{LAMBDA_ASYNC_PORT}",
        "SYNC_FUNCTION_NAME": "bulk-sync",
        # The webhook queue (the hook sends to it, the consumer postpones failed messages on it).
        "HOOK_QUEUE_URL": HOOK_QUEUES.get("HookQueue", ""),
        "RUST_LOG": os.environ.get("RUST_LOG", "info"),
    })
    # The test suites record every AWS call the functions make (shared/src/outside/aws_calls.rs).
    if os.environ.get("AWS_CALL_LOG_DIR"):
        values["AWS_CALL_LOG_DIR"] = os.environ["AWS_CALL_LOG_DIR"]
    return values


def env_lines():
    values = dict(AWS_ENV)
    values.update({
        "KEYCLOAK_URL": keycloak_url(),
        "KEYCLOAK_REALM": realm_name(),
        "TABLE_NAME": TABLE_NAME,
    })
    return [f"export {k}={v}" for k, v in values.items()]


def up(with_functions=False):
    DEV.mkdir(parents=True, exist_ok=True)
    all_services = services(with_functions)
    for name in ("dynamodb", "moto", "keycloak"):
        if name in all_services:
            start(name, all_services[name])
    provision()
    (DEV / "functions.env").write_text("".join(f"{k}={v}\n" for k, v in function_env().items()))
    for name in ("functions", "lambda-async", "sqs-poller", "gateway", "demo"):
        if name in all_services:
            start(name, all_services[name])
    if with_functions:
        subscribe_webhook()
        warm_functions()
    (DEV / "env").write_text("\n".join(env_lines()) + "\n")
    say(f"Keycloak: {keycloak_url()}/realms/{realm_name()}  DynamoDB Local: {DYNAMODB_URL}  "
        f"moto: {MOTO_URL}  "
        f"(environment for clients: {DEV / 'env'})")


def subscribe_webhook():
    """Send the emulator's events to the gateway's /hooks/keycloak, signed with the webhook
    secret, as an operator registers the events extension's webhook (README "Webhooks")."""
    url = f"http://{HOST}:{GATEWAY_PORT}/hooks/keycloak"
    if EXTERNAL_KEYCLOAK:
        say(f"webhooks: register {url} in your Keycloak's events extension (README \"Webhooks\")")
        return
    secret = json.loads(aws("secretsmanager").get_secret_value(
        SecretId=WEBHOOK_SECRET_ID)["SecretString"])["webhook_secret"]
    body = json.dumps({"enabled": True, "url": url, "secret": secret, "eventTypes": ["*"]})
    request = urllib.request.Request(
        f"{keycloak_url()}/_emulator/realms/{realm_name()}/webhooks", data=body.encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    say(f"webhooks: realm {realm_name()} sends its events to {url}")


def warm_functions():
    """Invoke every API and queue function once, all at once, before the stack is announced:
    `cargo lambda watch` starts a function on its first invocation (`cargo run`, then INIT), and
    several first starts together on 2 cores outlast a route's 10 s timeout, which a caller would
    then see as the gateway's bare 503. API functions get a request for a path no route has
    (their router answers 404 before any I/O), queue consumers an empty batch; bulk-sync is left
    to its first run."""
    import concurrent.futures

    sys.path.insert(0, str(ROOT / "infra" / "local"))
    from lambda_async import binary_of, yaml_parse
    from sqs_poller import mappings

    doc = yaml_parse((ROOT / "template.yaml").read_text())
    api = [binary_of(logical_id) for logical_id, res in doc["Resources"].items()
           if res.get("Type") == "AWS::Serverless::Function"
           and any(e.get("Type") == "HttpApi" for e in res["Properties"].get("Events", {}).values())]
    consumers = [function for function, *_ in mappings(ROOT / "template.yaml")[1]]
    now = int(time.time() * 1000)
    http_event = {
        "version": "2.0", "routeKey": "$default", "rawPath": "/_warm-up", "rawQueryString": "",
        "headers": {}, "isBase64Encoded": False,
        "requestContext": {"accountId": "123456789012", "apiId": "local", "domainName": "localhost",
                           "domainPrefix": "localhost", "requestId": "warm-up",
                           "routeKey": "$default", "stage": "$default", "timeEpoch": now,
                           "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
                           "http": {"method": "GET", "path": "/_warm-up", "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "stack.py"}},
    }

    def invoke(name, event):
        url = f"http://{HOST}:{LAMBDA_PORT}/2015-03-31/functions/{name}/invocations"
        request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                r.read()
        except OSError as e:
            say(f"warming {name} failed: {e}")

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(api) + len(consumers)) as pool:
        for name in api:
            pool.submit(invoke, name, http_event)
        for name in consumers:
            pool.submit(invoke, name, {"Records": []})
    say(f"functions started: {', '.join(api + consumers)} ({time.monotonic() - started:.1f} s)")


def initial_sync():
    """One full sync of the seeded users, through the bulk-sync function as a schedule runs it."""
    url = f"http://{HOST}:{LAMBDA_PORT}/2015-03-31/functions/bulk-sync/invocations"
    request = urllib.request.Request(url, data=json.dumps({"mode": "full"}).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            run = json.loads(r.read() or b"{}")
        counts = run.get("counts", {})
        say(f"initial full sync: {run.get('status')} (seen {counts.get('seen', 0)}, "
            f"created {counts.get('created', 0)}, unchanged {counts.get('unchanged', 0)})")
    except (OSError, ValueError) as e:
        say(f"initial full sync did not run: {e}")


def dev():
    """`make dev`: the whole stack, one full sync, example calls; Ctrl-C stops everything."""
    up(with_functions=True)
    initial_sync()
    base = f"http://{HOST}:{GATEWAY_PORT}"
    print(f"""
keycloak-user-sync is running: API {base}
  (Keycloak {keycloak_url()}, DynamoDB Local {DYNAMODB_URL}, moto {MOTO_URL})
  The demo app, which signs in on Keycloak's page: {demo_url()} (carol / carol-dev-password)
The first call to each function compiles it if needed (cargo lambda watch); later edits reload it.

  curl -s -X POST {base}/auth/register -H 'content-type: application/json' \\
       -d '{{"username":"dana","email":"dana@example.com","password":"dana-password-1","firstName":"Dana","lastName":"Doe"}}'
  curl -s -X POST {base}/auth/login -H 'content-type: application/json' \\
       -d '{{"username":"dana","password":"dana-password-1"}}'
  TOKEN=...; REFRESH=...   # accessToken and refreshToken from the login answer
  curl -s {base}/auth/me -H "authorization: Bearer $TOKEN"
  curl -s {base}/auth/sessions -H "authorization: Bearer $TOKEN"
  curl -s -X POST {base}/auth/token/validate -H 'content-type: application/json' -d "{{\\"token\\":\\"$TOKEN\\"}}"
  curl -s -X POST {base}/auth/refresh -H 'content-type: application/json' -d "{{\\"refreshToken\\":\\"$REFRESH\\"}}"
  curl -s -X DELETE {base}/auth/sessions/<sessionId> -H "authorization: Bearer $TOKEN"
  curl -s -X POST {base}/auth/logout -H 'content-type: application/json' -d "{{\\"refreshToken\\":\\"$REFRESH\\"}}"
  # admin routes: sign in as alice (admin) or bob (manager); see the README for every call
  curl -s "{base}/admin/users?limit=10" -H "authorization: Bearer $ADMIN_TOKEN"

Webhooks: a change made in Keycloak (the emulator's admin API) reaches the store within seconds,
through {base}/hooks/keycloak, the webhook queue and hook-consumer (README "Webhooks").

Ctrl-C stops everything this started. Logs: {DEV}/*.log
""", flush=True)
    stop_requested = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.append(True))
    while not stop_requested:
        time.sleep(0.5)
    print()
    down()


def serve_for_tests():
    """Whole stack for one test process: prints its addresses as JSON, stops at stdin EOF."""
    try:
        up(with_functions=True)
    except BaseException:
        down()  # nothing left running when the set-up fails half-way
        raise
    print(json.dumps({"gateway": f"http://{HOST}:{GATEWAY_PORT}", "keycloak": keycloak_url(),
                      "demo": demo_url(),
                      "moto": MOTO_URL, "dynamodb": DYNAMODB_URL, "lambda": f"http://{HOST}:{LAMBDA_PORT}",
                      "table": TABLE_NAME, "realm": realm_name()}), flush=True)
    try:
        sys.stdin.read()
    finally:
        sys.stdout = open(os.devnull, "w")
        down()


def stop(name):
    pid = read_pid(name)
    if not alive(pid):
        pid_file(name).unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    say(f"{name} stopped (pid {pid})")
    return True


def down():
    stopped = [stop(name) for name in ("demo", "gateway", "sqs-poller", "lambda-async", "functions",
                                       "keycloak", "moto", "dynamodb")]
    if not any(stopped):
        say("nothing was running")


def status():
    running = True
    for name, svc in services(with_functions=pid_file("functions").exists()).items():
        pid = read_pid(name)
        ok = alive(pid) and is_ready(svc)
        running &= ok
        say(f"{name}: {'up (pid %d)' % pid if ok else 'down'}")
    sys.exit(0 if running else 3)


def main():
    commands = {"up": up, "up-all": lambda: up(with_functions=True), "dev": dev, "down": down,
                "status": status, "env": lambda: print("\n".join(env_lines())),
                "serve-for-tests": serve_for_tests}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        fail(f"usage: {sys.argv[0]} {{{'|'.join(commands)}}}")
    commands[sys.argv[1]]()


if __name__ == "__main__":
    main()
