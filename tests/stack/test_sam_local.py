"""infra/sam-local/env.json points `sam local start-api`/`invoke` at the local stack from inside a
container (README "sam local"). sam local only sets variables the template declares for a
function and resolves a `!Ref` to a resource as its logical id, so the file must name exactly the
template's functions, only their declared variables, and every variable that would otherwise point
nowhere. Docker is not available here, so this is the file's check; the commands are the README's."""

import json

from samtranslator.yaml_helper import yaml_parse

from conftest import ROOT
from runtime_api import manifest_env
from test_template import binary_of

TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
ENV_FILE = json.loads((ROOT / "infra" / "sam-local" / "env.json").read_text())
FUNCTIONS = {k: r for k, r in TEMPLATE["Resources"].items()
             if r["Type"] == "AWS::Serverless::Function"}


def declared(logical_id):
    """The variables template.yaml gives a function (Globals, then its own), as written."""
    return {**TEMPLATE["Globals"]["Function"]["Environment"]["Variables"],
            **FUNCTIONS[logical_id]["Properties"].get("Environment", {}).get("Variables", {})}


def unresolvable_locally(value):
    """A value sam local cannot turn into a local service: a resource Ref (its logical id), a
    parameter without a default, or a conditional one (AWS_ENDPOINT_URL)."""
    if isinstance(value, dict) and "Ref" in value:
        param = TEMPLATE["Parameters"].get(value["Ref"])
        return param is None or "Default" not in param
    return isinstance(value, dict) and "Fn::If" in value


def watch_env(logical_id):
    return manifest_env(binary_of(logical_id))


def test_the_env_file_has_an_entry_for_every_function_and_nothing_else():
    assert set(ENV_FILE) == set(FUNCTIONS)


def test_every_variable_it_sets_is_declared_for_that_function_in_the_template():
    for logical_id, values in ENV_FILE.items():
        assert set(values) <= set(declared(logical_id)), logical_id


def test_it_sets_every_variable_sam_local_would_leave_pointing_nowhere():
    for logical_id in FUNCTIONS:
        needed = {k for k, v in declared(logical_id).items() if unresolvable_locally(v)}
        assert needed <= set(ENV_FILE[logical_id]), (logical_id, needed - set(ENV_FILE[logical_id]))


def test_it_points_at_the_local_stack_as_make_up_provisions_it():
    for logical_id, values in ENV_FILE.items():
        assert values["KEYCLOAK_URL"] == "http://host.docker.internal:8080"
        assert values["AWS_ENDPOINT_URL"] == "http://host.docker.internal:4566"
        assert values["AWS_ENDPOINT_URL_DYNAMODB"] == "http://host.docker.internal:8000"
        assert values["TABLE_NAME"] == "keycloak-user-sync"
        assert values["KEYCLOAK_REALM"] == json.loads(
            (ROOT / "infra" / "keycloak" / "realm.json").read_text())["realm"]
        for key in ("KEYCLOAK_CLIENT_ID", "KEYCLOAK_SECRET_ID", "KEYCLOAK_ADMIN_CLIENT_ID",
                    "KEYCLOAK_ADMIN_SECRET_ID"):
            assert values.get(key) == watch_env(logical_id).get(key), (logical_id, key)
