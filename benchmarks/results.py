"""benchmarks/RESULTS.md holds one section per benchmark script, each rewritten by its own script."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is written by the script named in its title; rerun it to refresh.\n"


def write_section(name: str, title: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n## {title}\n\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def publish(name: str, title: str, body: str, rows: list[dict], json_keys: tuple[str, ...], args) -> None:
    """Prints the table, writes it to RESULTS.md unless --no-write, and the JSON rows with --json."""
    import json

    print(body.rsplit("\n\n", 1)[-1])
    if not args.no_write:
        write_section(name, title, body)
    if args.json:
        print(json.dumps([{k: r.get(k) for k in json_keys} for r in rows]))
