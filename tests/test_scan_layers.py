"""model.scan_layers: the layers stacked and run as one lax.scan equal the per-layer loop (forward,
training, sharded, LoRA, decoding), and checkpoints and Hugging Face files read the same either way."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL_MODEL, make_rules
from flax import nnx
from test_tokenizer import scratchpad_texts

from starjax.checkpoint import restore_params, save_params
from starjax.config import load_config
from starjax.hf.weights import hf_tensors
from starjax.model.summary import describe_model
from starjax.model.transformer import count_params, create_model, relayout
from starjax.sampling.engine import Sampler
from starjax.sentencepiece_tokenizer import train_tokenizer
from starjax.training.data import Example
from starjax.training.fit import fit
from starjax.training.step import Batch, compile_train_step, init_state

TOKENS = jnp.arange(48).reshape(4, 12) % 60


def pair(mesh=(1, 1, 1), *overrides):
    cfg = load_config(None, [*SMALL_MODEL, "model.num_layers=3", *overrides]).model
    rules = make_rules(mesh)
    return create_model(cfg, rules, 0), create_model(dataclasses.replace(cfg, scan_layers=True), rules, 0)


def close(a, b, tol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=tol, rtol=tol)


def per_layer(model):
    return dict(hf_tensors(model, "float32"))


def test_stacked_weights_are_the_per_layer_ones_and_the_forward_agrees():
    loop, scan = pair()
    assert scan.blocks.attn.q.shape == (3, *loop.blocks[0].attn.q.shape)
    np.testing.assert_array_equal(np.asarray(scan.blocks.mlp.down[1]), np.asarray(loop.blocks[1].mlp.down[...]))
    want, _ = loop(TOKENS)
    for remat in ("none", "full", "dots_saveable"):
        got, _ = scan(TOKENS, remat=remat)
        close(got, want)


@pytest.mark.parametrize("mesh", [(1, 1, 1), (2, 2, 2)])
def test_train_steps_agree_sharded_or_not(mesh):
    loop, scan = pair(mesh)
    examples = [Example(tuple([1] + [i % 50 + 3] * 9), (4, 5, 6, 2)) for i in range(16)]
    tcfg = load_config(None, ["train.steps=3", "train.batch_size=8", "train.seq_len=16", "train.remat=full"]).train
    a = fit(loop, examples, tcfg, 0, progress=False).model
    b = fit(scan, examples, tcfg, 0, progress=False).model
    close(per_layer(relayout(b, a.cfg)), per_layer(a), tol=1e-5)
    spec = b.blocks.mlp.gate[...].sharding.spec  # the layer axis unsharded, the rest as per layer
    assert spec[0] is None and tuple(spec[1:]) == tuple(a.blocks[0].mlp.gate[...].sharding.spec)


def test_lora_adapters_are_stacked_and_only_they_train():
    _, scan = pair()
    examples = [Example(tuple([1] + [i % 50 + 3] * 9), (4, 5, 6, 2)) for i in range(8)]
    tcfg = load_config(None, ["train.steps=2", "train.batch_size=8", "train.seq_len=16", "train.lora_rank=4"]).train
    state = init_state(scan, tcfg, 0)
    assert state.params["blocks/attn/q"]["a"].shape == (3, 64, 4)
    trained = fit(scan, examples, tcfg, 0, progress=False).model
    before, after = per_layer(scan), per_layer(trained)
    assert any(not np.array_equal(before[k], after[k]) for k in before if "q_proj" in k)
    assert all(np.array_equal(before[k], after[k]) for k in before if "norm" in k or "embed" in k)


def test_info_lists_the_stacked_weights_with_their_layer_axis():
    loop, scan = pair()
    for model, shape, axes in ((loop, "64x4x16", "embed,heads,head_dim"), (scan, "3x64x4x16", "layers,embed,heads,head_dim")):
        table = describe_model(model.cfg, model.rules)
        rows = {line.split()[0]: line.split()[1:3] for line in table.splitlines()[2:]}
        assert rows["blocks.*.attn.q"] == [shape, axes]
        assert f"{count_params(model):,} parameters" in table


def test_checkpoints_and_hf_tensors_use_the_per_layer_layout(tmp_path):
    loop, scan = pair()
    assert per_layer(scan).keys() == per_layer(loop).keys()
    close(per_layer(scan), per_layer(loop), tol=0)
    save_params(tmp_path / "scan", scan)
    back = restore_params(tmp_path / "scan", loop.cfg, loop.rules)  # a scan run's checkpoint, read per layer
    close(per_layer(back), per_layer(loop), tol=0)
    save_params(tmp_path / "loop", loop)
    again = restore_params(tmp_path / "loop", scan.cfg, scan.rules)
    assert again.cfg.scan_layers and again.blocks.attn.q.shape[0] == 3
    close(per_layer(again), per_layer(loop), tol=0)


def test_decoding_is_the_same(tmp_path):
    """Prefill and decode (through the KV cache and the fused weights) read the stacked layers."""
    tok = train_tokenizer(scratchpad_texts(), tmp_path, vocab_size=320)
    loop, scan = pair((1, 1, 1), "model.vocab_size=320", "model.init_std=0.3")
    cfg = load_config(None, ["sampler.max_new_tokens=8", "sampler.progress=false", "sampler.batch_size=4"]).sampler
    prompts = ["12+34=", "5+6=", "777+1="]
    greedy = [Sampler(m, tok, cfg).generate(prompts, seed=0, temperature=0.0) for m in (loop, scan)]
    assert [[c.tokens for c in row] for row in greedy[0]] == [[c.tokens for c in row] for row in greedy[1]]
    close([[c.logprobs for c in row] for row in greedy[0]], [[c.logprobs for c in row] for row in greedy[1]], tol=1e-5)


def test_the_scanned_train_step_is_one_program_whatever_the_depth():
    """What compile time follows (benchmarks/compile_depth.py times it): the lowered train step's
    size. With the loop it grows with every layer; with the scan it does not."""

    def program_size(layers: int, scan: bool) -> int:
        cfg = load_config(
            None, [*SMALL_MODEL, f"model.num_layers={layers}", f"model.scan_layers={str(scan).lower()}", "train.remat=full"]
        )
        model = create_model(cfg.model, make_rules(), 0)
        state = init_state(model, cfg.train, 0)
        step = compile_train_step(nnx.graphdef(model), cfg.train, model.rules, state)
        shape = (cfg.train.batch_size, cfg.train.seq_len)
        i, f = jax.ShapeDtypeStruct(shape, jnp.int32), jax.ShapeDtypeStruct(shape, jnp.float32)
        return len(step.lower(state, Batch(i, i, i, i, f)).as_text())

    assert program_size(8, True) < 1.1 * program_size(2, True)
    assert program_size(8, False) > 2 * program_size(2, False)
