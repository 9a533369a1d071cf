"""The import graph of a Rust crate's top-level modules (a file under src/, or a folder as one
module), from each file's `crate::<module>` paths and `use crate::{...}` groups: printed as
`module -> module` lines, one per edge, then every circle. Exits 1 when there is a circle.

    python3 infra/import_graph.py shared/src
    python3 infra/import_graph.py infra/keycloak-emulator/src
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}", re.S)


def module_of(src: Path, file: Path) -> str:
    rel = file.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def graph(src: Path) -> dict:
    modules = {module_of(src, f) for f in src.rglob("*.rs")} - {"lib", "main"}
    edges = {m: set() for m in modules}
    for file in src.rglob("*.rs"):
        here = module_of(src, file)
        if here in ("lib", "main"):
            continue
        text = file.read_text()
        text = text.split("#[cfg(test)]")[0]  # a module's own tests may reach anywhere
        named = set(PATH.findall(text))
        for group in GROUP.findall(text):
            named |= {part.strip().split("::")[0] for part in group.split(",")}
        edges[here] |= {m for m in named if m in modules and m != here}
    return edges


def circles(edges: dict) -> list:
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def main(src: str) -> int:
    edges = graph(Path(src))
    for m in sorted(edges):
        for n in sorted(edges[m]):
            print(f"{m} -> {n}")
    loops = circles(edges)
    for loop in loops:
        print("circle: " + " -> ".join(loop))
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
