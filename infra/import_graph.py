"""The import graph of one folder of a Rust crate: its modules (a file, or a sub-folder as one
module) and which of them each file names, by `crate::<path>::<module>` paths, `use
crate::<path>::{...}` groups and, inside the folder, `super::<module>`. Printed as `module ->
module` lines, one per edge, then every circle. Exits 1 when there is a circle. Without a folder
it draws the crate's top level; `--all` draws every folder of the tree in turn.

    python3 infra/import_graph.py shared/src
    python3 infra/import_graph.py shared/src features
    python3 infra/import_graph.py --all shared/src
"""

import re
import sys
from pathlib import Path

def modules_of(src: Path, folder: str) -> set:
    here = src / folder if folder else src
    names = {f.stem for f in here.glob("*.rs")} | {d.name for d in here.iterdir() if d.is_dir()}
    return names - {"lib", "main", "mod"}


def graph(src: Path, folder: str = "") -> dict:
    """Edges between the modules of `folder` (a path under `src`, "" for the top level)."""
    base = src / folder if folder else src
    prefix = r"\bcrate::" + "".join(part + "::" for part in Path(folder).parts)
    path = re.compile(prefix + r"([a-z_][a-z0-9_]*)")
    group = re.compile(prefix.replace(r"\b", r"\buse\s+") + r"\{([^}]*)\}", re.S)
    sibling = re.compile(r"\bsuper::([a-z_][a-z0-9_]*)")
    modules = modules_of(src, folder)
    edges = {m: set() for m in modules}
    for file in base.rglob("*.rs"):
        rel = file.relative_to(base)
        here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if here not in modules:
            continue
        text = file.read_text().split("#[cfg(test)]")[0]  # a module's own tests may reach anywhere
        named = set(path.findall(text))
        for g in group.findall(text):
            named |= {part.strip().split("::")[0] for part in g.split(",")}
        if folder and len(rel.parts) == 1:
            named |= set(sibling.findall(text))
        edges[here] |= {m for m in named if m in modules and m != here}
    return edges


def folders(src: Path) -> list:
    """Every folder of the tree under `src` that holds modules, as paths under it ("" first)."""
    return [""] + sorted(
        str(d.relative_to(src)) for d in src.rglob("*") if d.is_dir() and any(d.glob("*.rs"))
    )


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


def main(args: list) -> int:
    every = args[0] == "--all"
    if every:
        args = args[1:]
    src = Path(args[0])
    looked = folders(src) if every else [args[1] if len(args) > 1 else ""]
    found = 0
    for folder in looked:
        edges = graph(src, folder)
        if every:
            print(f"# {folder or '(top level)'}")
        for m in sorted(edges):
            for n in sorted(edges[m]):
                print(f"{m} -> {n}")
        for loop in circles(edges):
            found += 1
            print("circle: " + " -> ".join(loop))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
