"""Built-in tasks: formats, TFDS builders (deterministic, cached), splits, verifiers, zip_chain's
kernel and step checks, seed data against the RL-STaR model, malformed rows."""

import dataclasses
import functools
import json
import random
import types

import numpy as np
import pytest

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.registry import TASKS
from starjax.star.plugins.rollouts import Continuations, MarkovChain
from starjax.star.protocols import Context
from starjax.tasks import synthetic
from starjax.tasks import zip_chain as zc
from starjax.tasks.addition import Addition
from starjax.tasks.addition import make_problem as addition_problem
from starjax.tasks.base import Continuation, Problem
from starjax.tasks.registry import make_task
from starjax.theory.rlstar import accuracy, estimate_deltas


def config(tmp_path, *overrides):
    return load_config(None, [f"task.data_dir={tmp_path / 'tfds'}", *overrides])


def last_word_verifier(predicted, gold):
    """A verifier imported by module:function: the last word must match."""
    return predicted is not None and predicted.split()[-1] == gold.split()[-1]


# ---- addition -------------------------------------------------------------------------------


def test_addition_scratchpad_matches_the_star_example(tmp_path):
    task = Addition(config(tmp_path).task.addition, str(tmp_path), 0)
    p = addition_problem("x", 964, 494)
    assert task.prompt(p) == "Input:\n9 6 4 + 4 9 4\nTarget:\n"
    assert task.target(p) == (
        "<scratch>\n9 6 4 + 4 9 4 , C: 0\n6 + 9 , 8 C: 0\n9 + 4 , 5 8 C: 1\n, 4 5 8 C: 1\n1 4 5 8\n</scratch>\n1 4 5 8"
    )
    assert task.prompt(p, hint=True) == "Input:\n9 6 4 + 4 9 4\nHint: 1 4 5 8\nTarget:\n"


def test_addition_step_checks(tmp_path):
    """One check per scratch step; a right answer reached through a wrong step is caught."""
    task = Addition(config(tmp_path).task.addition, str(tmp_path), 0)
    p = addition_problem("x", 964, 494)
    gold = task.completion(task.target(p), p.answer)
    assert task.step_checks(p, gold) == [True] * 4 and task.verify(gold, p) == ("1 4 5 8", True)
    wrong_step = gold.replace("9 + 4 , 5 8 C: 1", "9 + 4 , 6 8 C: 1")
    assert task.step_checks(p, wrong_step) == [True, False, True, True]
    assert task.verify(wrong_step, p)[1]  # the answer alone does not see it
    assert task.step_checks(p, gold.replace("9 6 4 + 4 9 4 ,", "9 6 4 + 4 9 5 ,")) == [False] * 4  # miscopied
    assert task.step_checks(p, gold.replace(", 4 5 8 C: 1\n", ", 4 5 8 C: 1\n, 4 5 8 C: 1\n")) == [True] * 3 + [False]
    assert task.step_checks(p, "<scratch>\n9 6 4 + 4 9 4 , C: 0\n6 + 9 , 8 C: 0") == [True, False, False, False]


def test_synthetic_builder_is_deterministic_and_cached(tmp_path, monkeypatch):
    prepared = []  # splits written to disk by a builder
    original = synthetic._Synthetic._generate_examples
    monkeypatch.setattr(
        synthetic._Synthetic, "_generate_examples", lambda self, split: prepared.append(split) or original(self, split)
    )
    small = ["task.addition.train_size=30", "task.addition.test_size=10"]
    first = make_task(config(tmp_path, *small)).load()
    assert sorted(prepared) == ["test", "train"]
    again = make_task(config(tmp_path, *small)).load()
    assert len(prepared) == 2, "the second load prepared the dataset again"
    elsewhere = make_task(config(tmp_path / "other", *small)).load()  # prepared anew, identically
    assert len(prepared) == 4
    assert first.train == again.train == elsewhere.train and first.test == elsewhere.test
    assert len(first.train) == 30 and len(first.test) == 10
    bigger = make_task(config(tmp_path, "task.addition.train_size=31", "task.addition.test_size=10")).load()
    assert len(prepared) == 6 and len(bigger.train) == 31  # other parameters: another builder config
    reseeded = make_task(config(tmp_path, *small, "seed=1")).load()
    assert {p.question for p in reseeded.train} != {p.question for p in first.train}


def test_a_cache_written_by_other_generator_code_is_never_read(tmp_path, monkeypatch):
    """Same parameters, other output (an older starjax's generator): a new dataset is prepared."""
    small = ["task.addition.train_size=30", "task.addition.test_size=10"]
    current = make_task(config(tmp_path / "fresh", *small)).load()
    original = synthetic._GENERATORS["addition"]
    older = lambda split, params: (dataclasses.replace(p, answer=p.answer + " 0") for p in original(split, params))  # noqa: E731
    monkeypatch.setitem(synthetic._GENERATORS, "addition", older)
    stale = make_task(config(tmp_path, *small)).load()
    monkeypatch.setitem(synthetic._GENERATORS, "addition", original)
    reloaded = make_task(config(tmp_path, *small)).load()
    assert stale.train != current.train and reloaded.train == current.train and reloaded.test == current.test


# Each built-in builder's examples for fixed parameters, hashed, with the builder's VERSION. A
# generator change that alters its output must bump that builder's VERSION (and RELEASE_NOTES),
# then record the new version and hash here.
BUILDER_OUTPUT = {
    "addition": (
        "1.1.0",
        dict(seed=0, min_digits=1, max_digits=5, train_size=1000, test_size=200),
        "892c5cfc428d54a75f92a52f528c52e56bd040823ecbb4b98057474d77f0e669",
    ),
    "zip_chain": (
        "1.1.0",
        dict(bits=3, test_fraction=0.25, seed=0),
        "ec233205c75b26241def31bac84b2a1817ef442d66815696f3efafc85da7dc64",
    ),
}


def test_every_builtin_builder_has_a_recorded_output():
    assert set(BUILDER_OUTPUT) == set(synthetic._BUILDERS)


@pytest.mark.parametrize("task", sorted(BUILDER_OUTPUT))
def test_builder_output_matches_its_version(task):
    version, params, digest = BUILDER_OUTPUT[task]
    got = synthetic.content_digest(synthetic.generate_splits(task, params))
    assert str(synthetic._BUILDERS[task].VERSION) == version, f"record {task}'s new version and hash in BUILDER_OUTPUT"
    assert got == digest, f"{task}'s examples changed under version {version}: bump its VERSION, then record {got}"


def test_addition_test_never_overlaps_train(tmp_path):
    s = make_task(
        config(tmp_path, "task.addition.max_digits=2", "task.addition.train_size=300", "task.addition.test_size=100")
    ).load()
    assert not {p.question for p in s.train} & {p.question for p in s.test}
    assert len({p.question for p in s.train}) == 300
    every = make_task(
        config(tmp_path, "task.addition.max_digits=1", "task.addition.train_size=80", "task.addition.test_size=20")
    ).load()  # all 100 one-digit problems
    assert len({p.question for p in every.train} | {p.question for p in every.test}) == 100
    with pytest.raises(ConfigError, match="give only 100 distinct problems"):
        config(tmp_path, "task.addition.max_digits=1", "task.addition.train_size=90", "task.addition.test_size=20")


# ---- zip_chain: states and kernel ------------------------------------------------------------

EXAMPLE = ["x101.011", "x10.01y11", "x1.0y01.11", "x.y10.01.11"]


def test_zip_chain_states_match_the_example():
    assert [zc.level_state("101", "011", t) for t in range(4)] == EXAMPLE
    assert zc.start_state("101", "011") == EXAMPLE[0]
    assert [zc.step(s, 3) for s in EXAMPLE] == EXAMPLE[1:] + [None]
    assert [zc.level(s, 3) for s in EXAMPLE] == [0, 1, 2, 3]
    assert zc.parse_state("x1.0y01.11", 3) == ("1", "0", ["01", "11"])
    for bad in ["x10.0y01.11", "x1.0y01.11.00", "x1.0y011", "x1.0y", "y1.0", "x12.01", "x10.01y11 extra", ""]:
        assert zc.parse_state(bad, 3) is None, bad
        assert zc.step(bad, 3) is None
    assert zc.parse_state("x1.0y01.11", 4) is None  # a 3-bit state is malformed for 4 bits


def test_zip_chain_problem_and_format(tmp_path):
    task = make_task(config(tmp_path, "task.name=zip_chain"))
    p = zc.make_problem("101", "011")
    assert (p.id, p.question, p.answer) == ("101.011", "x101.011", "x.y10.01.11")
    assert task.prompt(p) == "Input:\nx101.011\nTarget:\n"
    assert task.prompt(p, hint=True) == "Input:\nx101.011\nHint: x.y10.01.11\nTarget:\n"
    assert task.target(p) == "\n".join(EXAMPLE[1:])
    assert task.extract(task.target(p) + "\n\n") == "x.y10.01.11"
    assert (task.num_states, task.num_steps) == (64, 3)


def test_zip_chain_levels_are_bijections():
    for t in range(4):
        assert len({zc.level_state(a, b, t) for a, b in zc.pairs_of(3)}) == 64


P = zc.make_problem("101", "011")
OTHER = ("110", "000")  # another pair, whose states a wrong step can jump to


@pytest.mark.parametrize(
    "lines, checks",
    [
        (EXAMPLE[1:], [True, True, True]),
        # a wrong step 2 onto another pair's level-2 state, then a correct step from there
        ([EXAMPLE[1], zc.level_state(*OTHER, 2), zc.level_state(*OTHER, 3)], [True, False, True]),
        # a wrong step 2, then step 3 follows the original pair: wrong relative to the generated state
        ([EXAMPLE[1], zc.level_state(*OTHER, 2), EXAMPLE[3]], [True, False, False]),
        # two wrong steps that land back on the right answer
        ([zc.level_state(*OTHER, 1), EXAMPLE[2], EXAMPLE[3]], [False, False, True]),
        # a malformed state: it and every later step are wrong, even a later "correct" line
        ([EXAMPLE[1], "x1.0y01", EXAMPLE[3]], [True, False, False]),
        ([EXAMPLE[1], "garbage", EXAMPLE[3]], [True, False, False]),
        # a state at the wrong level (step 1 skips ahead) is malformed
        ([EXAMPLE[2], EXAMPLE[3]], [False, False, False]),
        # missing states
        ([EXAMPLE[1]], [True, False, False]),
        ([], [False, False, False]),
        # a line after the T-th is not a step
        (EXAMPLE[1:] + ["x.y00.00.00"], [True, True, True]),
    ],
)
def test_step_checks(lines, checks):
    assert zc.step_checks(P, "\n".join(lines), 3) == checks


def test_wrong_intermediate_and_final_verification(tmp_path):
    task = make_task(config(tmp_path, "task.name=zip_chain"))
    lucky = "\n".join([zc.level_state(*OTHER, 1), EXAMPLE[2], EXAMPLE[3]])
    assert task.verify(lucky, P) == (EXAMPLE[3], True)
    assert task.step_checks(P, lucky) == [False, False, True]  # a right answer through wrong steps
    assert task.verify("\n".join(EXAMPLE[1:] + ["x.y00.00.00"]), P) == ("x.y00.00.00", False)


def test_estimate_deltas_inverts_alpha():
    checks = [[True, True]] * 3 + [[False, True]]  # alpha = (0.75, 1)
    assert estimate_deltas(checks, 4) == pytest.approx([(4 * 0.75 - 1) / 3, 1.0])
    assert estimate_deltas([[False], [True]], 2) == pytest.approx([0.0])
    with pytest.raises(ValueError):
        estimate_deltas([[True], [True, False]], 4)


# ---- zip_chain: splits and seed data ----------------------------------------------------------


def test_zip_chain_splits(tmp_path):
    s = make_task(config(tmp_path, "task.name=zip_chain", "task.zip_chain.bits=2")).load()
    assert sorted(p.id for p in s.train) == sorted(f"{a}.{b}" for a, b in zc.pairs_of(2)) == sorted(p.id for p in s.test)
    held = make_task(config(tmp_path, "task.name=zip_chain", "task.zip_chain.bits=2", "task.zip_chain.test_fraction=0.25")).load()
    train, test = {p.id for p in held.train}, {p.id for p in held.test}
    assert len(test) == 4 and not train & test and len(train | test) == 16
    again = make_task(
        config(tmp_path / "again", "task.name=zip_chain", "task.zip_chain.bits=2", "task.zip_chain.test_fraction=0.25")
    ).load()
    assert {p.id for p in again.test} == test


def test_seed_data_follows_the_noisy_kernel(tmp_path):
    deltas = [0.3, 0.6]
    cfg = config(
        tmp_path,
        "task.name=zip_chain",
        "task.zip_chain.bits=2",
        f"task.zip_chain.seed_delta={deltas}",
        "task.zip_chain.seed_per_question=200",
    )
    task = make_task(cfg)
    splits = task.load()
    records = task.seed_records(splits)
    assert len(records) == 16 * 200
    assert records == make_task(cfg).seed_records(splits)  # seeded
    by_prompt = {task.prompt(p): p for p in splits.train}
    checks, final = [], []
    for r in records:
        p = by_prompt[r["prompt"]]
        checks.append(task.step_checks(p, r["completion"]))
        final.append(task.verify(r["completion"], p)[1])
    M = task.num_states
    n = len(records)
    for t, d in enumerate(deltas):
        alpha = sum(c[t] for c in checks) / n
        assert abs(alpha - (1 + (M - 1) * d) / M) < 0.03, (t, alpha)  # ~3.5 standard errors
    assert estimate_deltas(checks, M) == pytest.approx(deltas, abs=0.04)
    assert abs(sum(final) / n - accuracy(deltas, M)) < 0.03
    lucky = [not all(c) for c, ok in zip(checks, final) if ok]
    assert 0 < sum(lucky) < len(lucky)  # deliberately has right answers reached through wrong steps
    other = make_task(
        config(
            tmp_path,
            "seed=1",
            "task.name=zip_chain",
            "task.zip_chain.bits=2",
            f"task.zip_chain.seed_delta={deltas}",
            "task.zip_chain.seed_per_question=200",
        )
    )
    assert other.seed_records(other.load()) != records


class _KernelSampler:
    """Stands in for the model: answers any `Input:` state with its correct next state (and junk
    after it), and records every prompt it was asked."""

    def __init__(self, bits: int):
        self.bits, self.prompts = bits, []

    def generate(self, prompts, seed, temperature, num_samples):
        self.prompts += prompts

        def row(p):
            text = zc.step(p.split("\n")[1], self.bits) + "\nx.y00"
            return [types.SimpleNamespace(text=text, finish="stop")] * num_samples

        return [row(p) for p in prompts]


def test_markov_chain_rollout_asks_one_step_at_a_time_and_trains_on_single_steps(tmp_path):
    cfg = config(tmp_path, "task.name=zip_chain", "task.zip_chain.bits=3", "star.rollout=markov_chain")
    task = make_task(cfg)
    markov, whole = MarkovChain(Context(cfg, task)), Continuations(Context(cfg, task))
    problems = task.load().train[:5]
    sampler = _KernelSampler(3)
    rows = markov.complete(sampler, [task.prompt(p) for p in problems], 0, 1.0, 2)
    assert [[task.step_checks(p, c.text) for c in row] for p, row in zip(problems, rows)] == [[[True] * 3] * 2] * 5
    assert all(row == [Continuation(task.target(p))] * 2 for p, row in zip(problems, rows))
    assert len(sampler.prompts) == 5 + 2 * 10  # the questions, then one prompt per chain for steps 2 and 3
    assert all(p.count("\n") == 3 and p.startswith("Input:\nx") for p in sampler.prompts)  # the current state only
    steps = markov.training_records([{"id": problems[0].id, "prompt": task.prompt(problems[0]), "completion": rows[0][0].text}])
    states = [problems[0].question, *rows[0][0].text.split("\n")]
    assert [(r["prompt"], r["completion"]) for r in steps] == [(task.step_prompt(a), b) for a, b in zip(states, states[1:])]
    broken = _KernelSampler(3)
    broken.generate = lambda prompts, *a, **k: [[types.SimpleNamespace(text="x1.1y0", finish="stop")]] * len(prompts)
    assert markov.complete(broken, [task.prompt(problems[0])], 0, 1.0, 1) == [
        [Continuation("x1.1y0")]
    ]  # a malformed state ends the chain
    cut = _KernelSampler(3)
    cut.generate = lambda prompts, *a, **k: [[types.SimpleNamespace(text="x1.1y0", finish="length")]] * len(prompts)
    assert markov.complete(cut, [task.prompt(problems[0])], 0, 1.0, 1)[0][0].truncated  # its state line never ended
    assert whole.training_records(steps) == steps
    assert whole.complete(_KernelSampler(3), [task.prompt(problems[0])], 0, 1.0, 1)[0][0].text.endswith("x.y00")


def test_seed_delta_one_means_gold_trajectories(tmp_path):
    task = make_task(
        config(
            tmp_path,
            "task.name=zip_chain",
            "task.zip_chain.bits=2",
            "task.zip_chain.seed_delta=[1.0]",
            "task.zip_chain.seed_per_question=2",
        )
    )
    splits = task.load()
    gold = {task.prompt(p): task.target(p) for p in splits.train}
    assert all(r["completion"] == gold[r["prompt"]] for r in task.seed_records(splits))


# ---- jsonl -----------------------------------------------------------------------------------


def write_lines(path, lines):
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


GOOD = [
    {
        "question": f"What is {i} + {i}?",
        "answer": str(2 * i),
        "rationale": f"{i} + {i} = {2 * i}.",
        "difficulty": "easy" if i < 50 else "hard",
    }
    for i in range(100)
]


def test_jsonl_skips_and_counts_malformed_rows(tmp_path):
    rows = [json.dumps(r) for r in GOOD[:5]] + [
        '{"question": "int answer", "answer": 42}',
        "{not json",
        b"\xff\xfe not utf-8",
        "[1, 2]",
        '{"answer": "3"}',
        '{"question": null, "answer": "3"}',
        '{"question": "q", "answer": ["3"]}',
        '{"question": "q", "answer": true}',
        '{"question": "q", "answer": "  "}',
        '{"question": "q", "answer": "3", "rationale": {"a": 1}}',
        "",
        '{"question": "no rationale", "answer": "7", "difficulty": 2}',
    ]
    train = write_lines(tmp_path / "train.jsonl", rows)
    test = write_lines(tmp_path / "test.jsonl", [json.dumps(GOOD[5]), '{"question": "q"}'])
    s = make_task(config(tmp_path, "task.name=jsonl", f"task.jsonl.train={train}", f"task.jsonl.test={test}")).load()
    assert s.skipped == {
        "unparsable JSON": 2,
        "not an object": 1,
        "missing question": 2,
        "missing answer": 1,
        "non-string answer": 2,
        "empty answer": 1,
        "non-string rationale": 1,
    }
    assert [p.answer for p in s.train] == ["0", "2", "4", "6", "8", "42", "7"]
    assert s.train[-1] == Problem("train-17", "no rationale", "7", "2", None)
    assert [p.question for p in s.test] == [GOOD[5]["question"]]


def test_jsonl_held_out_split_is_stable_and_disjoint(tmp_path):
    path = write_lines(tmp_path / "all.jsonl", [json.dumps(r) for r in GOOD])
    (tmp_path / "hf").mkdir()
    for split in ("train", "test"):  # a Hub-style directory of JSON lines
        write_lines(tmp_path / "hf" / f"{split}.jsonl", [json.dumps(r) for r in GOOD])
    cfg = config(tmp_path, "task.name=jsonl", f"task.jsonl.train={path}", "task.jsonl.test_fraction=0.3")
    s = make_task(cfg).load()
    train, test = {p.question for p in s.train}, {p.question for p in s.test}
    assert not train & test and len(train | test) == 100 and 15 <= len(test) <= 45
    shuffled = GOOD[::-1][:60]  # other rows around them: each row keeps its side
    write_lines(path, [json.dumps(r) for r in shuffled])
    s2 = make_task(cfg).load()
    assert {p.question for p in s2.test} == test & {r["question"] for r in shuffled}


def test_jsonl_gold_round_trip_few_shot_and_custom_verifier(tmp_path):
    path = write_lines(tmp_path / "all.jsonl", [json.dumps(r) for r in GOOD])
    (tmp_path / "hf").mkdir()
    for split in ("train", "test"):  # a Hub-style directory of JSON lines
        write_lines(tmp_path / "hf" / f"{split}.jsonl", [json.dumps(r) for r in GOOD])
    task = make_task(
        config(
            tmp_path,
            "task.name=jsonl",
            f"task.jsonl.train={path}",
            "task.jsonl.few_shot=2",
            f"task.jsonl.verifier={__name__}:last_word_verifier",
        )
    )
    assert task.verifier is last_word_verifier
    s = task.load()
    p = s.test[0]
    shots = s.train[:2]
    assert (
        task.prompt(p)
        == "".join(f"Question: {x.question}\nAnswer:\n{x.rationale}\nThe answer is {x.answer}\n\n" for x in shots)
        + f"Question: {p.question}\nAnswer:\n"
    )
    assert (
        task.prompt(p, hint=True)
        == "".join(
            f"Question: {x.question}\nHint: the answer is {x.answer}\nAnswer:\n{x.rationale}\nThe answer is {x.answer}\n\n"
            for x in shots
        )
        + f"Question: {p.question}\nHint: the answer is {p.answer}\nAnswer:\n"
    )
    assert task.verify("blah\nThe answer is so 12", Problem("i", "q", "12")) == ("so 12", True)


@pytest.mark.parametrize(
    "verifier, message",
    [
        ("nope", "unknown verifier 'nope'"),
        ("no_such_module_xyz:f", "cannot import verifier"),
        (f"{__name__}:no_such_function", "cannot import verifier"),
    ],
)
def test_bad_verifier_fails_in_make_task(tmp_path, verifier, message):
    path = write_lines(tmp_path / "all.jsonl", [json.dumps(r) for r in GOOD])
    (tmp_path / "hf").mkdir()
    for split in ("train", "test"):  # a Hub-style directory of JSON lines
        write_lines(tmp_path / "hf" / f"{split}.jsonl", [json.dumps(r) for r in GOOD])
    with pytest.raises(ConfigError, match=message):
        make_task(config(tmp_path, "task.name=jsonl", f"task.jsonl.train={path}", f"task.jsonl.verifier={verifier}"))


def test_jsonl_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="file '/no/such.jsonl' not found"):
        make_task(config(tmp_path, "task.name=jsonl", "task.jsonl.train=/no/such.jsonl"))
    with pytest.raises(ConfigError, match="needs task.jsonl.train"):
        config(tmp_path, "task.name=jsonl")
    with pytest.raises(ConfigError, match="test_fraction"):
        config(tmp_path, "task.name=jsonl", "task.jsonl.train=x", "task.jsonl.test_fraction=0")
    with pytest.raises(ConfigError, match=r"task.jsonl.fields has unknown keys \['questoin'\]"):
        config(tmp_path, "task.name=jsonl", "task.jsonl.train=x", "task.jsonl.fields.questoin=q")
    bad = write_lines(tmp_path / "bad.jsonl", ["{", '{"question": "q"}'])
    with pytest.raises(ConfigError, match=r"no usable problems \(skipped: 1 missing answer, 1 unparsable JSON\)"):
        make_task(config(tmp_path, "task.name=jsonl", f"task.jsonl.train={bad}")).load()


# ---- tfds ------------------------------------------------------------------------------------


@functools.cache
def toy_builder(class_name: str, register: bool):
    """A TFDS builder (name: class_name in snake case) with its own field names (q, a: int, why)."""
    import tensorflow_datasets as tfds

    def _info(self):
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"q": text, "a": tfds.features.Scalar(np.int64), "why": text, "bad": text}),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 50)}

    def _generate_examples(self, lo, hi):
        for i in range(lo, hi):
            yield i, {"q": f"{i} + 1" if i != 7 else "", "a": i + 1, "why": f"{i} and one", "bad": ""}

    body = {
        "VERSION": tfds.core.Version("1.0.0"),
        "_info": _info,
        "_split_generators": _split_generators,
        "_generate_examples": _generate_examples,
        "__module__": __name__,
    }
    return types.new_class(
        class_name, (tfds.core.GeneratorBasedBuilder,), {"skip_registration": not register}, lambda ns: ns.update(body)
    )


def prepare_toy(data_dir, class_name="ToyQa", register=True):
    toy_builder(class_name, register)(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def tfds_config(tmp_path, *overrides):
    return config(
        tmp_path,
        "task.name=tfds",
        "task.tfds.train=toy_qa",
        f"data.tfds_data_dir={tmp_path / 'user'}",
        "task.tfds.fields.question=q",
        "task.tfds.fields.answer=a",
        "task.tfds.fields.rationale=why",
        "task.tfds.verifier=numeric",
        *overrides,
    )


def test_tfds_task_reads_a_locally_prepared_dataset(tmp_path):
    prepare_toy(tmp_path / "user")
    task = make_task(tfds_config(tmp_path))
    s = task.load()
    assert s.skipped == {"empty question": 1}
    assert len(s.train) == 39 and len(s.test) == 10
    p = next(p for p in s.train if p.question == "3 + 1")
    assert (p.answer, p.rationale, p.difficulty) == ("4", "3 and one", "")
    assert task.verify(task.target(p), p) == ("4", True)
    held = make_task(tfds_config(tmp_path, "task.tfds.test_split=null", "task.tfds.test_fraction=0.25")).load()
    assert not {p.question for p in held.train} & {p.question for p in held.test}
    assert len(held.train) + len(held.test) == 39 and held.test


def test_tfds_task_reads_an_unregistered_builders_files(tmp_path):
    prepare_toy(tmp_path / "user", "ToyUnregistered", register=False)
    with pytest.raises(ConfigError, match=r"no usable problems \(skipped: 40 empty question\)"):
        make_task(tfds_config(tmp_path, "task.tfds.train=toy_unregistered", "task.tfds.fields.question=bad")).load()
    s = make_task(tfds_config(tmp_path, "task.tfds.train=toy_unregistered")).load()
    assert len(s.train) == 39 and s.skipped == {"empty question": 1}
    with pytest.raises(ConfigError, match=r"has no split 'dev'; it has \['test', 'train'\]"):
        make_task(tfds_config(tmp_path, "task.tfds.train=toy_unregistered", "task.tfds.test_split=dev")).load()
    with pytest.raises(ConfigError, match="TFDS dataset 'nothing_here' not found .set data.tfds_data_dir"):
        make_task(tfds_config(tmp_path, "task.tfds.train=nothing_here")).load()


# ---- every task ------------------------------------------------------------------------------


BUILTIN_TASKS = {"addition", "zip_chain", "jsonl", "tfds", "hf"}


def builtin(names: list[str]) -> set[str]:
    """The names starjax registers (other tests in this process may add plugins of their own)."""
    return {n for n in names if TASKS.get(n).build.__module__.startswith("starjax.")}


def test_every_builtin_task_registers_its_config_section(tmp_path):
    assert builtin(TASKS.names()) == BUILTIN_TASKS
    cfg = config(tmp_path)
    assert all(dataclasses.is_dataclass(getattr(cfg.task, name)) for name in BUILTIN_TASKS)
    nope = dataclasses.replace(cfg, task=dataclasses.replace(cfg.task, name="nope"))  # load_config rejects it; make_task must too
    with pytest.raises(ConfigError, match="task.name: unknown task 'nope'"):
        make_task(nope)
    with pytest.raises(ConfigError, match="task.name: unknown task 'additon'"):
        load_config(None, ["task.name=additon"])


def test_gold_targets_verify_for_every_builtin_task(tmp_path):
    prepare_toy(tmp_path / "user")
    path = write_lines(tmp_path / "all.jsonl", [json.dumps(r) for r in GOOD])
    (tmp_path / "hf").mkdir()
    for split in ("train", "test"):  # a Hub-style directory of JSON lines
        write_lines(tmp_path / "hf" / f"{split}.jsonl", [json.dumps(r) for r in GOOD])
    configs = {
        "addition": config(tmp_path, "task.addition.train_size=40", "task.addition.test_size=10"),
        "zip_chain": config(tmp_path, "task.name=zip_chain", "task.zip_chain.bits=2"),
        "jsonl": config(tmp_path, "task.name=jsonl", f"task.jsonl.train={path}"),
        "tfds": tfds_config(tmp_path),
        "hf": config(tmp_path, "task.name=hf", f"task.hf.train={tmp_path / 'hf'}"),
    }
    assert set(configs) == builtin(TASKS.names())
    rng = random.Random(0)
    for name, cfg in configs.items():
        task = make_task(cfg)
        s = task.load()
        problems = s.train + s.test
        for p in problems:
            assert task.verify(task.target(p), p) == (p.answer, True), (name, p)
            q = rng.choice([x for x in problems if x.answer != p.answer])
            assert task.verify(task.target(q), p)[1] is False, (name, p, q)
        assert all(isinstance(t, str) and t for t in task.texts(s))


def test_addition_seed_lengths_follow_the_long_fraction_decay_and_cap(tmp_path):
    def lengths(*overrides):
        cfg = load_config(None, ["task.addition.max_digits=5", "task.addition.seed_size=2000", *overrides]).task.addition
        task = Addition(cfg, str(tmp_path), 0)
        return [len(r["completion"].split("\n")[1].split("+")[0].split()) for r in task.seed_records(None)]

    capped = lengths("task.addition.seed_long_fraction=0.5", "task.addition.seed_long_max_digits=4")
    assert max(capped) == 4 and 0.4 < sum(n > 2 for n in capped) / len(capped) < 0.6
    decayed = lengths("task.addition.seed_long_fraction=0.5", "task.addition.seed_long_decay=0.4")
    counts = [decayed.count(n) for n in (3, 4, 5)]
    assert counts[0] > counts[1] > counts[2] > 0
    with pytest.raises(ConfigError, match="seed_long_max_digits=6 must be above seed_max_digits=2 and at most max_digits=5"):
        load_config(None, ["task.addition.max_digits=5", "task.addition.seed_long_max_digits=6"])
