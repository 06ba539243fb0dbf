"""The reward_model scorer: a second model's log-likelihood of a judge template, batched and
padded, equals the same number computed one unpadded row at a time."""

import jax
import numpy as np
import pytest
from conftest import make_rules
from test_recipes import _tiny_hf_model

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.registry import SCORERS
from starjax.sources import load_model, load_tokenizer
from starjax.star.protocols import Context
from starjax.tasks.base import Problem, Task
from starjax.tasks.verifiers import exact

TEMPLATE = "Q: {question} (gold {answer}) A: {completion} Right?"


def test_reward_model_scores_are_the_judges_mean_target_logprob(tmp_path):
    judge = _tiny_hf_model(tmp_path / "judge", ["Q: what A: yes no Right? gold"] * 20, [])
    overrides = [
        "star.scorers=[answer,reward_model]",
        f"scoring.reward_model.from_hf={judge}",
        f"scoring.reward_model.template={TEMPLATE!r}",
        "scoring.reward_model.target=' yes'",
        "scoring.reward_model.batch_size=2",
    ]
    cfg = load_config(None, overrides)
    rules = make_rules()
    problems = [Problem("a", "1 + 1", "2"), Problem("b", "2 + 2", "4"), Problem("c", "what is it, in many more words?", "x")]
    completions = ["2", "five", "a much longer completion than the others"]
    scorer = SCORERS.get("reward_model").build(Context(cfg, Task(exact), rules))
    verdicts = scorer(problems, ["p"] * 3, completions)

    model = load_model(None, load_config(None, [f"model.from_hf={judge}"]).model, rules, 0)
    tokenizer = load_tokenizer(judge)
    target = tokenizer.encode(" yes")
    for p, c, v in zip(problems, completions, verdicts):
        ids = tokenizer.encode(TEMPLATE.format(question=p.question, answer=p.answer, completion=c), add_bos=True) + target
        logits, _ = model(np.asarray([ids], np.int32))
        logp = np.asarray(jax.nn.log_softmax(logits[0].astype(np.float32), axis=-1))
        want = np.mean([logp[len(ids) - len(target) - 1 + i, t] for i, t in enumerate(target)])
        assert v.score == pytest.approx(float(want), abs=1e-4)
        assert v.correct == (v.score >= cfg.scoring.reward_model.threshold)
    middle = sorted(v.score for v in verdicts)[1]
    cfg = load_config(None, [*overrides, f"scoring.reward_model.threshold={middle}"])
    split = SCORERS.get("reward_model").build(Context(cfg, Task(exact), rules))(problems, ["p"] * 3, completions)
    assert sum(v.correct for v in split) == 2


def test_reward_model_settings_fail_before_any_compute():
    with pytest.raises(ConfigError, match="needs scoring.reward_model.from_hf"):
        load_config(None, ["star.scorers=[answer,reward_model]"])
    with pytest.raises(ConfigError, match=r"template names 'gold'"):
        load_config(
            None, ["star.scorers=[reward_model]", "scoring.reward_model.from_hf=x", "scoring.reward_model.template='{gold}'"]
        )
