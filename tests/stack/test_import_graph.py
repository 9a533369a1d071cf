"""The shared crate's and the emulator's modules import one way: no circle at the top level nor
inside any folder (`infra/import_graph.py` draws the graph)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))
from import_graph import circles, folders, graph  # noqa: E402


@pytest.mark.parametrize("src", ["shared/src", "infra/keycloak-emulator/src"])
def test_modules_import_one_way(src):
    found = {f or ".": circles(graph(ROOT / src, f)) for f in folders(ROOT / src)}
    assert {f: c for f, c in found.items() if c} == {}


def test_a_circle_is_found(tmp_path):
    (tmp_path / "a.rs").write_text("use crate::b::X;\n")
    (tmp_path / "b.rs").write_text("use crate::{a::Y, c};\n")
    (tmp_path / "c.rs").write_text("#[cfg(test)]\nmod tests { use crate::a::Z; }\n")
    assert circles(graph(tmp_path)) == [["a", "b", "a"]]


def test_a_circle_inside_a_folder_is_found(tmp_path):
    (tmp_path / "group").mkdir()
    (tmp_path / "group" / "mod.rs").write_text("pub mod a;\npub mod b;\n")
    (tmp_path / "group" / "a.rs").write_text("use crate::group::b::X;\n")
    (tmp_path / "group" / "b.rs").write_text("use super::a::Y;\n")
    assert circles(graph(tmp_path)) == []
    assert circles(graph(tmp_path, "group")) == [["a", "b", "a"]]
