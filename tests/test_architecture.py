"""The package's shape: no import cycles, and modules small enough to read."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from import_graph import cycles, graph  # noqa: E402

MAX_LINES = 400


def test_no_module_imports_itself_through_others():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_deferred_imports(tmp_path):
    pkg = tmp_path / "starjax"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from starjax.b import g\n")
    (pkg / "b.py").write_text("from starjax import a\n")
    assert cycles(graph(tmp_path)) == [["starjax.a", "starjax.b"]]


def test_no_module_is_longer_than_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "starjax").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
