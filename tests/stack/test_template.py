"""template.yaml agrees with what runs locally: the table definition is the one DynamoDB Local gets
(infra/local/table.json), every function is a binary of this workspace built by the Makefile, and
each function's local environment (its Cargo.toml) matches its deployed one."""

import json
import re
from pathlib import Path

import yaml

from runtime_api import manifest_env

ROOT = Path(__file__).resolve().parents[2]


class CfnLoader(yaml.SafeLoader):
    pass


# Short tags (!Ref, !Sub, ...) are kept as plain values; only the structure matters here.
CfnLoader.add_multi_constructor("!", lambda loader, tag, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else
    loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else
    loader.construct_mapping(node)))


def template():
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)


def test_the_deployed_table_is_the_local_table():
    deployed = template()["Resources"]["UsersTable"]["Properties"]
    local = json.loads((ROOT / "infra/local/table.json").read_text())
    key = lambda items, field: sorted(items, key=lambda x: x[field])
    assert key(deployed["AttributeDefinitions"], "AttributeName") == key(local["AttributeDefinitions"], "AttributeName")
    assert deployed["KeySchema"] == local["KeySchema"]
    assert key(deployed["GlobalSecondaryIndexes"], "IndexName") == key(local["GlobalSecondaryIndexes"], "IndexName")
    assert deployed["TimeToLiveSpecification"]["AttributeName"] == local["TimeToLiveAttribute"]


def binary_of(logical_id):
    """`LoginSyncFunction` -> `login-sync`: the convention of the Makefile's build-%Function rule
    and of the local gateway."""
    name = logical_id.removesuffix("Function")
    return re.sub(r"(?<!^)([A-Z])", r"-\1", name).lower()


def functions():
    doc = template()
    return {binary_of(k): r for k, r in doc["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


def test_every_function_is_a_workspace_binary_built_by_the_makefile():
    binaries = {p.parent.name for p in (ROOT / "functions").glob("*/Cargo.toml")}
    assert set(functions()) == binaries
    for binary, f in functions().items():
        assert f["Metadata"] == {"BuildMethod": "makefile"}, binary


def test_each_functions_local_timeout_is_its_template_timeout():
    """cargo lambda watch gives no real deadline; each function declares its template Timeout."""
    default = template()["Globals"]["Function"]["Timeout"]
    for binary, f in functions().items():
        timeout = f["Properties"].get("Timeout", default)
        assert manifest_env(binary)["FUNCTION_TIMEOUT_SECONDS"] == str(timeout), binary


CLIENT_VARIABLES = {"KEYCLOAK_CLIENT_ID", "KEYCLOAK_SECRET_ID",
                    "KEYCLOAK_ADMIN_CLIENT_ID", "KEYCLOAK_ADMIN_SECRET_ID"}


def test_each_function_gets_the_same_keycloak_client_locally_and_deployed():
    """The public auth functions have the login client only; register, admin-users, bulk-sync and
    the hook consumer the service client only; the webhook receiver no Keycloak client at all;
    locally (Cargo.toml) as deployed (template.yaml)."""
    service_client = {"register", "admin-users", "bulk-sync", "hook-consumer"}
    no_client = {"keycloak-hook"}
    for binary, f in functions().items():
        deployed = set(f["Properties"]["Environment"]["Variables"]) & CLIENT_VARIABLES
        local = set(manifest_env(binary)) & CLIENT_VARIABLES
        assert deployed == local, binary
        expected = (set() if binary in no_client else
                    {"KEYCLOAK_ADMIN_CLIENT_ID", "KEYCLOAK_ADMIN_SECRET_ID"} if binary in service_client
                    else {"KEYCLOAK_CLIENT_ID", "KEYCLOAK_SECRET_ID"})
        assert deployed == expected, binary
    assert not set(template()["Globals"]["Function"]["Environment"]["Variables"]) & CLIENT_VARIABLES


def test_samconfigs_example_environment_gives_every_required_parameter_a_value_the_template_accepts():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = dict(o.split("=", 1)
                     for o in config["example"]["deploy"]["parameters"]["parameter_overrides"])
    parameters = template()["Parameters"]
    required = {k for k, p in parameters.items() if "Default" not in p}
    assert required <= set(overrides), required - set(overrides)
    for name, value in overrides.items():
        p = parameters[name]
        if "AllowedPattern" in p:
            assert re.fullmatch(p["AllowedPattern"], value), (name, value)
        if "AllowedValues" in p:
            assert value in [str(v) for v in p["AllowedValues"]], (name, value)
