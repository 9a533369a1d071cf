"""The shared crate's and the emulator's top-level modules import one way: no circle
(`infra/import_graph.py` draws the graph)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))
from import_graph import circles, graph  # noqa: E402


@pytest.mark.parametrize("src", ["shared/src", "infra/keycloak-emulator/src"])
def test_modules_import_one_way(src):
    assert circles(graph(ROOT / src)) == []


def test_a_circle_is_found(tmp_path):
    (tmp_path / "a.rs").write_text("use crate::b::X;\n")
    (tmp_path / "b.rs").write_text("use crate::{a::Y, c};\n")
    (tmp_path / "c.rs").write_text("#[cfg(test)]\nmod tests { use crate::a::Z; }\n")
    assert circles(graph(tmp_path)) == [["a", "b", "a"]]
