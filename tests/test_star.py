"""The STaR loop: kept-set rules, scores, and `starjax star` end to end on a jsonl task of our own."""

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
from conftest import SMALL_MODEL

from starjax import theory
from starjax.cli import main
from starjax.config import load_config, to_yaml
from starjax.errors import ConfigError
from starjax.registry import SELECTORS
from starjax.star import reference, report
from starjax.star.driver import Driver, Phase
from starjax.star.kept import attempts, majority_correct, merge, pass_at_k, select
from starjax.star.loop import fill_batch, train_steps
from starjax.star.plugins.rollouts import Continuations
from starjax.star.plugins.scorers import RuleScorer
from starjax.star.predict import predict
from starjax.star.protocols import Context
from starjax.star.setup import config_changes
from starjax.star.state import Attempt, Kept, RunState
from starjax.tasks.addition import Addition
from starjax.tasks.addition import make_problem as addition_problem
from starjax.tasks.base import Continuation, Problem, Task
from starjax.tasks.verifiers import exact, numeric

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]


def write_task(d: Path, n_train=48, n_test=16, bad_rows=True) -> Path:
    rng = random.Random(0)

    def row():
        words = [rng.choice(WORDS) for _ in range(3)]
        return {
            "question": " ".join(words),
            "answer": words[-1],
            "rationale": f"The last word is {words[-1]}.",
            "difficulty": "easy" if words[0] == words[-1] else "hard",
        }

    train = [json.dumps(row()) for _ in range(n_train)]
    if bad_rows:
        train += [
            "{not json",
            json.dumps({"question": "a b c"}),
            json.dumps({"question": "x", "answer": ""}),
            json.dumps({"question": "w " * 200, "answer": "w"}),
        ]
    (d / "train.jsonl").write_text("\n".join(train) + "\n")
    (d / "test.jsonl").write_text("\n".join(json.dumps(row()) for _ in range(n_test)) + "\n")
    return d


def star_args(d: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        str(ROOT / "configs" / "tiny.yaml"),
        *SMALL_MODEL,
        "model.vocab_size=null",
        f"run_dir={run_dir}",
        "task.name=jsonl",
        f"task.jsonl.train={d / 'train.jsonl'}",
        f"task.jsonl.test={d / 'test.jsonl'}",
        "pretrain.steps=80",
        "pretrain.learning_rate=1e-2",
        "train.batch_size=8",
        "train.seq_len=64",
        "train.checkpoint_every=2",
        "train.learning_rate=1e-3",
        "sampler.batch_size=16",
        "sampler.max_new_tokens=24",
        "sampler.prompt_buckets=[32]",
        "sampler.progress=false",
        "star.iterations=2",
        "star.first_steps=4",
        *extra,
    ]


STAR = ["correct", "dedupe", "cap"]


class StepTask(Task):
    checks_steps = True


def selectors(task: Task, names: list[str], cap: int = 1, *options: str) -> list:
    cfg = load_config(None, [f"star.selectors=[{','.join(names)}]", f"selection.cap.per_question={cap}", *options])
    return [SELECTORS.get(n).build(Context(cfg, task)) for n in names]


def keep(task: Task, problems, tries, names=STAR, cap: int = 1, few_shot_prompt: bool = False) -> list[dict]:
    return [k.record() for k in select(task, problems, tries, selectors(task, names, cap), few_shot_prompt)[1]]


def judge(task: Task, problems, rows, hinted: bool = False):
    return attempts(task, problems, [task.prompt(p) for p in problems], rows, hinted, {"answer": RuleScorer(task)})


def test_selectors_cap_dedupe_and_store_rationalizations_without_the_hint():
    task = StepTask(exact)
    p = Problem("q1", "what?", "42")
    row = [
        Attempt("q1", "", True, text, "42", ok) for text, ok in [("a", True), ("a", True), ("b", False), ("c", True), ("d", True)]
    ]
    kept = keep(task, [p], [row], cap=2)
    assert [r["completion"] for r in kept] == ["a", "c"]
    assert all(r["rationalized"] and "Hint" not in r["prompt"] and r["prompt"] == task.prompt(p) for r in kept)
    assert [r["completion"] for r in keep(task, [p], [row], ["correct", "cap"], cap=3)] == ["a", "a", "c"]
    row = [Attempt("q1", "", False, text, "42", True, steps) for text, steps in [("a", False), ("b", True)]]
    assert [r["completion"] for r in keep(task, [p], [row], cap=2)] == ["a", "b"]
    assert [r["completion"] for r in keep(task, [p], [row], ["correct", "verify_steps", "dedupe", "cap"], 2)] == ["b"]
    row = [
        Attempt("q1", "", False, text, "42", ok)
        for text, ok in [("x", True), ("y", True), ("z", False), ("y", True), ("z", False), ("z", False)]
    ]
    assert [r["completion"] for r in keep(task, [p], [row])] == ["x"]
    # the rationale drawn twice goes first; a wrong one drawn more often never counts
    frequent = ["prefer_frequent", *STAR]
    assert [r["completion"] for r in keep(task, [p], [row], frequent)] == ["y"]
    assert [r["completion"] for r in keep(task, [p], [row], frequent, cap=2)] == ["y", "x"]
    merged = merge(
        [Kept("q1", "", "a", False, None), Kept("q2", "", "z", False, None)],
        [Kept("q1", "", "c", False, None), Kept("q1", "", "a", False, None)],
        selectors(task, STAR, 2),
    )
    assert [(r.id, r.completion) for r in merged] == [("q1", "c"), ("q1", "a"), ("q2", "z")]


def test_threshold_and_best_of_n_select_by_a_named_score():
    task = Task(exact)
    p = Problem("q", "?", "7")
    row = [
        Attempt("q", "", False, t, "7", True, scores={"answer": 1.0, "judge": s}) for t, s in [("a", 0.2), ("b", 0.9), ("c", 0.5)]
    ]
    scored = ["star.scorers=[answer,judge:x]"]
    cfg = load_config(None, [*scored, "selection.threshold.scorer=judge", "selection.threshold.min_score=0.5"])
    threshold = SELECTORS.get("threshold").build(Context(cfg, task))
    assert [a.completion for a in threshold(p, row)] == ["b", "c"]
    cfg = load_config(None, [*scored, "selection.best_of_n.scorer=judge", "selection.best_of_n.n=2"])
    assert [a.completion for a in SELECTORS.get("best_of_n").build(Context(cfg, task))(p, row)] == ["b", "c"]
    with pytest.raises(ConfigError, match="selection.threshold.scorer='nope' is not in star.scorers"):
        load_config(None, ["star.selectors=[threshold]", "selection.threshold.scorer=nope"])


def test_kept_records_hold_the_bare_question_unless_told_otherwise():
    task = Task(exact, few_shot=1)
    shot, p = Problem("s", "Where is Rome?", "Italy", rationale="Rome is in Italy."), Problem("q", "Where is Paris?", "France")
    task.set_shots([shot])
    for hinted in (False, True):
        row = [Attempt("q", "", hinted, "Paris is in France.\nThe answer is France", "France", True)]
        (bare,) = keep(task, [p], [row])
        assert bare["prompt"] == "Question: Where is Paris?\nAnswer:\n"
        assert "Rome" not in bare["prompt"] and "Hint" not in bare["prompt"]
        (few,) = keep(task, [p], [row], few_shot_prompt=True)
        assert (
            few["prompt"] == task.prompt(p)
            and few["prompt"].startswith("Question: Where is Rome?")
            and "Hint" not in few["prompt"]
        )


def test_verify_steps_solves_a_question_only_through_sound_steps():
    """A question whose only right answers went through a wrong step is unsolved under
    verify_steps: nothing is kept and it goes to rationalization."""
    task, p = StepTask(exact), Problem("q", "?", "7")
    lucky = Attempt("q", "", False, "wrong step, right answer", "7", True, steps_ok=False)
    sound = Attempt("q", "", False, "sound", "7", True, steps_ok=True)
    checked = selectors(task, ["correct", "verify_steps", *STAR[1:]])
    assert select(task, [p, p], [[lucky], [lucky, sound]], checked, False)[0] == [False, True]
    assert select(task, [p, p], [[lucky], [lucky, sound]], selectors(task, STAR), False)[0] == [True, True]
    with pytest.raises(ConfigError, match="checks answers only"):
        selectors(Task(exact), ["verify_steps"])


def test_restates_question_keeps_only_rationales_that_copy_the_question(tmp_path):
    """A hinted addition rationale that miscopies the operands and still lands on the hinted
    answer is not kept (judged from the question alone), so the question stays unsolved."""
    task = Addition(load_config(None, []).task.addition, str(tmp_path), 0)
    p = addition_problem("x", 964, 494)
    gold = task.completion(task.target(p), p.answer)
    miscopied = gold.replace("9 6 4 + 4 9 4 , C: 0", "9 6 5 + 4 9 4 , C: 0", 1)
    assert miscopied != gold and task.restates_question(p, gold) and not task.restates_question(p, miscopied)
    row = [Attempt("x", "4", True, text, p.answer, True) for text in (miscopied, gold)]
    names = ["correct", "restates_question", *STAR[1:]]
    assert [r["completion"] for r in keep(task, [p], [row], names)] == [gold]
    assert select(task, [p], [row[:1]], selectors(task, names), False)[0] == [False]
    with pytest.raises(ConfigError, match="restates its question"):
        selectors(Task(exact), ["restates_question"])


def test_addition_attempts_carry_step_checks_and_a_prediction(tmp_path):
    """Attempts on a task that checks steps record steps_ok; the RL-STaR prediction still works
    for such a task without a fixed number of states per step."""
    task = Addition(load_config(None, []).task.addition, str(tmp_path), 0)
    p = addition_problem("x", 964, 494)
    gold = task.completion(task.target(p), p.answer)
    lucky = gold.replace("9 + 4 , 5 8 C: 1", "9 + 4 , 6 8 C: 1")  # a wrong step, the right answer
    tries = judge(task, [p], [[Continuation(gold), Continuation(lucky), Continuation("no scratchpad")]])
    assert [(a.correct, a.steps_ok) for a in tries[0]] == [(True, True), (True, False), (False, False)]
    m, t = task.chain_shape(p)  # two of three samples right: the effective d of 2/3, one STaR step
    d = theory.effective_delta(2 / 3, m, t)
    predicted = predict(task, [p], tries)["predicted_accuracy"]
    assert predicted == pytest.approx(theory.accuracy(theory.star_update([d] * t, m), m)) and predicted > 2 / 3


def test_a_completion_cut_at_max_new_tokens_is_never_correct_nor_kept():
    """ "The answer is 7", cut from "72" by max_new_tokens, must not pass for gold 7; a completion
    the task trims before the cut (the answer ended, the model ran on) is complete."""
    task = Task(exact)
    p = Problem("q", "?", "7")

    class Trims(Task):
        def trim(self, completion: str) -> str:
            return completion.split("\n\nQuestion:")[0]

    rows = [[Continuation("The answer is 7", truncated=True), Continuation("The answer is 7")]]
    tries = judge(task, [p], rows)
    assert [(a.extracted, a.correct, a.truncated) for a in tries[0]] == [("7", False, True), ("7", True, False)]
    assert [r["completion"] for r in keep(task, [p], [tries[0][:1]], cap=2)] == []
    ran_on = Continuation("The answer is 7\n\nQuestion: 1 + 1", truncated=True)
    (a,) = judge(Trims(exact), [p], [[ran_on]])[0]
    assert (a.completion, a.correct, a.truncated) == ("The answer is 7", True, False)


def test_the_rollout_carries_the_samplers_finish_reason():
    done = types.SimpleNamespace(text="7", finish="stop")
    cut = types.SimpleNamespace(text="The answer is 7", finish="length")
    sampler = types.SimpleNamespace(generate=lambda prompts, seed, **kw: [[done, cut] for _ in prompts])
    rollout = Continuations(Context(load_config(None, []), Task(exact)))
    assert rollout.complete(sampler, ["?"], 0, 1.0, 2) == [[Continuation("7"), Continuation("The answer is 7", True)]]


def test_the_table_shows_wrong_steps_only_for_tasks_that_check_them():
    from starjax.star.report import table

    plain = [{"iteration": 0, "test_accuracy": 0.5}, {"iteration": 1, "test_accuracy": 0.6, "kept": 3}]
    assert "wrong step" not in table(plain)
    checked = table(plain[:1] + [{**plain[1], "kept_wrong_step": 0.25}])
    assert "wrong step" in checked.splitlines()[0] and checked.splitlines()[-1].split()[-1] == "0.250"


def test_the_prediction_sits_beside_the_measured_pass_at_1_of_the_same_policy():
    """Iteration n predicts its policy's sampled accuracy; iteration n + 1 measures it. The
    table shows both on row n, away from greedy test accuracy."""
    from starjax.star.report import table

    history = [
        {"iteration": 0, "test_accuracy": 0.5},
        {"iteration": 1, "test_accuracy": 0.6, "sample_accuracy": 0.25, "predicted_accuracy": 0.4},
        {"iteration": 2, "test_accuracy": 0.7, "sample_accuracy": 0.375, "predicted_accuracy": 0.45},
    ]
    head, _, *rows = table(history).splitlines()
    cells = dict(zip(head.split()[-2:], zip(*(row.split()[-2:] for row in rows))))
    assert cells == {"pass@1": ("0.250", "0.375", "-"), "predicted": ("-", "0.400", "0.450")}
    assert "predicted" not in table([{"iteration": 0, "test_accuracy": 0.5}])


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 3, 4), (4, 4, 2), (8, 1, 8)])
def test_pass_at_k_is_the_chance_that_k_of_n_samples_hold_a_correct_one(n, c, k):
    subsets = list(combinations(range(n), k))  # samples 0..c-1 are the correct ones
    assert math.isclose(pass_at_k(n, c, k), sum(any(i < c for i in s) for s in subsets) / len(subsets))


def test_majority_vote_uses_the_most_common_answer():
    task, p = Task(exact), Problem("q", "?", "7")
    votes = lambda answers: [Attempt("q", "", False, "", a, a == "7") for a in answers]  # noqa: E731
    assert majority_correct(task, p, votes(["7", "3", "7", None]))
    assert not majority_correct(task, p, votes(["3", "3", "7"]))
    assert not majority_correct(task, p, votes([None, None]))


def test_majority_vote_groups_answers_the_verifier_calls_equal():
    task, p = Task(numeric), Problem("q", "?", "72")
    votes = [Attempt("q", "", False, "", a, numeric(a, "72")) for a in ["72", "72.0", "$72", "70", "70"]]
    assert majority_correct(task, p, votes)  # three votes for 72, two for 70
    assert not majority_correct(task, p, votes[:1] + votes[3:])
    cut = [Attempt("q", "", False, "", "70", False, truncated=True)] * 3
    assert majority_correct(task, p, votes[:1] + cut)  # truncated attempts do not vote


def test_no_two_phases_share_a_seed():
    """Seeds come from (seed, iteration, phase name): pass@k sampling once reused the fine-tune's."""
    from starjax.seeds import derive
    from starjax.star.loop import _seed

    cfg = load_config(None, [])
    seeds = [derive(_seed(cfg, n, "evaluate"), "samples") for n in range(12)]
    seeds += [_seed(cfg, n, phase) for n in range(12) for phase in ("generate", "rationalize", "evaluate", "train")]
    assert len(set(seeds)) == len(seeds) and all(0 <= x < 2**31 for x in seeds)
    assert _seed(cfg, 3, "train") != _seed(load_config(None, ["seed=1"]), 3, "train")


def test_step_schedule_and_small_kept_sets():
    cfg = load_config(None, ["star.first_steps=40", "star.step_growth=0.2", "train.batch_size=4", "train.seq_len=16"])
    assert [train_steps(cfg, n) for n in (1, 2, 3, 4)] == [40, 48, 58, 69]
    assert len(fill_batch([tuple(range(5))] * 3, cfg)) >= 2 * 4 * 16 // 5


def test_resume_skips_exactly_the_phases_already_checkpointed():
    done, saved = [], []

    def phase(name: str, first: int = 1) -> Phase:
        return Phase(name, lambda state, n: done.append((n, name)) or state, first)

    driver = Driver([phase("generated"), phase("trained"), phase("evaluated", 0)], lambda step, s: saved.append(step))
    trained = RunState(iteration=2, phase="trained")
    assert driver.reached(trained, 2, "generated") and driver.reached(trained, 2, "trained")  # never regenerates
    assert not driver.reached(trained, 2, "evaluated") and not driver.reached(trained, 3, "generated")
    assert not driver.reached(RunState(), 0, "evaluated")
    end = driver.run(trained, 3)
    assert done == [(2, "evaluated"), (3, "generated"), (3, "trained"), (3, "evaluated")]
    assert saved == [8, 9, 10, 11] and (end.iteration, end.phase) == (3, "evaluated")
    done.clear()
    driver.run(RunState(), 1)  # iteration 0 is the base model: evaluated only
    assert done == [(0, "evaluated"), (1, "generated"), (1, "trained"), (1, "evaluated")]


def test_run_state_round_trips_through_json_and_reads_the_untyped_state_of_earlier_versions():
    kept = Kept("q", "Question: ?\nAnswer:\n", "The answer is 7", False, None)
    state = RunState(3, "trained", (kept,), (kept,), (), {"kept": 1})
    assert RunState.from_json(json.loads(json.dumps(state.to_json()))) == state
    old = {k: v for k, v in state.to_json().items() if k != "version"}  # as starjax wrote it before RunState
    assert RunState.from_json(old) == state
    with pytest.raises(ConfigError, match="newer starjax"):
        RunState.from_json({**state.to_json(), "version": 99})
    with pytest.raises(ConfigError, match="not one starjax can read"):
        RunState.from_json({"iteration": 1})


def test_config_changes_ignore_the_iteration_count():
    a = "star:\n  iterations: 3\n  temperature: 0.0\n  rationalize: true\nseed: 1\n"
    assert config_changes(a, a.replace("iterations: 3", "iterations: 9")) == []
    assert config_changes(a, a.replace("seed: 1", "seed: 2")) == [("seed", 1, 2)]
    older = a.replace("  rationalize: true\n", "")  # a run saved before the key existed: compared as its default
    assert "rationalize" not in older and config_changes(older, a) == []
    assert config_changes(older, a.replace("rationalize: true", "rationalize: false")) == [("star.rationalize", None, False)]
    # where a run runs (processes, devices, mesh sizes) may change on resume; what it runs may not
    here = to_yaml(load_config(None, []))
    moved = to_yaml(load_config(None, ["runtime.num_cpu_devices=4", "mesh.data=4", "runtime.distributed.mode=auto"]))
    assert config_changes(here, moved) == []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    d = write_task(tmp_path_factory.mktemp("star_task"))
    run = d / "run"
    assert (
        main(
            [
                "star",
                *star_args(
                    d, run, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "star.eval_samples=4", "star.eval_temperature=1.0"
                ),
            ]
        )
        == 0
    )
    return d, run


def test_star_end_to_end_writes_the_run_directory(finished_run, capsys):
    d, run = finished_run
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in history] == [0, 1, 2]
    for r in history[1:]:
        for key in (
            "train_accuracy",
            "rationalized",
            "kept",
            "truncated",
            "test_accuracy",
            "test_truncated",
            "test_accuracy_by_difficulty",
            "train_steps",
            "seconds",
            "compilations",
            "pass_at_k",
            "majority_accuracy",
        ):
            assert key in r, key
        assert set(r["seconds"]) == {"generate", "rationalize", "train", "evaluate"}
    assert history[0]["skipped"] == {
        "unparsable JSON": 1,
        "missing answer": 1,
        "empty answer": 1,
        "prompt longer than the largest sampler bucket": 1,
    }
    labels = {json.loads(line)["difficulty"] for line in (d / "test.jsonl").read_text().splitlines()}
    assert set(history[1]["test_accuracy_by_difficulty"]) == labels and labels
    assert history[1]["train_steps"] == 4 and history[2]["train_steps"] == 5
    for r in history[1:]:  # the fine-tune's curves, one value per step
        assert {k: len(v) for k, v in r["fine_tune"].items()} == dict.fromkeys(
            ("loss", "learning_rate", "grad_norm"), r["train_steps"]
        )
    events = b"".join(p.read_bytes() for p in (run / "tb").glob("events.out.tfevents.*"))
    for tag in (b"star/fine_tune/loss", b"star/fine_tune/grad_norm", b"star/samples", b"star/test_accuracy"):
        assert tag in events, tag  # per-step fine-tune scalars, a sample table, the per-iteration scalars
    assert history[1]["kept"] > 0, "the pre-trained model should solve some questions"
    samples = [json.loads(line) for line in (run / "samples" / "iter_1.jsonl").read_text().splitlines()]
    assert set(samples[0]) == {"question", "answer", *Attempt.__dataclass_fields__}
    assert sum(not s["hinted"] for s in samples) == 48  # every training question, once
    assert (run / "accuracy.png").stat().st_size > 1000 and list((run / "tb").iterdir())
    assert (run / "params" / "iter_2").is_dir() and (run / "tokenizer.model").is_file()
    assert not (run / "train" / "iter_2").exists()  # fine-tune checkpoints go once the policy is saved


def test_rerunning_a_finished_run_changes_nothing(finished_run, capsys):
    d, run = finished_run
    before = (run / "metrics.jsonl").read_text()
    assert (
        main(
            [
                "star",
                *star_args(
                    d, run, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "star.eval_samples=4", "star.eval_temperature=1.0"
                ),
            ]
        )
        == 0
    )
    assert (run / "metrics.jsonl").read_text() == before


def test_a_different_config_refuses_to_resume_unless_told(finished_run, capsys):
    d, run = finished_run
    assert main(["star", *star_args(d, run, "seed=5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a run with a different config" in err and "--allow-config-change" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["task.name=additon"], "did you mean 'addition'"),
        (["task.jsonl.verifier=nope"], "unknown verifier 'nope'"),
        (["task.jsonl.verifier=no_such_module:f"], "cannot import verifier"),
        (["star.temprature=1"], "did you mean star.temperature"),
        (["star.num_samples=4"], "set a temperature"),
        (["star.selectors=[correct,verify_steps]"], "checks answers only"),
        (["star.selectors=[correct,nope]"], "unknown selector 'nope'"),
        (["star.scorers=[steps]"], "needs a task that checks its rationales' steps"),
        (["star.scorers=[no_such_module:f]"], "cannot import scorer"),
        (["star.rollout=markov_chain"], "needs a task of state transitions"),
        (["star.temperature=1", "star.num_samples=32"], "star.num_samples=32 exceeds sampler.batch_size=16"),
        (["star.temperature=1", "star.num_samples=4"], "4 prompts per call, not a multiple of the mesh's data x fsdp = 8"),
        (["star.rationalize_samples=32"], "star.rationalize_samples=32 exceeds sampler.batch_size=16"),
        (["star.solved_samples=32"], "star.solved_samples=32 exceeds sampler.batch_size=16"),
        (["star.eval_samples=32", "star.eval_temperature=1.0"], "star.eval_samples=32 exceeds"),
        (["star.eval_samples=4", "star.eval_temperature=0"], "set star.eval_temperature"),
        (["star.train_prompt=fewshot"], "star.train_prompt='fewshot'"),
        (
            ["mesh.data=2", "mesh.fsdp=1", "mesh.tensor=4", "sampler.batch_size=5"],
            "with star.num_samples=1 gives 5 prompts per call",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_compute(tmp_path, capsys, extra, message):
    d = write_task(tmp_path)
    assert main(["star", *star_args(d, tmp_path / "run", *extra)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("starjax: error")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "run").exists()  # nothing was written: no compute ran


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    d = write_task(tmp_path)
    (tmp_path / "taken").write_text("precious")
    assert main(["star", *star_args(d, tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"starjax: error: run_dir={tmp_path / 'taken'} is a file, not a directory; give another run_dir"
    )
    assert (tmp_path / "taken").read_text() == "precious"


def test_a_base_trained_with_another_tokenizer_is_refused(finished_run, tmp_path, capsys):
    d, run = finished_run
    other = write_task(tmp_path)
    text = (other / "train.jsonl").read_text()
    (other / "train.jsonl").write_text(text.replace("moon", "planet").replace("tree", "forest"))
    assert main(["star", *star_args(other, tmp_path / "run", f"star.base={run / 'base'}")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "not this run's tokenizer" in err and f"tokenizer.path={run / 'tokenizer.model'}" in err


def test_an_iteration_that_keeps_nothing_logs_it_and_continues(tmp_path, capsys):
    d = write_task(tmp_path, bad_rows=False)
    assert main(["star", *star_args(d, tmp_path / "run", "pretrain.steps=0", "star.iterations=1", "star.rationalize=false")]) == 0
    assert "kept nothing to train on" in capsys.readouterr().err
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kept"] == 0 and last["train_steps"] == 0


def test_solved_samples_moves_the_sampling_to_the_questions_still_unsolved(tmp_path):
    d = write_task(tmp_path, bad_rows=False)
    run = tmp_path / "run"
    extra = ("star.temperature=1.0", "star.num_samples=2", "star.solved_samples=1", "star.rationalize=false")
    assert main(["star", *star_args(d, run, *extra)]) == 0
    drawn = [[json.loads(line) for line in (run / "samples" / f"iter_{n}.jsonl").read_text().splitlines()] for n in (1, 2)]
    solved = {s["id"] for s in drawn[0] if s["correct"]}  # what iteration 1 kept (STaR's selectors)
    assert 0 < len(solved) < 48, "the pre-trained model should solve some questions and fail others"
    assert set(Counter(s["id"] for s in drawn[0]).values()) == {2}  # iteration 1: star.num_samples for all
    per_question = Counter(s["id"] for s in drawn[1])
    assert len(per_question) == 48 and all(n == (1 if q in solved else 2) for q, n in per_question.items())
    # pass@1 weighs every question the same, however many samples it drew
    second = json.loads((run / "metrics.jsonl").read_text().splitlines()[2])
    shares = [sum(s["correct"] for s in drawn[1] if s["id"] == q) / n for q, n in per_question.items()]
    assert second["sample_accuracy"] == pytest.approx(sum(shares) / len(shares))


def star_process(d: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "starjax.cli", "star", *star_args(d, run_dir, "runtime.num_cpu_devices=2", "mesh.data=2")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(p, ready, what: str) -> None:
    deadline = time.time() + 300
    while not ready():
        assert p.poll() is None and time.time() < deadline, f"run ended before {what}"
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()


def comparable(run_dir: Path) -> list[dict]:
    """metrics.jsonl without wall-clock times and compile counts (a resumed process compiles again)."""
    return [reference.comparable(r) for r in report.read_metrics(run_dir)]


@pytest.mark.slow
def test_sigkill_at_any_phase_and_rerun_equals_uninterrupted(tmp_path):
    d = write_task(tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    p = star_process(d, whole)
    assert p.wait(timeout=600) == 0, p.stderr.read()
    p = star_process(d, killed)  # killed mid fine-tune of iteration 1 (or just after it)
    kill_when(p, lambda: (killed / "train" / "iter_1").exists() or (killed / "state" / "4").exists(), "iteration 1 trained")
    assert not (killed / "metrics.jsonl").exists() or len(comparable(killed)) < 3
    p = star_process(d, killed)  # killed once iteration 2 has generated
    kill_when(p, lambda: (killed / "state" / "6").exists(), "iteration 2 generated")
    p = star_process(d, killed)
    assert p.wait(timeout=600) == 0, p.stderr.read()
    assert "resuming: iteration 2 is generated" in p.stderr.read()
    assert comparable(killed) == comparable(whole)
    for n in (1, 2):
        assert (killed / "samples" / f"iter_{n}.jsonl").read_text() == (whole / "samples" / f"iter_{n}.jsonl").read_text()


def test_predictions_from_step_checks_follow_the_theory():
    from starjax import theory
    from starjax.star.predict import from_step_checks

    # 3 steps, M = 4: step 1 right in 3 of 4 chains, step 2 in all, step 3 in half
    checks = [[True, True, True], [True, True, False], [True, True, True], [False, True, False]]
    out = from_step_checks(checks, 4)
    alpha = [0.75, 1.0, 0.5]
    d = [(4 * a - 1) / 3 for a in alpha]
    assert out["d_hat"] == pytest.approx(d)
    assert out["predicted_accuracy"] == pytest.approx(theory.accuracy(theory.star_update(d, 4), 4))
    assert out["theory_kept_wrong_step"] == pytest.approx(theory.kept_wrong_step(d, 4))


def test_diagnose_prints_the_prediction_for_a_finished_run(finished_run, capsys):
    d, run = finished_run
    assert (
        main(
            [
                "diagnose",
                *star_args(
                    d, run, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "star.eval_samples=4", "star.eval_temperature=1.0"
                ),
                "--samples",
                "2",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sampled accuracy:" in out and "predicted accuracy by iteration: 0:" in out
    assert "effective d (assumes M=1000, T=2" in out
    assert main(["diagnose", *star_args(d, run), "--samples", "0"]) == 2


def test_diagnose_held_out_compares_training_and_test_questions_per_difficulty(finished_run, capsys):
    d, run = finished_run
    assert main(["diagnose", *star_args(d, run), "--samples", "2", "--held-out"]) == 0
    out = capsys.readouterr().out.split("training vs held-out questions")[1].splitlines()[2:]
    rows = [line.split() for line in out if line.split()[:1] in (["train"], ["test"])]
    counts = {split: sum(int(r[2]) for r in rows if r[0] == split) for split in ("train", "test")}
    assert counts == {"train": 48, "test": 16}  # every usable question of each split, grouped by difficulty
    assert {r[1] for r in rows} == {"easy", "hard"}
    for _, _, _, greedy, sampled, passed in rows:
        assert 0 <= float(sampled) <= float(passed) <= 1 and 0 <= float(greedy) <= 1


def test_warm_start_trains_on_gold_targets_first_and_a_restart_reuses_it(tmp_path):
    from starjax import runtime
    from starjax.checkpoint import save_params
    from starjax.star.base_model import base_model
    from starjax.star.setup import prepare

    cfg = load_config(
        None,
        [
            *SMALL_MODEL,
            "model.vocab_size=null",
            f"run_dir={tmp_path / 'run'}",
            f"task.data_dir={tmp_path / 'tfds'}",
            "task.name=zip_chain",
            "task.zip_chain.bits=2",
            "task.zip_chain.seed_per_question=2",
            "pretrain.warm_steps=3",
            "pretrain.steps=2",
            "train.batch_size=8",
            "train.seq_len=64",
            "sampler.prompt_buckets=[32]",
        ],
    )
    setup = prepare(cfg, allow_config_change=False)
    rules = runtime.start(cfg)
    logs: list[str] = []
    setup.load(logs.append)
    rollout = Continuations(Context(setup.cfg, setup.task))
    args = (setup.cfg, rules, setup.task, rollout, setup.splits, setup.tokenizer, setup.run_dir, logs.append)
    model = base_model(*args)
    run = tmp_path / "run"
    assert "warm start: 3 steps on 16 examples" in logs  # one gold target per question (4^2 pairs)
    assert "pre-train: 2 steps on 32 examples" in logs
    assert (run / "base").is_dir() and not any((run / d).exists() for d in ("warm", "pretrain_warm", "pretrain"))
    # a run stopped after its warm start goes on from the saved warm model, without warming again
    shutil.rmtree(run / "base")
    save_params(run / "warm", model)
    logs.clear()
    base_model(*args)
    assert not any(line.startswith("warm start") for line in logs) and "pre-train: 2 steps on 32 examples" in logs


def test_the_evaluation_reuses_the_program_pre_trainings_checks_compiled(tmp_path, capsys):
    # 16 questions of difficulty "hard" for the check, 16 test questions: the same greedy calls
    d = write_task(tmp_path, n_train=64)
    stop = ["pretrain.stop_difficulty=hard", "pretrain.stop_every=40", "pretrain.stop_accuracy=1.0", "pretrain.stop_questions=16"]
    args = star_args(d, tmp_path / "run", *stop, "star.iterations=1", "star.eval_samples=1", "star.rationalize=false")
    assert main(["star", *args]) == 0
    assert "pre-train step 40: " in capsys.readouterr().err
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["compilations"]["sampler"] == 0  # one of their own would compile it again
