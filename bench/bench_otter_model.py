"""CPU benchmarks of the Otter model itself (issue 5, model half; the GPU part needs a lent GPU).

1. Generation with in-context images: KV-cached decoding (ours: the cache keeps attending to the
   images) vs recomputing the whole sequence every step (what one had to do with the original
   Otter to keep the images in view). Same tokens are checked; tokens/s and the speed-up.
2. Masked cross-attention: our fused ``scaled_dot_product_attention`` block vs OpenFlamingo 2.0.1's
   einsum implementation on the same weights (forward+backward), LM width of SmolLM2 (576),
   3 images x 64 latents, 512 text tokens. Max abs difference and the speed ratio.
3. One training step (forward+backward) of the tiny config with and without activation
   checkpointing: samples/s and the ratio (the price of checkpointing).

Run: ``python bench/bench_otter_model.py [--new-tokens 32] [--repeats 5]``; figures go to
``bench/results/otter_model.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.model.cross_attention import GatedCrossAttentionBlock, media_text_time  # noqa: E402
from trainer.model.modeling_otter import build_otter  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def open_gates(model) -> None:
    with torch.no_grad():
        for block in model.gated_cross_attn_layers:
            block.attn_gate.fill_(0.7)
            block.ff_gate.fill_(0.7)


def bench_generation(new_tokens: int, repeats: int) -> dict:
    model, tok, proc = build_otter("tiny")
    model.eval()
    open_gates(model)
    tok.padding_side = "left"
    shot = "<image>User: What colour is the shape? GPT:<answer> red<|endofchunk|>"
    prompts = [shot * 2 + "<image>User: What colour is the shape? GPT:<answer>"] * 4
    enc = tok(prompts, return_tensors="pt", padding=True)
    vision_x = torch.randn(4, 3, 1, 3, 32, 32)
    kwargs = dict(max_new_tokens=new_tokens, eos_token_id=[])
    cached = model.generate(vision_x, enc.input_ids, enc.attention_mask, **kwargs)
    uncached = model.generate(vision_x, enc.input_ids, enc.attention_mask, use_cache=False, **kwargs)
    t_cached = median_time(
        lambda: model.generate(vision_x, enc.input_ids, enc.attention_mask, **kwargs), repeats
    )
    t_full = median_time(
        lambda: model.generate(vision_x, enc.input_ids, enc.attention_mask, use_cache=False, **kwargs),
        repeats,
    )
    n = 4 * new_tokens
    return {
        "batch": 4,
        "prompt_tokens": int(enc.input_ids.shape[1]),
        "new_tokens": new_tokens,
        "same_tokens": bool(torch.equal(cached, uncached)),
        "cached_tokens_per_s": n / t_cached,
        "recompute_tokens_per_s": n / t_full,
        "speedup_cached_vs_recompute": t_full / t_cached,
    }


def bench_cross_attention(repeats: int) -> dict:
    try:
        from open_flamingo.src.helpers import GatedCrossAttentionBlock as ReferenceBlock
    except ImportError:
        return {"skipped": "open-flamingo==2.0.1 not installed"}
    torch.manual_seed(0)
    dim, vis, b, length, t, n = 576, 1024, 2, 512, 3, 64
    ref = ReferenceBlock(dim=dim, dim_visual=vis)
    with torch.no_grad():
        ref.attn_gate.fill_(0.5)
        ref.ff_gate.fill_(0.5)
    ours = GatedCrossAttentionBlock(dim, vis)
    rename = {"ff.0.": "ff.norm.", "ff.1.": "ff.fc_in.", "ff.3.": "ff.fc_out."}
    state = {}
    for key, value in ref.state_dict().items():
        for old, new in rename.items():
            key = key.replace(old, new)
        state[key] = value
    ours.load_state_dict(state)
    x = torch.randn(b, length, dim, requires_grad=True)
    media = torch.randn(b, t, n, vis)
    ids = torch.zeros(b, length, dtype=torch.long)
    ids[:, [0, 100, 300]] = 1
    locations = ids == 1
    time_ids = media_text_time(ids, 1)

    def run_ref():
        ref(x, media, media_locations=locations).sum().backward()

    def run_ours():
        ours(x, media, time_ids).sum().backward()

    with torch.no_grad():
        diff = (ref(x, media, media_locations=locations) - ours(x, media, time_ids)).abs().max().item()
    t_ref = median_time(run_ref, repeats)
    t_ours = median_time(run_ours, repeats)
    return {
        "shape": {
            "batch": b,
            "text_tokens": length,
            "dim": dim,
            "dim_visual": vis,
            "images": t,
            "latents": n,
        },
        "max_abs_diff": diff,
        "openflamingo_ms": 1000 * t_ref,
        "ours_ms": 1000 * t_ours,
        "speedup_vs_openflamingo": t_ref / t_ours,
    }


def bench_training_step(repeats: int) -> dict:
    model, tok, _ = build_otter("tiny")
    model.train()
    text = ("<image>User: What colour is the shape? GPT:<answer> red<|endofchunk|>" * 3).strip()
    enc = tok([text] * 8, return_tensors="pt")
    vision_x = torch.randn(8, 3, 1, 3, 32, 32)

    def step(m):
        out = m(vision_x=vision_x, lang_x=enc.input_ids, labels=enc.input_ids)
        out.loss.backward()
        m.zero_grad(set_to_none=True)

    ckpt = copy.deepcopy(model)
    ckpt.gradient_checkpointing_enable()
    t_plain = median_time(lambda: step(model), repeats)
    t_ckpt = median_time(lambda: step(ckpt), repeats)
    return {
        "batch": 8,
        "tokens_per_sample": int(enc.input_ids.shape[1]),
        "samples_per_s": 8 / t_plain,
        "samples_per_s_checkpointing": 8 / t_ckpt,
        "checkpointing_time_ratio": t_ckpt / t_plain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens to generate per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "generation": bench_generation(args.new_tokens, args.repeats),
        "cross_attention": bench_cross_attention(args.repeats),
        "training_step": bench_training_step(args.repeats),
    }
    out = ROOT / "bench" / "results" / "otter_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
