"""The STaR paper's GSM8K and CommonsenseQA formats of the file tasks (task.jsonl/tfds.format):
exact prompt, hint and target strings, answer extraction, malformed rows, few-shot files."""

import functools
import json
import types
from pathlib import Path

import pytest

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.tasks.base import Problem, Task
from starjax.tasks.formats import FILE_FORMATS, FORMATS
from starjax.tasks.registry import make_task
from starjax.tasks.verifiers import choice, exact, numeric

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT / "tests/data/gsm8k_sample.jsonl"
CSQA = ROOT / "tests/data/commonsenseqa_sample.jsonl"
RATIONALES = ROOT / "configs/data/commonsenseqa_rationales.jsonl"


def jsonl_task(tmp_path, train, *overrides, test=None):
    return make_task(
        load_config(
            None,
            [
                "task.name=jsonl",
                f"task.data_dir={tmp_path / 'tfds'}",
                f"task.jsonl.train={train}",
                f"task.jsonl.test={test or train}",
                *overrides,
            ],
        )
    )


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def csqa_row(stem="Where do fish live?", texts=("tree", "water", "desert"), key="B", **extra):
    return {
        "answerKey": key,
        "id": "x",
        "question": {
            "question_concept": "fish",
            "stem": stem,
            "choices": [{"label": label, "text": t} for label, t in zip("ABCDE", texts)],
        },
        **extra,
    }


# ---- gsm8k -----------------------------------------------------------------------------------


def test_gsm8k_rows_prompt_hint_and_target(tmp_path):
    task = jsonl_task(tmp_path, GSM8K, "task.jsonl.format=gsm8k")
    assert task.verifier is numeric  # the format's default, with no verifier set
    s = task.load()
    assert s.skipped == {} and len(s.train) == 6
    p = s.train[0]
    assert p.answer == "20"
    assert p.rationale == (
        "Maria gave away 36 / 3 = 12 cookies.\nAfter that she had 36 - 12 = 24 cookies.\n"
        "She ate 4, so she has 24 - 4 = 20 cookies left."
    )
    assert task.prompt(p) == f"Q: {p.question}\nA:"
    assert task.prompt(p, hint=True) == f"Q: {p.question} (Hint: the answer is 20)\nA:"
    assert task.target(p) == f" {p.rationale}\n#### 20"
    pencils = s.train[2]
    assert (pencils.answer, pencils.rationale) == ("1440", "The school orders 45 * 32 = 1,440 pencils.")
    assert task.target(pencils).endswith("\n#### 1440")


@pytest.mark.parametrize(
    "completion, extracted, correct",
    [
        (" 1000 + 234 = 1,234\n#### 1,234", "1234", True),
        (" steps\n#### 1234.", "1234.", True),
        (" 617 * 2 = 1234\n#### 1234\n\nQ: Another question?\nA: It is 5.\n#### 5", "1234", True),  # invented next exemplar
        (" #### 12 #### 1234 apples", "1234 apples", True),  # the last marker counts
        (" 1234 #### 1233", "1233", False),
        (" The answer is 1234.", None, False),  # no ####
        (" steps\n####\n  \n", None, False),
        ("", None, False),
    ],
)
def test_gsm8k_extract_and_verify(tmp_path, completion, extracted, correct):
    task = jsonl_task(tmp_path, GSM8K, "task.jsonl.format=gsm8k")
    assert task.verify(completion, Problem("i", "q", "1234")) == (extracted, correct)


def test_gsm8k_rows_without_marker_and_explicit_rationales(tmp_path):
    path = write_rows(
        tmp_path / "g.jsonl",
        [
            {"question": "q1", "answer": "7", "rationale": "3 + 4 = 7."},  # plain row: kept as plain reads it
            {"question": "q2", "answer": "7"},
            {"question": "q3", "answer": "a <<1+1=2>>2\n#### 2", "rationale": "written by hand"},
            {"question": "q4", "answer": "steps\n####   "},
            {"question": "q5", "answer": "#### 9"},
            {"answer": "#### 9"},
        ],
    )
    task = jsonl_task(tmp_path, path, "task.jsonl.format=gsm8k", "task.jsonl.verifier=exact")
    assert task.verifier is exact  # an explicit verifier still wins
    s = task.load()
    assert s.skipped == {"empty answer": 2, "missing question": 2}
    q1, q2, q3, q5 = s.train
    assert (q1.answer, task.target(q1)) == ("7", " 3 + 4 = 7.\n#### 7")
    assert task.target(q2) is None
    assert (q3.answer, q3.rationale) == ("2", "written by hand")
    assert (q5.answer, q5.rationale, task.target(q5)) == ("9", None, None)


def test_gsm8k_few_shot_from_training_problems(tmp_path):
    task = jsonl_task(tmp_path, GSM8K, "task.jsonl.format=gsm8k", "task.jsonl.few_shot=2")
    s = task.load()
    a, b, p = s.train[0], s.train[1], s.train[4]
    shots = f"Q: {a.question}\nA: {a.rationale}\n#### 20\n\nQ: {b.question}\nA: {b.rationale}\n#### 99\n\n"
    assert task.prompt(p) == shots + f"Q: {p.question}\nA:"
    assert task.prompt(a) == f"Q: {b.question}\nA: {b.rationale}\n#### 99\n\nQ: {a.question}\nA:"  # never its own shot
    hinted = (
        f"Q: {a.question} (Hint: the answer is 20)\nA: {a.rationale}\n#### 20\n\n"
        f"Q: {b.question} (Hint: the answer is 99)\nA: {b.rationale}\n#### 99\n\n"
    )
    assert task.prompt(p, hint=True) == hinted + f"Q: {p.question} (Hint: the answer is {p.answer})\nA:"


# ---- commonsenseqa ---------------------------------------------------------------------------


def test_commonsenseqa_rows_prompt_hint_and_no_target(tmp_path):
    task = jsonl_task(tmp_path, CSQA, "task.jsonl.format=commonsenseqa")
    assert task.verifier is choice
    s = task.load()
    assert s.skipped == {"answer not among the choice labels": 2}  # the malformed row, in train and test
    assert len(s.train) == 5 and [p.answer for p in s.train] == ["A", "B", "C", "D", "B"]
    p = s.train[0]
    assert p.question == (
        "Where would you put money you want to keep safe and earn interest on?\nAnswer Choices:\n"
        "(a) bank\n(b) wallet\n(c) river\n(d) pocket\n(e) jar"
    )
    assert task.prompt(p) == f"Q: {p.question}\nA:"
    assert task.prompt(p, hint=True) == (
        "Q: Where would you put money you want to keep safe and earn interest on?\nAnswer Choices:\n"
        "(a) bank (CORRECT)\n(b) wallet\n(c) river\n(d) pocket\n(e) jar\nA:"
    )
    assert task.target(p) is None  # CommonsenseQA has no gold rationales
    assert task.gold_records(s) == []


@pytest.mark.parametrize(
    "completion, extracted, correct",
    [
        (" Money is kept in a bank. Therefore, the answer is bank (b).", "B", True),
        (" Therefore, the answer is bank (B).", "B", True),
        (" The answer is (b) bank.", "B", True),
        (" the answer is wallet (a). No wait, the answer is bank (b).", "B", True),  # the last one counts
        (" Therefore, the answer is river (c).", "C", False),
        (" Therefore, the answer is bank.", None, False),  # no parenthesised letter
        (" Therefore, the answer is bank.\n(b)", None, False),  # only on the same line
        (
            " Therefore, the answer is bank (b).\n\nQ: Where is ice?\nAnswer Choices:\n(a) sun\nA: the answer is sun (a).",
            "B",
            True,
        ),
        (" I think it is (b).", None, False),
        ("", None, False),
    ],
)
def test_commonsenseqa_extract_and_verify(tmp_path, completion, extracted, correct):
    task = jsonl_task(tmp_path, CSQA, "task.jsonl.format=commonsenseqa")
    assert task.verify(completion, Problem("i", "q", "B")) == (extracted, correct)


def test_commonsenseqa_malformed_rows_are_counted(tmp_path):
    rows = [
        csqa_row(),
        csqa_row(stem=None),
        csqa_row(stem="  "),
        csqa_row(stem=["not text"]),
        {"answerKey": "A", "question": {"stem": "s"}},
        csqa_row(key=None),
        csqa_row(key="D"),
        csqa_row(texts=("only one",), key="A"),
        {"answerKey": "A", "question": {"stem": "s", "choices": [{"label": "A1", "text": "x"}, {"label": "B", "text": "y"}]}},
        {"answerKey": "A", "question": {"stem": "s", "choices": [{"label": "A", "text": "x"}, {"label": "A", "text": "y"}]}},
        {"answerKey": "A", "question": {"stem": "s", "choices": "A: x, B: y"}},
        {"answerKey": "A", "question": {"stem": "s", "choices": [{"label": "A", "text": ""}, {"label": "B", "text": "y"}]}},
        csqa_row(rationale=["not text"]),
        "{broken",
        "[1]",
    ]
    s = jsonl_task(tmp_path, write_rows(tmp_path / "c.jsonl", rows), "task.jsonl.format=commonsenseqa").load()
    assert s.skipped == {
        k: 2 * n
        for k, n in {  # train and test are the same file
            "missing question": 1,
            "empty question": 1,
            "non-string question": 1,
            "missing choices": 1,
            "missing answer": 1,
            "answer not among the choice labels": 1,
            "fewer than 2 choices": 1,
            "malformed choices": 4,
            "non-string rationale": 1,
            "unparsable JSON": 1,
            "not an object": 1,
        }.items()
    }
    assert [p.question for p in s.train] == ["Where do fish live?\nAnswer Choices:\n(a) tree\n(b) water\n(c) desert"]


def test_commonsenseqa_flat_remapped_and_label_text_rows(tmp_path):
    official = Problem("train-1", "Where do fish live?\nAnswer Choices:\n(a) tree\n(b) water\n(c) desert", "B")
    flat = {
        "question": "Where do fish live?",
        "choices": [{"label": "A", "text": "tree"}, {"label": "B", "text": "water"}, {"label": "C", "text": "desert"}],
        "answer": "b",
    }
    columns = {
        "question": "Where do fish live?",
        "choices": {"label": ["A", "B", "C"], "text": ["tree", "water", "desert"]},
        "answerKey": "B",
    }  # TFDS / Hugging Face layout
    remapped = {"q": flat["question"], "opts": flat["choices"], "gold": "B", "why": "Fish need water."}
    for row, overrides in [
        (csqa_row(), []),
        (flat, []),
        (columns, []),
        (
            remapped,
            [
                "task.jsonl.fields.question=q",
                "task.jsonl.fields.choices=opts",
                "task.jsonl.fields.answer=gold",
                "task.jsonl.fields.rationale=why",
            ],
        ),
    ]:
        task = jsonl_task(tmp_path, write_rows(tmp_path / "r.jsonl", [row]), "task.jsonl.format=commonsenseqa", *overrides)
        (p,) = task.load().train
        assert (p.id, p.question, p.answer) == (official.id, official.question, official.answer), row
    assert p.rationale == "Fish need water."
    assert task.target(p) == " Fish need water. Therefore, the answer is water (b)."
    assert task.verify(task.target(p), p) == ("B", True)


def test_commonsenseqa_few_shot_file(tmp_path):
    every = jsonl_task(tmp_path, CSQA, "task.jsonl.format=commonsenseqa", f"task.jsonl.few_shot_file={RATIONALES}")
    s = every.load()
    assert len(every._shots) == 8  # few_shot 0: all of the file's exemplars
    for shot in every._shots:
        assert every.verify(every.target(shot), shot) == (shot.answer, True)
        assert every.target(shot).startswith(f" {shot.rationale} Therefore, the answer is ")
    three = jsonl_task(
        tmp_path, CSQA, "task.jsonl.format=commonsenseqa", f"task.jsonl.few_shot_file={RATIONALES}", "task.jsonl.few_shot=3"
    )
    three.load()
    p = s.test[0]
    shots = "".join(f"Q: {x.question}\nA:{three.target(x)}\n\n" for x in every._shots[:3])
    assert three.prompt(p) == shots + f"Q: {p.question}\nA:"
    # rationalization: each exemplar marks its own right choice, as STaR's rationalization prompts do
    hinted = "".join(f"{three.question_text(x, x.answer)}{three.target(x)}\n\n" for x in every._shots[:3])
    assert "(CORRECT)" in three.question_text(every._shots[0], every._shots[0].answer)
    assert three.prompt(p, hint=True) == hinted + f"Q: {p.question}\nA:".replace("(a) bank", "(a) bank (CORRECT)")
    assert three.prompt(p, few_shot=False) == f"Q: {p.question}\nA:"
    assert three._shots[0].question.startswith("Where would you most likely find a refrigerator?\nAnswer Choices:\n(a) garden")
    # Exemplars from the file replace training problems even when those have rationales.
    shot = write_rows(tmp_path / "shot.jsonl", [{"question": "Q1?", "answer": "x\n#### 3"}])
    gsm = jsonl_task(tmp_path, GSM8K, "task.jsonl.format=gsm8k", "task.jsonl.few_shot=1", f"task.jsonl.few_shot_file={shot}")
    g = gsm.load()
    assert gsm.prompt(g.train[0]) == f"Q: Q1?\nA: x\n#### 3\n\nQ: {g.train[0].question}\nA:"


# ---- round trips, tfds, config ---------------------------------------------------------------


def test_gold_targets_verify_and_wrong_ones_do_not(tmp_path):
    csqa = write_rows(tmp_path / "c.jsonl", [json.loads(line) for line in RATIONALES.read_text().splitlines()])
    for path, fmt in [(GSM8K, "gsm8k"), (csqa, "commonsenseqa")]:
        task = jsonl_task(tmp_path, path, f"task.jsonl.format={fmt}")
        problems = task.load().train
        assert len(problems) >= 6
        for p in problems:
            assert task.verify(task.target(p), p) == (p.answer, True), p
            q = next(x for x in problems if x.answer != p.answer)
            assert task.verify(task.target(q), p)[1] is False
        assert all(isinstance(t, str) and t for t in task.texts(task.load()))


@functools.cache
def csqa_builder():
    """A TFDS dataset in commonsense_qa's layout: choices as a sequence of {label, text}."""
    import tensorflow_datasets as tfds

    def _info(self):
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"question": text, "answerKey": text, "choices": tfds.features.Sequence({"label": text, "text": text})}
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 6), "validation": self._generate_examples(6, 8)}

    def _generate_examples(self, lo, hi):
        for i in range(lo, hi):
            yield (
                i,
                {
                    "question": f"Which is number {i}?",
                    "answerKey": "C" if i != 3 else "Z",
                    "choices": {"label": ["A", "B", "C"], "text": [f"{i - 1}", f"{i + 1}", f"{i}"]},
                },
            )

    body = {
        "VERSION": tfds.core.Version("1.0.0"),
        "_info": _info,
        "_split_generators": _split_generators,
        "_generate_examples": _generate_examples,
        "__module__": __name__,
    }
    return types.new_class("ToyCsqa", (tfds.core.GeneratorBasedBuilder,), {}, lambda ns: ns.update(body))


def test_tfds_commonsenseqa(tmp_path):
    csqa_builder()(data_dir=str(tmp_path / "user"), file_format="array_record").download_and_prepare()
    task = make_task(
        load_config(
            None,
            [
                "task.name=tfds",
                "task.tfds.train=toy_csqa",
                "task.tfds.test_split=validation",
                f"data.tfds_data_dir={tmp_path / 'user'}",
                "task.tfds.format=commonsenseqa",
                f"task.tfds.few_shot_file={RATIONALES}",
                "task.tfds.few_shot=2",
            ],
        )
    )
    s = task.load()
    assert s.skipped == {"answer not among the choice labels": 1} and len(s.train) == 5 and len(s.test) == 2
    p = next(x for x in s.test if x.question.startswith("Which is number 6?"))
    assert p.question == "Which is number 6?\nAnswer Choices:\n(a) 5\n(b) 7\n(c) 6" and p.answer == "C"
    assert task.prompt(p).endswith("\n\nQ: Which is number 6?\nAnswer Choices:\n(a) 5\n(b) 7\n(c) 6\nA:")
    assert task.verify(" 6 is 6. Therefore, the answer is 6 (c).", p) == ("C", True)


def test_formats_and_config_errors(tmp_path):
    assert tuple(FORMATS) == FILE_FORMATS
    cfg = load_config(None, [])
    assert (cfg.task.jsonl.format, cfg.task.jsonl.verifier, cfg.task.jsonl.few_shot_file) == ("plain", None, None)
    assert jsonl_task(tmp_path, GSM8K).verifier is exact  # plain: exact, as before
    with pytest.raises(
        ConfigError, match=r"^task.jsonl.format='gsm' is unknown; choose one of \['plain', 'gsm8k', 'commonsenseqa'\]$"
    ):
        load_config(None, ["task.jsonl.format=gsm"])
    with pytest.raises(ConfigError, match=r"task.tfds.format='CSQA' is unknown"):
        load_config(None, ["task.tfds.format=CSQA"])
    with pytest.raises(ConfigError, match=r"^task.jsonl.few_shot_file: file '.*no_such.jsonl' not found$"):
        jsonl_task(tmp_path, CSQA, "task.jsonl.format=commonsenseqa", f"task.jsonl.few_shot_file={tmp_path / 'no_such.jsonl'}")
    with pytest.raises(
        ConfigError,
        match=r"few_shot_file .* no usable problems \(skipped: 1 answer not among the choice "
        r"labels, 5 no rationale\); give exemplar rows in the commonsenseqa format",
    ):
        jsonl_task(tmp_path, CSQA, "task.jsonl.format=commonsenseqa", f"task.jsonl.few_shot_file={CSQA}")
    with pytest.raises(
        ConfigError,
        match=r"task.jsonl.fields has unknown keys \['stem'\]; use question, answer, "
        r"rationale, difficulty, choices",
    ):
        load_config(None, ["task.jsonl.fields.stem=s"])


def test_trim_cuts_an_invented_next_exemplar_before_verifying_and_keeping():
    from starjax.tasks.formats import FORMATS

    completion = " 2 + 3 = 5\n#### 5\n\nQ: What is 1 + 1?\nA: 1 + 1 = 2\n#### 2"
    for name in ("gsm8k", "commonsenseqa"):
        assert FORMATS[name].trim(completion) == " 2 + 3 = 5\n#### 5"
    plain = "Paris is in France.\nThe answer is France\n\nQuestion: Where is Rome?\nAnswer:\nThe answer is Italy"
    assert FORMATS["plain"].trim(plain) == "Paris is in France.\nThe answer is France"
    assert FORMATS["plain"].trim(completion) == completion  # no `Question:` line: nothing to cut


def test_plain_few_shot_run_on_is_verified_and_kept_without_the_invented_exemplar(tmp_path):
    from starjax.registry import SELECTORS
    from starjax.star.kept import attempts, select
    from starjax.star.plugins.scorers import RuleScorer
    from starjax.star.protocols import Context
    from starjax.tasks.base import Continuation

    task = Task(exact, few_shot=1)
    p = Problem("q", "Where is Paris?", "France")
    run_on = Continuation("The answer is France\n\nQuestion: Where is Rome?\nAnswer:\nThe answer is Italy", truncated=True)
    (a,) = attempts(task, [p], [task.prompt(p)], [[run_on]], False, {"answer": RuleScorer(task)})[0]
    assert (a.extracted, a.correct) == ("France", True)
    ctx = Context(load_config(None, []), task)
    (kept,) = select(task, [p], [[a]], [SELECTORS.get(n).build(ctx) for n in ("correct", "dedupe", "cap")], False)[1]
    assert kept.completion == "The answer is France" and "Question:" not in kept.completion
