"""Train step: learns, sharded == single device, accumulation == big batch, packing, loss mask,
one compiled program shared by fit calls."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL_MODEL, make_rules
from flax import nnx

from starjax.config import load_config
from starjax.model.transformer import create_model
from starjax.training import step as step_module
from starjax.training.data import Example, PackedData, device_batch, pack
from starjax.training.fit import fit, with_steps
from starjax.training.optimizer import decay_mask, schedule
from starjax.training.step import Batch, compile_train_step, init_state, loss_sums


def toy_examples(n=64, seed=0):
    """Copy task: the completion repeats the prompt's digits."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        digits = tuple(int(d) for d in rng.randint(4, 14, rng.randint(2, 6)))
        out.append(Example((2,) + digits + (15,), digits + (3,)))
    return out


def setup(shape=(1, 1, 1), overrides=(), seed=0):
    cfg = load_config(
        None,
        [*SMALL_MODEL, "train.batch_size=8", "train.seq_len=32", "train.learning_rate=3e-3", "train.warmup_steps=2", *overrides],
    )
    rules = make_rules(shape)
    model = create_model(cfg.model, rules, seed=seed)
    graphdef, _ = nnx.split(model)
    state = init_state(model, cfg.train, seed)
    return cfg, rules, graphdef, state


def test_loss_falls_on_a_learnable_task():
    cfg, rules, graphdef, state = setup()
    data = PackedData(toy_examples(200), cfg.train.seq_len, cfg.train.batch_size, seed=0)
    step = compile_train_step(graphdef, cfg.train, rules, state)
    losses = []
    for i in range(40):
        state, metrics = step(state, device_batch(data.host_batch(i), rules))
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
    assert int(state.step) == 40


def params_of(state):
    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def run_steps(shape, overrides=(), steps=2):
    cfg, rules, graphdef, state = setup(shape, overrides)
    data = PackedData(toy_examples(), cfg.train.seq_len, cfg.train.batch_size, seed=0)
    base = nnx.state(create_model(cfg.model, rules, seed=0)) if cfg.train.lora_rank else None  # setup's model
    step = compile_train_step(graphdef, cfg.train, rules, state, base)
    for i in range(steps):
        state, metrics = step(state, device_batch(data.host_batch(i), rules))
    return state, metrics


def test_sharded_step_equals_single_device():
    single, m1 = run_steps((1, 1, 1))
    sharded, m8 = run_steps((2, 2, 2))
    assert jax.tree.leaves(sharded.params)[0].sharding.mesh.size == 8
    np.testing.assert_allclose(float(m1["loss"]), float(m8["loss"]), rtol=1e-5)
    for a, b in zip(params_of(single), params_of(sharded)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_accumulated_micro_batches_equal_one_big_batch():
    big, mb = run_steps((1, 1, 1))
    acc, ma = run_steps((1, 1, 1), ["train.micro_batches=4"])
    np.testing.assert_allclose(float(mb["loss"]), float(ma["loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(mb["grad_norm"]), float(ma["grad_norm"]), rtol=1e-4)
    for a, b in zip(params_of(big), params_of(acc)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def as_batch(rows):
    return Batch(**{k: jnp.asarray(v) for k, v in rows.items()})


def test_packed_rows_give_each_example_its_own_loss():
    cfg, rules, graphdef, state = setup()
    examples = toy_examples(5, seed=3)
    packed = pack(examples, 64)
    assert len(packed["tokens"]) == 1 and packed["segment_ids"].max() == 5
    together, _ = loss_sums(graphdef, state.params, as_batch(packed))
    alone = [float(loss_sums(graphdef, state.params, as_batch(pack([ex], 64)))[0]) for ex in examples]
    np.testing.assert_allclose(float(together), sum(alone), rtol=1e-5)
    # per-example: mask all but one segment
    for seg, expected in enumerate(alone, start=1):
        only = dict(packed, weights=packed["weights"] * (packed["segment_ids"] == seg))
        np.testing.assert_allclose(float(loss_sums(graphdef, state.params, as_batch(only))[0]), expected, rtol=1e-5)


def test_prompt_tokens_get_no_loss_and_no_gradient():
    cfg, rules, graphdef, state = setup()
    ex = Example((2, 5, 6, 7, 15), (8, 9, 3))
    rows = pack([ex], 16)
    # weights: targets 8, 9, 3 only (inputs 15, 8, 9)
    assert rows["weights"][0].tolist()[:7] == [0, 0, 0, 0, 1, 1, 1]
    assert rows["targets"][0, 4:7].tolist() == [8, 9, 3]
    grad = jax.grad(lambda p, b: loss_sums(graphdef, p, b)[0])
    changed = dict(rows, targets=rows["targets"].copy())
    changed["targets"][0, :4] = [11, 12, 13, 14]  # different prompt targets
    g1, g2 = grad(state.params, as_batch(rows)), grad(state.params, as_batch(changed))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_data_order_is_a_function_of_seed_and_step():
    examples = toy_examples(100)
    a = PackedData(examples, 32, 4, seed=1)
    b = PackedData(examples, 32, 4, seed=1)
    c = PackedData(examples, 32, 4, seed=2)
    for step in (0, 3, a.steps_in_epoch(0) + 1):
        np.testing.assert_array_equal(a.host_batch(step)["tokens"], b.host_batch(step)["tokens"])
    assert not np.array_equal(a.host_batch(0)["tokens"], c.host_batch(0)["tokens"])
    e0 = a.steps_in_epoch(0)
    assert a.position(e0) == (1, 0)  # the next epoch reshuffles
    assert not np.array_equal(a.host_batch(0)["tokens"], a.host_batch(e0)["tokens"])
    with pytest.raises(ValueError, match="fewer than train.batch_size=999"):
        PackedData(examples, 32, 999, seed=0)


def test_schedule_and_weight_decay_mask():
    cfg = load_config(
        None, ["train.learning_rate=1.0", "train.warmup_steps=10", "train.steps=110", "train.schedule=cosine"]
    ).train
    s = schedule(cfg)
    assert float(s(0)) == 0.0 and abs(float(s(5)) - 0.5) < 1e-6 and abs(float(s(10)) - 1.0) < 1e-6
    assert abs(float(s(110)) - 0.1) < 1e-6  # cosine decays to 10%
    const = schedule(dataclasses.replace(cfg, schedule="constant"))
    assert float(const(10)) == float(const(1000)) == 1.0
    model_cfg = load_config(None, [*SMALL_MODEL, "model.qkv_bias=true"]).model
    params = nnx.state(create_model(model_cfg, make_rules()))
    mask = {".".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(decay_mask(params))}
    assert mask["embed"] and mask["blocks.0.attn.q"] and mask["blocks.0.mlp.down"]
    assert not mask["blocks.0.attn.q_bias"] and not mask["blocks.0.attn_norm.scale"] and not mask["final_norm.scale"]


def test_bfloat16_compute_keeps_float32_params_and_optimizer_state():
    state, metrics = run_steps((1, 1, 1), ["model.compute_dtype=bfloat16"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
    assert np.isfinite(float(metrics["loss"]))
    ref, ref_metrics = run_steps((1, 1, 1))
    assert abs(float(metrics["loss"]) - float(ref_metrics["loss"])) < 0.05  # same model, lower precision


def test_bfloat16_moments_keep_float32_params_and_track_the_float32_run():
    """train.moment_dtype=bfloat16 stores AdamW's moments rounded (half their memory); the
    parameters stay float32 and the steps follow the float32 run closely."""
    state, metrics = run_steps((1, 1, 1), ["train.moment_dtype=bfloat16"], steps=6)
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
    assert moments and all(x.dtype == jnp.bfloat16 for x in moments)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    ref, ref_metrics = run_steps((1, 1, 1), steps=6)
    assert abs(float(metrics["loss"]) - float(ref_metrics["loss"])) < 0.02
    drift = max(float(np.abs(a - b).max()) for a, b in zip(params_of(state), params_of(ref)))
    assert 0 < drift < 1e-2  # rounded moments change the steps, a little


@pytest.mark.parametrize("remat", ["full", "dots_saveable"])
def test_remat_recomputes_to_the_same_gradients(remat):
    """train.remat trades memory for compute: the step's loss and update are those without it."""
    state, metrics = run_steps((1, 1, 1), [f"train.remat={remat}"])
    ref, ref_metrics = run_steps((1, 1, 1))
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(ref_metrics["grad_norm"]), rtol=1e-5)
    for a, b in zip(params_of(state), params_of(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    cfg, rules, graphdef, state = setup(overrides=[f"train.remat={remat}"])
    batch = device_batch(PackedData(toy_examples(), 32, 8, seed=0).host_batch(0), rules)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss_sums(graphdef, p, batch, remat)[0]))(state.params))
    assert "remat" in jaxpr or "checkpoint" in jaxpr  # really rematerialised, not silently ignored


def test_fit_calls_that_differ_in_steps_share_one_compiled_step(monkeypatch):
    cfg, rules, _, _ = setup(overrides=["train.learning_rate=1.234e-3"])  # a program no other test compiles
    examples = toy_examples()

    def run(train_cfg, seed):
        return fit(create_model(cfg.model, rules, seed=seed), examples, train_cfg, seed, progress=False)

    assert run(with_steps(cfg.train, 3), 0).compilations == 1
    reused = run(with_steps(cfg.train, 5), 1)
    assert reused.compilations == 0
    monkeypatch.setattr(step_module, "_PROGRAMS", [])  # the same fit, compiled afresh, gives the same model
    fresh = run(with_steps(cfg.train, 5), 1)
    assert fresh.compilations == 1
    for a, b in zip(jax.tree.leaves(nnx.state(reused.model)), jax.tree.leaves(nnx.state(fresh.model))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    cosine = dataclasses.replace(cfg.train, schedule="cosine")  # its decay reads `steps`: one program each
    assert run(with_steps(cosine, 3), 0).compilations == 1
    assert run(with_steps(cosine, 4), 0).compilations == 1


def test_fit_reads_a_steps_metrics_only_after_dispatching_the_next(monkeypatch):
    """The host never waits on step n before queueing step n + 1 (metrics are logged a step
    late), except where the state is wanted: checkpoints and the last step."""
    from starjax.training import fit as fit_module

    cfg, rules, _, _ = setup(overrides=["train.checkpoint_every=4"])
    events = []
    compile_step = fit_module.compile_train_step

    def traced_compile(*args):
        program = compile_step(*args)

        def dispatch(state, batch):
            events.append("step")
            return program(state, batch)

        return dispatch

    get = jax.device_get
    monkeypatch.setattr(fit_module, "compile_train_step", traced_compile)
    monkeypatch.setattr(fit_module.jax, "device_get", lambda x: events.append("read") or get(x))
    seen = []
    model = create_model(cfg.model, rules, seed=0)
    fit(model, toy_examples(), with_steps(cfg.train, 6), 0, None, on_step=lambda n, m, s: seen.append(n), progress=False)
    assert seen == [1, 2, 3, 4, 5, 6]
    # no checkpoint dir, so only the last step reads at once
    assert "".join("S" if e == "step" else "r" for e in events) == "SSrSrSrSrSrr"


def test_a_hook_that_stops_training_returns_that_steps_weights_and_a_resume_stops_there_too(tmp_path):
    """on_step returning true at an eval_every step ends fit with that step's weights, as an
    uninterrupted run of the same schedule had them; no checkpoint is written at that step, so a
    phase killed after stopping resumes from an earlier one and stops at the same step."""
    cfg, rules, graphdef, _ = setup(overrides=["train.checkpoint_every=3", "train.eval_every=3"])
    train_cfg = dataclasses.replace(with_steps(cfg.train, 10), schedule="cosine")
    seen = {}

    def watch(done, metrics, params):
        seen[done] = jax.device_get(params())

    full = fit(create_model(cfg.model, rules, seed=0), toy_examples(), train_cfg, 0, on_step=watch, progress=False)
    assert full.steps == 10

    def stop_at_6(done, metrics, params):
        return done == 6

    ckpts = tmp_path / "ckpts"
    for _ in range(2):  # the second call resumes from step 3's checkpoint
        stopped = fit(
            create_model(cfg.model, rules, seed=0), toy_examples(), train_cfg, 0, ckpts, on_step=stop_at_6, progress=False
        )
        assert stopped.steps == 6 and sorted(int(d.name) for d in ckpts.iterdir() if d.name.isdigit()) == [3]
        for a, b in zip(jax.tree.leaves(nnx.state(stopped.model)), jax.tree.leaves(seen[6])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lora_trains_only_adapters_and_merges_them(tmp_path):
    """train.lora_rank: the state holds rank-r adapters of the targeted weights only, the model
    fit returns is the base plus their low-rank update, every other weight untouched; a
    resumed LoRA fit equals an uninterrupted one."""
    from starjax.training import lora

    overrides = ["train.lora_rank=2", "train.lora_targets=[q,v,down]", "train.checkpoint_every=3"]
    cfg, rules, _, state = setup(overrides=overrides)
    assert set(state.params) == {f"blocks/{i}/{w}" for i in range(2) for w in ("attn/q", "attn/v", "mlp/down")}
    assert all(x.shape[0] == 2 or x.shape[1] == 2 for pair in state.params.values() for x in pair.values())
    base = create_model(cfg.model, rules, seed=0)
    before = {lora._name(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(base))}
    trained = fit(base, toy_examples(), with_steps(cfg.train, 6), 0, tmp_path / "a", progress=False).model
    after = {lora._name(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(trained))}
    for name, w in before.items():
        if any(name.endswith(t) for t in ("attn/q", "attn/v", "mlp/down")):
            delta = (after[name] - w).reshape(w.shape[0] * (1 if w.ndim < 3 else 1), -1)
            assert np.abs(delta).max() > 0 and np.linalg.matrix_rank(delta, tol=1e-6) <= 2
        else:
            np.testing.assert_array_equal(after[name], w)
    np.testing.assert_array_equal(np.asarray(nnx.state(base)["embed"][...]), before["embed"])  # the base model survives
    fit(create_model(cfg.model, rules, seed=0), toy_examples(), with_steps(cfg.train, 3), 0, tmp_path / "b", progress=False)
    resumed = fit(
        create_model(cfg.model, rules, seed=0), toy_examples(), with_steps(cfg.train, 6), 0, tmp_path / "b", progress=False
    )
    for a, b in zip(jax.tree.leaves(nnx.state(resumed.model)), jax.tree.leaves(nnx.state(trained))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lora_learns():
    lora = ["train.lora_rank=8", "train.lora_alpha=16", "train.lora_targets=[q,k,v,o,gate,up,down]", "train.learning_rate=2e-2"]
    _, metrics = run_steps((1, 1, 1), lora, steps=30)
    _, first = run_steps((1, 1, 1), lora, steps=1)
    # a random base learns slowly through rank-8 updates, but it learns: 4.11 -> 3.62 here
    assert float(metrics["loss"]) < 0.9 * float(first["loss"]), (float(first["loss"]), float(metrics["loss"]))
