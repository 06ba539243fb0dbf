"""The `reward_model` scorer: a second language model judges each sample.

The judge is any causal LM starjax can load from a Hugging Face directory (`starjax import-hf`
output or config.json + safetensors). A sample's score is the judge's mean log-probability per
token of `target` (e.g. " Yes") after `template` filled with the question, the gold answer and
the completion; the sample is correct when the score is at least `threshold`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from starjax.errors import ConfigError
from starjax.registry import SCORERS
from starjax.star.protocols import Context, Verdict
from starjax.tasks.base import Problem


@dataclass(frozen=True)
class RewardModelConfig:
    # The judge: a Hugging Face checkpoint directory (an import-hf output or config.json + safetensors).
    from_hf: Optional[str] = None
    # Its tokenizer (null: from_hf's).
    tokenizer: Optional[str] = None
    # Filled with {question}, {answer} (the gold one) and {completion}; the judge continues it.
    template: str = "Question: {question}\nProposed answer: {completion}\nIs the proposed answer correct?"
    target: str = " Yes"
    # Correct when the mean log-probability per target token is at least this (log 0.5).
    threshold: float = -0.6931471805599453
    # Judge rows per forward pass, and the longest judged text in tokens (longer ones keep their end).
    batch_size: int = 16
    max_tokens: int = 1024
    param_dtype: str = "float32"

    def check(self, cfg) -> None:
        if self.from_hf is None:
            raise ConfigError("the reward_model scorer needs scoring.reward_model.from_hf: a Hugging Face checkpoint directory")
        if self.batch_size < 1 or self.max_tokens < 2 or not self.target:
            raise ConfigError("scoring.reward_model needs batch_size >= 1, max_tokens >= 2 and a non-empty target")
        try:
            self.template.format(question="", answer="", completion="")
        except (KeyError, IndexError) as e:
            raise ConfigError(
                f"scoring.reward_model.template names {e}; use {{question}}, {{answer}} and {{completion}}"
            ) from None


class RewardModelScorer:
    def __init__(self, options: RewardModelConfig, rules):
        self.o, self.rules = options, rules
        self._judge = None  # loaded on first use: a run that never scores never reads it

    def _load(self):
        import jax
        from flax import nnx

        from starjax.hf.config import hf_architecture_layer
        from starjax.schema import ModelConfig
        from starjax.sources import load_model, load_tokenizer

        o = self.o
        mcfg = ModelConfig(**{**hf_architecture_layer(o.from_hf), "from_hf": o.from_hf, "param_dtype": o.param_dtype})
        model = load_model(None, mcfg, self.rules, seed=0)
        tokenizer = load_tokenizer(o.tokenizer or o.from_hf)
        graphdef, state = nnx.split(model)

        @jax.jit
        def target_logprobs(state, tokens, positions, segments, targets):
            logits, _ = nnx.merge(graphdef, state)(tokens, positions, segments)
            logits = logits.astype(np.float32)
            # target logit - logsumexp, as the train step's loss: no [B, L, V] log-probability array
            target_logit = jax.numpy.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
            return target_logit - jax.nn.logsumexp(logits, axis=-1)

        self._judge = (tokenizer, state, target_logprobs)

    def __call__(self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[str]) -> list[Verdict]:
        if self._judge is None:
            self._load()
        tokenizer, state, target_logprobs = self._judge
        o = self.o
        texts = [o.template.format(question=p.question, answer=p.answer, completion=c) for p, c in zip(problems, completions)]
        target = tokenizer.encode(o.target)
        rows = [(ids + target)[-o.max_tokens :] for ids in tokenizer.encode_batch(texts, add_bos=True)]
        scores = []
        for start in range(0, len(rows), o.batch_size):
            batch = rows[start : start + o.batch_size]
            length = 1 << (max(len(r) for r in batch) - 1).bit_length()  # a power of two: few compiled shapes
            tokens = np.full((o.batch_size, length), tokenizer.pad_id, np.int32)
            segments = np.zeros((o.batch_size, length), np.int32)
            for i, r in enumerate(batch):
                tokens[i, : len(r)], segments[i, : len(r)] = r, 1
            positions = np.broadcast_to(np.arange(length, dtype=np.int32), tokens.shape)
            targets = np.roll(tokens, -1, axis=1)  # position j predicts token j + 1
            logp = np.asarray(target_logprobs(state, tokens, positions, segments, targets))
            for i, r in enumerate(batch):
                span = logp[i, len(r) - len(target) - 1 : len(r) - 1]
                scores.append(float(span.mean()))
        return [Verdict(s, s >= o.threshold and math.isfinite(s)) for s in scores]


@SCORERS.register("reward_model", config=RewardModelConfig)
def reward_model(ctx: Context) -> RewardModelScorer:
    return RewardModelScorer(ctx.options("scoring", "reward_model"), ctx.rules)
