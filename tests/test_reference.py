"""`--reference`: a finished run compared with a published one, and the README's demo table
checked against the reference file `make demo` compares with."""

from pathlib import Path

import pytest

from starjax.cli import main
from starjax.star.reference import compare, load_reference, with_table
from starjax.star.report import table

ROOT = Path(__file__).resolve().parents[1]
HISTORY = [
    {
        "iteration": 0,
        "test_accuracy": 0.5,
        "test_accuracy_by_difficulty": {"1": 1.0, "2": 0.0},
        "seconds": {"evaluate": 1.0},
        "compilations": {"sampler": 1, "train": 0},
    },
    {
        "iteration": 1,
        "train_accuracy": 0.75,
        "kept": 3,
        "test_accuracy": 0.75,
        "test_accuracy_by_difficulty": {"1": 1.0, "2": 0.5},
        "seconds": {"generate": 2.0},
        "compilations": {"sampler": 2, "train": 1},
    },
]


def test_compare_says_yes_for_the_same_metrics_whatever_the_wall_times():
    ref = with_table(None, HISTORY, "README", 0, "CPU A")
    assert all("seconds" not in r and "compilations" not in r for r in ref["tables"][0]["iterations"])
    slower = [{**r, "seconds": {"evaluate": 9.0}, "compilations": {"sampler": 5, "train": 5}} for r in HISTORY]
    assert compare(slower, 0, ref) == "matches README: yes (its table for CPU A)"


def test_compare_names_the_first_difference():
    ref = with_table(None, HISTORY, "README", 0, "CPU A")
    other = [HISTORY[0], {**HISTORY[1], "test_accuracy_by_difficulty": {"1": 1.0, "2": 0.25}}]
    assert compare(other, 0, ref) == (
        "matches README: no (iteration 1: test_accuracy_by_difficulty {1: 1, 2: 0.25} here, {1: 1, 2: 0.5} there; "
        "README's table for CPU A)"
    )
    assert compare(HISTORY[:1], 0, ref) == "matches README: no (0 iterations here, 1 there; README's table for CPU A)"
    assert compare(HISTORY, 1, ref) == "matches README: no (README shows seed 0; this run is seed 1)"


def test_a_run_matches_the_table_of_its_cpu_type_and_misses_against_the_one_it_follows_longest():
    other_cpu = [{**HISTORY[0], "test_accuracy": 0.25}, HISTORY[1]]
    ref = with_table(with_table(None, HISTORY, "README", 0, "CPU A"), other_cpu, "README", 0, "CPU B")
    assert [t["cpu"] for t in ref["tables"]] == ["CPU A", "CPU B"]
    assert compare(HISTORY, 0, ref) == "matches README: yes (its table for CPU A)"
    assert compare(other_cpu, 0, ref) == "matches README: yes (its table for CPU B)"
    follows_a = [HISTORY[0], {**HISTORY[1], "kept": 4}]
    assert compare(follows_a, 0, ref).endswith("README's table for CPU A)")
    assert "CPU type with a table" not in compare(follows_a, 0, ref)
    # a base unlike every table's (a third CPU type) says what bit-identity needs
    third_cpu = [{**HISTORY[0], "test_accuracy": 0.125}, HISTORY[1]]
    assert compare(third_cpu, 0, ref) == (
        "matches README: no (iteration 0: test_accuracy 0.125 here, 0.5 there; no table's base: bit-identical "
        "runs need a CPU type with a table, docs/star.md#reproducibility; README's table for CPU A)"
    )
    # rewriting one CPU type's table keeps the others, in their order
    again = with_table(ref, follows_a, "README", 0, "CPU A")
    assert [t["cpu"] for t in again["tables"]] == ["CPU B", "CPU A"] and again["tables"][0] == ref["tables"][1]
    with pytest.raises(ValueError, match="seed 0, not README seed 1"):
        with_table(ref, HISTORY, "README", 1, "CPU C")


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "no such file"),
        ("{not json", "is not a JSON file"),
        ('{"label": "README"}', 'needs "label", "seed" and "tables"'),
        ('{"label": "README", "seed": 0, "tables": [{"iterations": []}]}', 'each a "cpu" and its "iterations"'),
    ],
)
def test_a_missing_or_malformed_reference_is_a_usage_error_before_any_compute(tmp_path, capsys, text, message):
    path = tmp_path / "ref.json"
    if text is not None:
        path.write_text(text)
    assert main(["star", str(ROOT / "configs" / "demo.yaml"), f"run_dir={tmp_path / 'run'}", "--reference", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_readme_shows_the_reference_that_make_demo_compares_with():
    ref = load_reference(ROOT / "configs" / "demo_reference.json")
    assert ref["label"] == "README" and ref["seed"] == 0
    readme = (ROOT / "README.md").read_text()
    for t in ref["tables"]:
        assert table(t["iterations"]) in readme, t["cpu"]  # what `make demo` prints there, exactly
        assert t["cpu"] in readme
    assert "--reference configs/demo_reference.json" in (ROOT / "Makefile").read_text()
