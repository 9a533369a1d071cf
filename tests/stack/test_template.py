"""template.yaml agrees with what runs locally: the table definition is the one moto gets
(infra/local/table.json), and every function's Binary is a binary of this workspace."""

import json
import re
from pathlib import Path

import yaml

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


def test_every_function_binary_is_a_workspace_binary():
    binaries = set()
    for manifest in (ROOT / "functions").glob("*/Cargo.toml"):
        binaries.add(re.search(r'^name = "([^"]+)"', manifest.read_text(), re.M).group(1))
    functions = [r for r in template()["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert functions
    for f in functions:
        assert f["Metadata"]["BuildMethod"] == "rust-cargolambda"
        assert f["Metadata"]["BuildProperties"]["Binary"] in binaries


def test_each_functions_local_timeout_is_its_template_timeout():
    """cargo lambda watch gives no real deadline; each function declares its template Timeout."""
    import tomllib

    doc = template()
    default = doc["Globals"]["Function"]["Timeout"]
    functions = {r["Metadata"]["BuildProperties"]["Binary"]: r["Properties"].get("Timeout", default)
                 for r in doc["Resources"].values() if r["Type"] == "AWS::Serverless::Function"}
    for binary, timeout in functions.items():
        manifest = tomllib.loads((ROOT / "functions" / binary / "Cargo.toml").read_text())
        env = manifest["package"]["metadata"]["lambda"]["env"]
        assert env["FUNCTION_TIMEOUT_SECONDS"] == str(timeout), binary
