"""starjax's import graph, from the source (no import is executed): every `import starjax...` and
`from starjax... import` in every module, at module level or inside a function (a deferred import
is a dependency too), except under `if TYPE_CHECKING:`.

    .venv/bin/python scripts/import_graph.py            # modules and what they import
    .venv/bin/python scripts/import_graph.py --packages # the package-level map (docs/architecture.md)
    .venv/bin/python scripts/import_graph.py --cycles   # exit 1 if any module imports itself through others
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def graph(root: Path = ROOT, package: str = "starjax") -> dict[str, set[str]]:
    """Module -> the starjax modules it imports, for the checkout at `root`."""
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    out: dict[str, set[str]] = {}
    for f in files:
        name = module_name(f, root)
        tree = ast.parse(f.read_text())
        skip = _type_checking_lines(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from starjax.x import y` imports starjax.x.y when that is a module
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in modules and t != name)
        out[name] = deps
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", action="store_true")
    parser.add_argument("--packages", action="store_true")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to read (default: this one)")
    args = parser.parse_args()
    g = graph(args.root)
    if args.cycles:
        found = cycles(g)
        for c in found:
            print("cycle: " + " <-> ".join(c))
        print(f"{len(found)} import cycles among {len(g)} modules")
        return 1 if found else 0
    if args.packages:
        edges: dict[str, set[str]] = {}
        for m, deps in g.items():
            edges.setdefault(package_of(m), set()).update(package_of(d) for d in deps if package_of(d) != package_of(m))
        for p in sorted(edges):
            print(f"{p:28s} -> {', '.join(sorted(edges[p])) or '-'}")
        return 0
    for m in sorted(g):
        print(f"{m:36s} -> {', '.join(sorted(g[m])) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
