"""The continuous engine: equal to the fixed path where it must be, independent of batch size and
sharding, a shared prefix equal to prefilling it with each prompt, per-row limits, and STaR on it."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL_MODEL, make_rules
from test_star import comparable, star_args, write_task

from starjax.cli import main
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.model.kv_cache import KVCache
from starjax.model.transformer import create_model
from starjax.sampling import scheduler
from starjax.sampling.engine import Sampler

VOCAB = 96


class IdTokenizer:
    pad_id, eos_id, extra_stop_ids = 0, 1, []

    def decode(self, ids) -> str:
        return " ".join(map(str, ids))


@pytest.fixture(scope="module")
def cfg():
    # A larger init std gives peaked logits, so greedy choices are not decided by rounding.
    return load_config(
        None,
        [
            *SMALL_MODEL,
            f"model.vocab_size={VOCAB}",
            "model.init_std=0.3",
            "sampler.max_new_tokens=20",
            "sampler.batch_size=16",
            "sampler.progress=false",
            "sampler.prompt_buckets=[8,16,64]",
        ],
    )


def prompts(shared: int, n: int = 11, seed: int = 0) -> list[list[int]]:
    """n prompts of 1-15 own tokens after `shared` tokens they all start with."""
    rng = np.random.default_rng(seed)
    prefix = rng.integers(2, VOCAB, shared).tolist()
    return [prefix + rng.integers(2, VOCAB, rng.integers(1, 16)).tolist() for _ in range(n)]


def run(sampler, ps, **kw):
    out = sampler.generate_ids(ps, 3, **kw)
    return [[c.tokens for c in row] for row in out], [[c.logprobs for c in row] for row in out]


@pytest.fixture(scope="module")
def sampler(cfg):
    return Sampler(create_model(cfg.model, make_rules(), seed=0), IdTokenizer(), cfg.sampler)


@pytest.mark.parametrize("shared", [0, 40])
def test_greedy_equals_the_fixed_path(sampler, shared):
    """Greedy rows are the same whichever engine runs them, with or without a shared prefix."""
    ps = prompts(shared)
    assert (scheduler.shared_prefix_length(ps) > 0) == (shared > 0)
    fixed, fixed_lp = run(sampler, ps, engine="fixed", temperature=0.0, num_samples=2)
    cont, cont_lp = run(sampler, ps, engine="continuous", temperature=0.0, num_samples=2)
    assert cont == fixed
    for a, b in zip(cont_lp, fixed_lp):
        np.testing.assert_allclose(np.concatenate(a), np.concatenate(b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shared", [0, 40])
def test_samples_do_not_depend_on_batch_size_or_refill_size(sampler, shared):
    """A row's tokens are a function of (seed, prompt index, sample index): 16 slots refilled 8
    rows at a time and 4 slots refilled 2 at a time draw the same samples."""
    ps = prompts(shared, n=13, seed=1)
    big, big_lp = run(sampler, ps, temperature=1.0, num_samples=2, batch_size=16, refill_rows=8)
    small, small_lp = run(sampler, ps, temperature=1.0, num_samples=2, batch_size=4, refill_rows=2)
    assert small == big
    assert len({tuple(t) for row in big for t in row}) > 10  # really sampled
    for a, b in zip(big_lp, small_lp):
        np.testing.assert_allclose(np.concatenate(a), np.concatenate(b), rtol=1e-4, atol=1e-4)
    other_seed = sampler.generate_ids(ps, 4, temperature=1.0, num_samples=2)
    assert [[c.tokens for c in row] for row in other_seed] != big


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2)])
def test_sharded_equals_single_device(cfg, sampler, shape):
    ps = prompts(40, n=13, seed=2)
    model = create_model(cfg.model, make_rules(shape), seed=0)
    sharded = Sampler(model, IdTokenizer(), cfg.sampler)
    for temperature in (0.0, 1.0):
        kw = dict(temperature=temperature, num_samples=2)
        assert run(sharded, ps, **kw)[0] == run(sampler, ps, **kw)[0]


def test_a_shared_prefix_block_gives_the_logits_of_the_whole_prompt(cfg):
    """The model attending to a one-row prefix cache besides its own keys computes what it
    computes on prefix + rest in one pass."""
    model = create_model(cfg.model, make_rules(), seed=0)
    rng = np.random.default_rng(3)
    prefix = jnp.asarray(rng.integers(2, VOCAB, (1, 37)), jnp.int32)
    rest = jnp.asarray(rng.integers(2, VOCAB, (3, 9)), jnp.int32)
    whole, _ = model(jnp.concatenate([jnp.repeat(prefix, 3, axis=0), rest], axis=1))
    empty = KVCache.init(cfg.model, model.rules, 1, 37)
    _, shared = model(prefix, cache=empty)
    positions = jnp.broadcast_to(37 + jnp.arange(9), (3, 9))
    own = KVCache.init(cfg.model, model.rules, 3, 9)
    split, _ = model(rest, positions, cache=own, prefix=shared)
    np.testing.assert_allclose(split, whole[:, 37:], rtol=1e-4, atol=1e-4)
    assert (jnp.argmax(split, -1) == jnp.argmax(whole[:, 37:], -1)).all()


def test_shared_prefix_length():
    p = list(range(2, 80))
    assert scheduler.shared_prefix_length([p, p[:50] + [1]]) == 48  # cut to the granule
    assert scheduler.shared_prefix_length([p, p[:20] + [1]]) == 0  # too short to share
    assert scheduler.shared_prefix_length([p[:40], p[:40]]) == 32  # each keeps a token of its own
    assert scheduler.shared_prefix_length([p]) == 64


@pytest.mark.parametrize("engine", ["continuous", "fixed"])
def test_rows_end_at_their_own_limits(sampler, engine):
    ps = prompts(0, n=5)
    limits = np.array([[1, 20], [3, 5], [7, 2], [20, 20], [4, 9]])
    out = sampler.generate_ids(ps, 0, limits, engine=engine, temperature=1.0, num_samples=2, stop_ids=[])
    stops = {IdTokenizer.eos_id}
    for row, caps in zip(out, limits):
        for c, cap in zip(row, caps):
            assert len(c.tokens) <= cap and len(c.tokens) == len(c.logprobs)
            assert (len(c.tokens) == cap and c.finish == "length") or (c.finish == "stop" and c.tokens[-1] in stops)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(engine="paged"), "sampler.engine='paged' is not one of continuous, fixed"),
        (dict(refill_rows=-1), "sampler.refill_rows=-1 must be >= 0"),
        (dict(limits=[3, 0]), "limits must hold new-token caps >= 1"),
        (dict(limits=[[3, 3, 3]] * 2), "limits must hold new-token caps >= 1"),
    ],
)
def test_bad_engine_settings_are_one_line(sampler, kw, message):
    with pytest.raises(ConfigError, match=message) as e:
        sampler.generate_ids([[2, 3], [4, 5]], 0, **kw)
    assert "\n" not in str(e.value)


def test_compilations_are_bounded(cfg):
    s = Sampler(create_model(cfg.model, make_rules(), seed=1), IdTokenizer(), cfg.sampler)
    for seed in range(3):
        s.generate_ids(prompts(40, n=9, seed=seed), seed, temperature=1.0, num_samples=2)
    # the prefix pass, refills for the two suffix buckets and the decode loop
    assert s.compilations <= 4
    n = s.compilations
    s.generate_ids(prompts(40, n=30, seed=7), 7, temperature=0.5, num_samples=2, max_new_tokens=17)  # the same new-token bucket
    assert s.compilations == n


@pytest.mark.slow
def test_star_greedy_runs_equal_on_either_engine(tmp_path):
    """STaR's greedy generation, rationalization and evaluation give the same run on either
    engine (sampled runs draw other samples: the fixed path's random stream depends on the batch)."""
    d = write_task(tmp_path)
    runs = {}
    for engine in ("continuous", "fixed"):
        runs[engine] = tmp_path / engine
        args = star_args(d, runs[engine], f"sampler.engine={engine}", "star.temperature=0.0")
        assert main(["star", *args]) == 0
    assert comparable(runs["continuous"]) == comparable(runs["fixed"])
    for n in (1, 2):
        name = f"samples/iter_{n}.jsonl"
        assert (runs["continuous"] / name).read_text() == (runs["fixed"] / name).read_text()
