"""`make up` / `make down` as a developer runs them: DynamoDB Local, moto and the Keycloak emulator,
the table and the secret provisioned, tokens verifiable against the JWKS, nothing left behind.
Each run uses free ports and its own .dev directory, so it never touches a running dev stack."""

import base64
import hashlib
import json
import os
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import aws, free_port, keycloak

ROOT = Path(__file__).resolve().parents[2]
REALM = json.loads((ROOT / "infra/keycloak/realm.json").read_text())
SECRETS = {c["clientId"]: c["secret"] for c in REALM["clients"] if "secret" in c}


def get_json(url, data=None):
    body = urllib.parse.urlencode(data).encode() if data else None
    with urllib.request.urlopen(url, data=body, timeout=10) as r:
        return json.loads(r.read())


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def rs256_verifies(token, jwk):
    """PKCS#1 v1.5 / SHA-256 check with the JWK's modulus and exponent, in plain Python."""
    signing_input, _, sig = token.rpartition(".")
    n = int.from_bytes(b64url(jwk["n"]), "big")
    e = int.from_bytes(b64url(jwk["e"]), "big")
    k = (n.bit_length() + 7) // 8
    em = pow(int.from_bytes(b64url(sig), "big"), e, n).to_bytes(k, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(signing_input.encode()).digest()
    expected = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info) - len(digest)) + b"\x00" + digest_info + digest
    return em == expected


def test_discovery_returns_the_realm_issuer(stack):
    d = get_json(f"{keycloak(stack)}/realms/demo/.well-known/openid-configuration")
    assert d["issuer"] == f"{keycloak(stack)}/realms/demo"


def test_password_grant_tokens_verify_against_the_jwks(stack):
    tokens = get_json(f"{keycloak(stack)}/realms/demo/protocol/openid-connect/token", {
        "grant_type": "password", "client_id": "user-sync", "client_secret": SECRETS["user-sync"],
        "username": "alice", "password": "alice-dev-password"})
    jwks = get_json(f"{keycloak(stack)}/realms/demo/protocol/openid-connect/certs")
    access = tokens["access_token"]
    header = json.loads(b64url(access.split(".")[0]))
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"] and k["use"] == "sig")
    assert rs256_verifies(access, key)
    tampered = access[:-6] + ("AAAAAA" if not access.endswith("AAAAAA") else "BBBBBB")
    assert not rs256_verifies(tampered, key)


def test_table_has_the_design_keys_index_and_ttl(stack):
    ddb = aws(stack, "dynamodb")
    table = ddb.describe_table(TableName=stack["TABLE_NAME"])["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert sorted(g["IndexName"] for g in table["GlobalSecondaryIndexes"]) == ["GSI1", "GSI2", "GSI3", "SyncDigest"]
    ttl = ddb.describe_time_to_live(TableName=stack["TABLE_NAME"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"


def test_each_client_secret_is_in_the_secret_its_functions_read(stack):
    """The login client's secret where the public functions look, the service client's where
    register, admin-users, bulk-sync and the hook consumer look (their Cargo.toml), and no
    function has both; the webhook receiver has no client, and its webhook secret is random."""
    import tomllib

    sm = aws(stack, "secretsmanager")
    seen = set()
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        env = tomllib.loads(manifest.read_text())["package"]["metadata"]["lambda"]["watch"]["env"]
        clients = [(env[i], env[s]) for i, s in (("KEYCLOAK_CLIENT_ID", "KEYCLOAK_SECRET_ID"),
                                                 ("KEYCLOAK_ADMIN_CLIENT_ID", "KEYCLOAK_ADMIN_SECRET_ID"))
                   if i in env]
        if "HOOK_SECRET_ID" in env:
            assert clients == [], manifest
            value = json.loads(sm.get_secret_value(SecretId=env["HOOK_SECRET_ID"])["SecretString"])
            assert set(value) == {"webhook_secret"} and len(value["webhook_secret"]) >= 32
            continue
        assert len(clients) == 1, manifest
        client, secret_id = clients[0]
        value = sm.get_secret_value(SecretId=secret_id)
        assert json.loads(value["SecretString"]) == {"client_secret": SECRETS[client]}
        seen.add(client)
    assert seen == {"user-sync", "user-sync-admin"}


def test_up_twice_keeps_the_running_services(stack):
    pids = {p.name: p.read_text() for p in Path(stack["DEV_DIR"]).glob("*.pid")}
    again = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=stack, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert {p.name: p.read_text() for p in Path(stack["DEV_DIR"]).glob("*.pid")} == pids


def test_a_taken_port_is_reported_clearly(stack):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        env = dict(stack, KEYCLOAK_PORT=str(blocker.getsockname()[1]), MOTO_PORT=str(free_port()),
                   DYNAMODB_PORT=str(free_port()), DEV_DIR=str(Path(stack["DEV_DIR"]) / "other"))
        r = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=env, capture_output=True, text=True)
        subprocess.run(["make", "-s", "down"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert f"port {env['KEYCLOAK_PORT']}" in r.stderr and "KEYCLOAK_PORT" in r.stderr


def test_down_leaves_no_process_behind(stack):
    dev = Path(stack["DEV_DIR"])
    pids = [int(p.read_text()) for p in dev.glob("*.pid")]
    assert len(pids) == 3
    r = subprocess.run(["make", "-s", "down"], cwd=ROOT, env=stack, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    assert not list(dev.glob("*.pid"))
    for port in (stack["KEYCLOAK_PORT"], stack["MOTO_PORT"], stack["DYNAMODB_PORT"]):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still answers"
