"""Peer benchmark: PyTorch training steps on a random transformers Llama (CPU).

Run with the transformers venv's python (see benchmarks/peer_envs.py):
  benchmarks/.envs/transformers/bin/python benchmarks/peers/hf_train.py \
      --preset tiny --steps 5 --warmup 2
One step = forward + loss.backward() + clip_grad_norm_(1.0) + AdamW.step() +
zero_grad on a fresh random batch (common.make_train_batch). The last stdout
line is a JSON result; tokens_per_s counts every input token (batch*seq_len),
also the prompt half that carries no loss.
"""

from __future__ import annotations

import math

import common  # sits beside this script

# Same model code as the decode peer; importing it also sets the offline /
# quiet transformers environment variables before transformers loads.
from hf_generate import build_model


def main() -> None:
    p = common.make_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    cfg, shape = common.PRESETS[args.preset], common.TRAIN_SHAPES[args.preset]

    import torch

    torch.set_num_threads(2)  # the benchmark machine has 2 cores
    model = build_model(cfg, max_positions=shape["seq_len"], use_cache=False)
    model.train()  # no dropout anywhere (attention_dropout=0), so same math
    params = list(model.parameters())  # the tied embedding appears once
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
    # Batches are built before timing so host-side RNG never counts.
    batches = [[torch.from_numpy(a) for a in common.make_train_batch(args.preset, i)] for i in range(args.warmup + args.steps)]
    losses = []

    def step(i: int) -> None:
        input_ids, labels = batches[i]
        # No attention_mask: nothing is padded, and without one sdpa runs
        # with is_causal=True instead of materialising a mask. HF shifts
        # labels internally and averages over the non-ignored tokens.
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())  # eager CPU: the step is already done

    compile_s, times = common.time_calls(step, args.warmup, args.steps)
    if not all(map(math.isfinite, losses)):
        raise RuntimeError(f"non-finite loss: {losses}")
    common.emit(
        {
            "engine": "transformers",
            "preset": args.preset,
            "batch": shape["batch"],
            "seq_len": shape["seq_len"],
            **common.rounded_times(compile_s, times, shape["batch"] * shape["seq_len"]),
            "params": sum(q.numel() for q in params),
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
            "version": common.versions("transformers", "torch"),
            "note": f"LlamaForCausalLM eager PyTorch fp32, attn="
            f"{model.config._attn_implementation}, tied embeddings,"
            f" AdamW (torch default impl, decay on all params),"
            f" torch threads {torch.get_num_threads()}; compile_s is"
            f" {args.warmup} plain warm-up steps (no torch.compile)",
        }
    )


if __name__ == "__main__":
    common.run_main(main)
