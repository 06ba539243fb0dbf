"""Sampler: cached == full forward, strategies, stopping, mixed lengths, sharding, recompiles."""

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL_MODEL, make_rules
from flax import nnx
from test_tokenizer import scratchpad_texts

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.model import layers
from starjax.model.transformer import create_model
from starjax.sampling.engine import Sampler, SharedSampler
from starjax.sampling.loop import growth_sizes
from starjax.sampling.strategies import SamplingSettings, choose_tokens, sample_categorical
from starjax.schema import MeshConfig
from starjax.sentencepiece_tokenizer import train_tokenizer

PROMPTS = ["Input:\n1 2 + 3 4", "Input:\n9 9 9 + 1\nTarget:", "7", "Input:\n5 0 5 + 5 5 5\nTarget:\n<scratch>"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(scratchpad_texts(), tmp_path_factory.mktemp("tok"), vocab_size=320)


@pytest.fixture(scope="module")
def cfg():
    # A larger init std gives peaked logits, so greedy choices are not decided by rounding.
    return load_config(
        None,
        [
            *SMALL_MODEL,
            "model.vocab_size=320",
            "model.init_std=0.3",
            "sampler.max_new_tokens=12",
            "sampler.batch_size=8",
            "sampler.progress=false",
            "sampler.prompt_buckets=[8,16,32]",
        ],
    )


@pytest.fixture(scope="module")
def sampler(cfg, tok):
    return Sampler(create_model(cfg.model, make_rules(), seed=0), tok, cfg.sampler)


def greedy(sampler, prompts=PROMPTS, **kw):
    return [s[0] for s in sampler.generate(prompts, temperature=0.0, **kw)]


def test_cached_generation_matches_full_forward(sampler, tok):
    """Every generated token is the argmax of a full (uncached) forward, with the same log-prob."""
    graphdef, params = nnx.split(nnx.merge(sampler.graphdef, sampler.params))
    full = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t)[0])
    for prompt, c in zip(PROMPTS, greedy(sampler)):
        ids = tok.encode(prompt, add_bos=True)
        seq = jnp.asarray([ids + c.tokens], jnp.int32)
        logprobs = jax.nn.log_softmax(full(params, seq)[0], axis=-1)
        for j, token in enumerate(c.tokens):
            row = logprobs[len(ids) - 1 + j]
            assert int(jnp.argmax(row)) == token
            np.testing.assert_allclose(c.logprobs[j], float(row[token]), rtol=1e-5, atol=1e-5)


def test_greedy_is_deterministic_and_seed_free(sampler):
    a, b = greedy(sampler, seed=0), greedy(sampler, seed=123)
    assert [c.tokens for c in a] == [c.tokens for c in b]


@pytest.mark.parametrize("out_major", [False, True])
def test_fused_weights_decode_as_the_stored_ones(sampler, out_major, monkeypatch):
    """sampler.fuse_weights only changes how the products are grouped and laid out, never the
    tokens; also with every decode weight out-major (by default only large ones, on the CPU)."""
    if out_major:
        monkeypatch.setattr(layers, "OUT_MAJOR_MIN_SIZE", 0)
        sampler = Sampler(nnx.merge(sampler.graphdef, sampler.params), sampler.tokenizer, sampler.cfg)  # compiles afresh
    fused, plain = greedy(sampler), greedy(sampler, fuse_weights=False)
    assert [c.tokens for c in fused] == [c.tokens for c in plain]
    np.testing.assert_allclose([c.logprobs for c in fused], [c.logprobs for c in plain], rtol=1e-5, atol=1e-5)


def test_growth_sizes_hold_the_prompt_and_end_at_the_whole_cache():
    assert growth_sizes(32, 160, 64) == [64, 128, 160]
    assert growth_sizes(64, 192, 64) == [128, 192]
    assert growth_sizes(63, 160, 64) == [64, 128, 160]
    assert growth_sizes(32, 64, 64) == [64]
    assert growth_sizes(32, 160, 0) == [160]


@pytest.mark.parametrize("growth", [4, 8])
def test_a_growing_cache_decodes_as_the_whole_one(cfg, tok, sampler, growth):
    """sampler.cache_growth: decoding through caches of 36, 40 and 44 slots (growth 4; prompt
    bucket 32, 12 new tokens) or 40 and 44 (growth 8) gives the whole cache's tokens, greedy and
    sampled, also split over a mesh. Attention then runs over fewer keys, and a product over
    fewer keys may round differently in the last bits (its kernel is chosen by size), so
    log-probs agree closely."""
    draw = dict(temperature=1.0, num_samples=2, seed=3)
    whole, whole_drawn = greedy(sampler), sampler.generate(PROMPTS, **draw)
    grown, grown_drawn = greedy(sampler, cache_growth=growth), sampler.generate(PROMPTS, cache_growth=growth, **draw)
    assert [c.tokens for c in grown] == [c.tokens for c in whole]
    np.testing.assert_allclose([c.logprobs for c in grown], [c.logprobs for c in whole], rtol=1e-5, atol=1e-5)
    assert [[c.tokens for c in row] for row in grown_drawn] == [[c.tokens for c in row] for row in whole_drawn]
    sharded = Sampler(create_model(cfg.model, make_rules((2, 2, 2)), seed=0), tok, cfg.sampler)
    assert [c.tokens for c in greedy(sharded, cache_growth=growth)] == [c.tokens for c in whole]


def test_top_k_1_and_tiny_temperature_equal_greedy(sampler):
    ref = [c.tokens for c in greedy(sampler)]
    top1 = [s[0].tokens for s in sampler.generate(PROMPTS, temperature=1.0, top_k=1, seed=5)]
    cold = [s[0].tokens for s in sampler.generate(PROMPTS, temperature=1e-6, seed=6)]
    assert top1 == ref and cold == ref


def test_mixed_length_batch_equals_each_prompt_alone(sampler):
    batch = greedy(sampler)
    for prompt, c in zip(PROMPTS, batch):
        alone = greedy(sampler, [prompt])[0]
        assert alone.tokens == c.tokens
        np.testing.assert_allclose(alone.logprobs, c.logprobs, rtol=1e-5, atol=1e-5)


def test_stop_ids_end_rows_and_nothing_leaks(sampler, tok):
    ref = greedy(sampler, max_new_tokens=12)
    stop = ref[0].tokens[2]
    out = greedy(sampler, stop_ids=[stop], max_new_tokens=12)
    for r, c in zip(ref, out):
        if stop in r.tokens:
            cut = r.tokens.index(stop) + 1
            assert c.tokens == r.tokens[:cut] and c.finish == "stop"
            assert c.text == tok.decode(r.tokens[: cut - 1])  # the stop token is not in the text
        else:
            assert c.tokens == r.tokens and c.finish == "length"
    assert all(len(c.tokens) == len(c.logprobs) for c in out)


def test_eos_ends_rows(sampler, tok):
    ref = greedy(sampler)
    eos_tok = copy.copy(tok)
    eos_tok.eos_id = ref[1].tokens[1]
    eos_sampler = Sampler(nnx.merge(sampler.graphdef, sampler.params), eos_tok, sampler.cfg)
    out = greedy(eos_sampler)
    assert out[1].tokens == ref[1].tokens[: ref[1].tokens.index(eos_tok.eos_id) + 1]
    assert out[1].finish == "stop"


def test_update_swaps_weights_without_recompiling(cfg, tok):
    shared = SharedSampler(tok, cfg.sampler)
    s = shared(create_model(cfg.model, make_rules(), seed=3))
    first = greedy(s)
    n = s.compilations
    assert shared(create_model(cfg.model, make_rules(), seed=4)) is s  # built once, updated after
    second = greedy(s)
    assert s.compilations == n
    assert [c.tokens for c in first] != [c.tokens for c in second]
    fresh = greedy(Sampler(create_model(cfg.model, make_rules(), seed=4), tok, cfg.sampler))
    assert [c.tokens for c in fresh] == [c.tokens for c in second]


def test_max_new_tokens_is_traced_and_bounds_length(sampler):
    before = sampler.compilations
    for n in (3, 7, 12):
        out = greedy(sampler, max_new_tokens=n)
        assert all(len(c.tokens) == n and c.finish == "length" for c in out)
    sampler.generate(PROMPTS, temperature=0.7, top_p=0.9, seed=1)
    sampler.generate(PROMPTS, temperature=1.3, top_p=0.5, stop_ids=[5, 6], seed=2)
    assert sampler.compilations - before <= 1  # at most the first use of these shapes


def test_num_samples_share_the_prompt(sampler):
    out = sampler.generate(PROMPTS[:2], temperature=1.0, num_samples=4, seed=3)
    assert [len(s) for s in out] == [4, 4]
    assert len({tuple(c.tokens) for c in out[0]}) > 1  # samples differ
    cold = sampler.generate(PROMPTS[:2], temperature=1e-6, num_samples=4, seed=3)
    ref = greedy(sampler, PROMPTS[:2])
    for samples, r in zip(cold, ref):
        assert all(c.tokens == r.tokens for c in samples)


def test_compilations_are_bounded_by_buckets(cfg, tok):
    s = Sampler(create_model(cfg.model, make_rules(), seed=1), tok, cfg.sampler)
    rng = np.random.RandomState(0)
    prompts = [" ".join(str(d) for d in rng.randint(0, 10, rng.randint(1, 14))) for _ in range(40)]
    out = s.generate(prompts, temperature=0.0)
    assert len(out) == 40 and all(len(x) == 1 for x in out)
    # prompt buckets (3) x row buckets (<= 4: 1, 2, 4, 8) x one new-token bucket
    assert 1 <= s.compilations <= 12
    n = s.compilations
    s.generate(prompts[::-1], temperature=0.5, seed=9)
    assert s.compilations == n
    # results come back in input order
    again = s.generate(prompts[:5], temperature=0.0)
    assert [x[0].tokens for x in again] == [x[0].tokens for x in out[:5]]


@pytest.mark.parametrize("out_major", [False, True])
def test_sharded_greedy_equals_single_device(cfg, tok, out_major, monkeypatch):
    """Also with every decode weight out-major (on the CPU only large ones are by default)."""
    if out_major:
        monkeypatch.setattr(layers, "OUT_MAJOR_MIN_SIZE", 0)
    outs = []
    for shape in ((1, 1, 1), (2, 2, 2)):
        model = create_model(cfg.model, make_rules(shape), seed=2)
        outs.append([c.tokens for c in greedy(Sampler(model, tok, cfg.sampler))])
    assert outs[0] == outs[1]


def built_then_updated(cfg, tok, sampler_cfg):
    """(one-device model, sampler of `sampler_cfg`): a sampler built with a model of seed 0, then
    the same sampler updated to a model of seed 1."""
    sampler = None
    for seed in (0, 1):
        model = create_model(cfg.model, make_rules(), seed=seed)
        if sampler is None:
            sampler = Sampler(model, tok, sampler_cfg)
        else:
            sampler.update(model)
        yield model, sampler


@pytest.mark.parametrize("engine", ["fixed", "continuous"])
def test_a_sampler_mesh_of_its_own_draws_the_same_tokens(cfg, tok, engine):
    """sampler.mesh: a model trained on one device samples on all eight, also after `update`;
    the weights it is handed stay on their own mesh. Split rows are the same computation, but a
    product over fewer rows may round differently in the last bits (its kernel is chosen by
    size), so log-probs agree closely and tokens all but always exactly (here: exactly)."""
    one = dataclasses.replace(cfg.sampler, engine=engine, batch_size=16)  # 8 prompts x 2 samples a call
    split = dataclasses.replace(one, mesh=MeshConfig(data=-1))
    draw = dict(temperature=1.0, num_samples=2, seed=5)
    for model, own in built_then_updated(cfg, tok, split):
        assert own.params["embed"][...].sharding.mesh.size == 8 and model.embed[...].sharding.mesh.size == 1
        got = own.generate(PROMPTS * 2, **draw)
        want = Sampler(model, tok, one).generate(PROMPTS * 2, **draw)
        assert [[c.tokens for c in row] for row in got] == [[c.tokens for c in row] for row in want]
        for a, b in zip(got, want):
            for x, y in zip(a, b):
                np.testing.assert_allclose(x.logprobs, y.logprobs, rtol=1e-5, atol=1e-5)
    assert len({tuple(c.tokens) for row in got for c in row}) > 1  # real samples, not one greedy row


@pytest.mark.parametrize("replica_mesh", [None, MeshConfig(data=2)])
def test_replicas_draw_the_same_samples_bit_for_bit(cfg, tok, replica_mesh):
    """sampler.replicas: copies of the model on their own devices, each running whole batches,
    give every token and log-prob of one copy exactly (each runs the programs one copy would),
    also after `update`, with every replica used."""
    one = dataclasses.replace(cfg.sampler, engine="fixed", mesh=replica_mesh)
    copies = dataclasses.replace(one, replicas=4 if replica_mesh is None else 2)
    prompts = [f"Input:\n{i} {i + 3} + {i % 7}" for i in range(40)]  # 20 batches of 2 prompts
    draw = dict(temperature=1.0, num_samples=4, seed=7)
    for model, many in built_then_updated(cfg, tok, copies):
        got, want = many.generate(prompts, **draw), Sampler(model, tok, one).generate(prompts, **draw)
        assert [[(c.tokens, c.logprobs) for c in row] for row in got] == [[(c.tokens, c.logprobs) for c in row] for row in want]
    assert {key[0] for key in many._programs} == set(range(copies.replicas))
    assert [m.devices.size for m in (r.mesh for r in many.meshes)] == [1 if replica_mesh is None else 2] * copies.replicas


def test_replicas_need_the_fixed_engine_and_stay_as_built(cfg, tok, sampler):
    with pytest.raises(ConfigError, match="sampler.replicas=2 needs sampler.engine=fixed"):
        Sampler(create_model(cfg.model, make_rules(), seed=0), tok, dataclasses.replace(cfg.sampler, replicas=2))
    with pytest.raises(ConfigError, match="sampler.replicas=0 must be >= 1"):
        sampler.generate(PROMPTS, replicas=0)
    with pytest.raises(ConfigError, match="sampler.mesh and sampler.replicas are fixed when the sampler is built"):
        sampler.generate(PROMPTS, engine="fixed", replicas=2)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(top_p=0.0), "sampler.top_p=0.0 must be in (0, 1]"),
        (dict(top_p=1.5), "sampler.top_p=1.5 must be in (0, 1]"),
        (dict(temperature=-0.1), "sampler.temperature=-0.1 must be >= 0"),
        (dict(top_k=-1), "sampler.top_k=-1 must be >= 0"),
        (dict(max_new_tokens=0), "sampler.max_new_tokens=0 must be >= 1"),
        (dict(cache_growth=-1), "sampler.cache_growth=-1 must be >= 0 (0 = off)"),
        (dict(num_samples=3), "gives 2 prompts per call"),  # fine on one device: see below
        (dict(beam_width=2), "unknown sampler setting"),
    ],
)
def test_bad_settings_give_one_line_errors(sampler, settings, message):
    if "num_samples" in settings:
        sampler8 = Sampler(
            nnx.merge(sampler.graphdef, sampler.params), sampler.tokenizer, dataclasses.replace(sampler.cfg, batch_size=8)
        )
        sampler8.data_parallel = 4  # as on a data x fsdp = 4 mesh
        sampler = sampler8
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")) as e:
        sampler.generate(PROMPTS[:1], **settings)
    assert "\n" not in str(e.value)


def test_bad_prompts(sampler):
    with pytest.raises(ConfigError, match="more than the largest prompt bucket 32; raise sampler.prompt_buckets"):
        sampler.generate([" ".join(["1"] * 40)])
    with pytest.raises(ConfigError, match="prompt 1 has token ids outside the model's vocabulary"):
        sampler.generate_ids([[2, 5], [2, 10_000]])
    with pytest.raises(ConfigError, match="prompt 0 is empty"):
        sampler.generate_ids([[]])


# Statistical checks of the strategies on a fixed toy distribution.
LOGITS = jnp.log(jnp.asarray([0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02]))
CHI2_CRIT_P001 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}


def empirical(settings_kw, top_k=0, n=40000, seed=0):
    cfg = dataclasses.replace(load_config().sampler, **settings_kw)
    settings = SamplingSettings.create(cfg, eos_id=-1)
    logits = jnp.broadcast_to(LOGITS, (n, LOGITS.shape[0]))
    draws = jax.jit(choose_tokens, static_argnums=3)(logits, jax.random.key(seed), settings, top_k)
    return np.bincount(np.asarray(draws), minlength=LOGITS.shape[0]), n


def assert_matches(counts, n, probs):
    probs = np.asarray(probs, np.float64)
    assert counts[probs == 0].sum() == 0, "sampled a token with probability 0"
    support = probs > 0
    expected = n * probs[support]
    chi2 = float((((counts[support] - expected) ** 2) / expected).sum())
    assert chi2 < CHI2_CRIT_P001[support.sum() - 1], (chi2, counts, expected)


def test_temperature_one_matches_softmax():
    counts, n = empirical(dict(temperature=1.0))
    assert_matches(counts, n, jax.nn.softmax(LOGITS))


def test_temperature_sharpens():
    counts, n = empirical(dict(temperature=0.5))
    assert_matches(counts, n, jax.nn.softmax(LOGITS / 0.5))


def test_top_k_renormalises_the_k_best():
    counts, n = empirical(dict(temperature=1.0), top_k=3)
    p = np.array(jax.nn.softmax(LOGITS))
    p[3:] = 0
    assert_matches(counts, n, p / p.sum())


def test_top_p_keeps_the_smallest_nucleus():
    counts, n = empirical(dict(temperature=1.0, top_p=0.6))  # 0.30 + 0.20 < 0.6 <= + 0.15
    p = np.array(jax.nn.softmax(LOGITS))
    p[3:] = 0
    assert_matches(counts, n, p / p.sum())


def test_the_statistical_check_can_fail():
    counts, n = empirical(dict(temperature=1.0))
    with pytest.raises(AssertionError):
        assert_matches(counts, n, jax.nn.softmax(LOGITS / 0.8))


def test_inverse_cdf_sampler_over_many_blocks():
    """A vocabulary spanning several blocks, with masked (-inf) tokens that must never be drawn."""
    v = 1000
    rng = np.random.RandomState(0)
    logits = rng.normal(size=v).astype(np.float32) * 2
    logits[rng.rand(v) < 0.5] = -np.inf
    n = 60000
    draws = jax.jit(sample_categorical)(jax.random.key(1), jnp.broadcast_to(logits, (n, v)))
    counts = np.bincount(np.asarray(draws), minlength=v)
    p = np.asarray(jax.nn.softmax(jnp.asarray(logits)))
    assert counts[p == 0].sum() == 0
    # group into 8 bins of similar mass for a chi-square test with enough counts per bin
    order = np.argsort(-p)
    bins = np.minimum((np.cumsum(p[order]) * 8).astype(int), 7)
    assert_matches(np.bincount(bins, weights=counts[order], minlength=8), n, np.bincount(bins, weights=p[order], minlength=8))
