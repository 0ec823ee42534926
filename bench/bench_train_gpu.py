"""Training throughput and memory of an Otter-9B-shaped model on one GPU (issue 5, GPU half).

The shapes of the original Otter-9B: a LLaMA-7B-shaped LM (hidden 4096, 32 layers, 32 heads,
MLP 11008, vocabulary 32,003), a ViT-L/14-shaped vision encoder (open_clip), a perceiver of depth
6 with 64 latents, and a gated cross-attention block before every 4th decoder layer (8 blocks).
Weights are random: throughput and memory do not depend on them. Every step goes through the
trainer's own DeepSpeed path (``StepRunner``, ZeRO-0, bf16, AdamW on the default trainable set:
perceiver, cross-attention, LM embeddings), one image per sample, ``--seq`` text tokens.

For each of with / without gradient checkpointing: samples/s and peak memory at batch 1, then
the batch doubled until it no longer fits. The original Otter reported 3.1 it/s, 72 GB and a
largest batch of 2 on one A100-80G (bf16 peak 312 TFLOPS); the figure compared is samples/s per
PFLOPS of the GPU's dense bf16 peak (``--peak-tflops``, H100/H200 SXM: 989).

    python bench/bench_train_gpu.py [--seq 1024] [--steps 10] [--peak-tflops 989]
    python bench/bench_train_gpu.py --tiny   # the same code on CPU with toy shapes (a smoke run)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OTTER_A100 = {"it_per_s": 3.1, "peak_memory_gb": 72, "max_batch": 2, "peak_tflops": 312}

LLAMA_7B = {
    "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32003,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
}  # fmt: skip
TOY_LM = {
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 512, "max_position_embeddings": 256,
}  # fmt: skip


def otter_config(tiny: bool):
    from trainer.model.configuration_otter import OtterConfig

    if tiny:
        return OtterConfig(vision_encoder="tiny", lm="random", lm_config=TOY_LM, cross_attn_every_n_layers=2,
                           perceiver_depth=1, perceiver_heads=2, perceiver_dim_head=16, perceiver_num_latents=4,
                           xattn_heads=2, xattn_dim_head=16, ff_mult=2, image_size=32,
                           tiny_vision={"patch_size": 8, "width": 32}, media_token_id=509)  # fmt: skip
    import open_clip

    vit = open_clip.get_model_config("ViT-L-14")
    return OtterConfig(vision_encoder="open_clip:ViT-L-14:random", lm="random", lm_config=LLAMA_7B,
                       vision_config=vit, cross_attn_every_n_layers=4, perceiver_depth=6, perceiver_heads=8,
                       perceiver_dim_head=64, perceiver_num_latents=64, xattn_heads=8, xattn_dim_head=64,
                       ff_mult=4, image_size=224, media_token_id=32000)  # fmt: skip


def make_batch(batch: int, seq: int, image_size: int, vocab: int, media_id: int, device):
    from trainer.collate import Batch

    ids = torch.randint(0, vocab - 3, (batch, seq), device=device)  # the 3 special tokens are the last ids
    ids[:, 0] = media_id  # one <image> at the start of every sample
    labels = ids.clone()
    labels[:, : seq // 2] = -100  # half the tokens supervised, like an answer after a question
    return Batch(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        labels=labels,
        vision_x=torch.randn(batch, 1, 1, 3, image_size, image_size, device=device),
        groups=["IMAGE_TEXT"] * batch,
        ids=[str(i) for i in range(batch)],
    )


def measure(config, batch: int, seq: int, steps: int, checkpointing: bool, device) -> dict:
    import deepspeed

    from schemas.train import TrainConfig
    from trainer.model.modeling_otter import OtterForConditionalGeneration
    from trainer.train import StepRunner, deepspeed_config

    on_gpu = device.type == "cuda"
    precision = "bf16" if on_gpu else "fp32"
    with torch.device(device):
        model = OtterForConditionalGeneration(config)
    model.set_trainable()
    if checkpointing:
        model.gradient_checkpointing_enable()
    groups = [g for g in model.optimizer_param_groups(0.1) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=1e-5)
    cfg = TrainConfig(
        max_steps=steps + 2, batch_size=batch, zero_stage=0, gradient_checkpointing=checkpointing
    )
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=opt, config=deepspeed_config(cfg, precision, on_gpu)
    )
    step = StepRunner(engine, cfg, precision, world_size=1)
    data = make_batch(
        batch, seq, config.image_size, config.lm_config["vocab_size"], config.media_token_id, device
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    step(data)  # warm-up (allocations, kernels)
    if on_gpu:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step(data)
    if on_gpu:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
    del engine, model, opt, step
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()
    return {
        "batch": batch,
        "it_per_s": steps / dt,
        "samples_per_s": batch * steps / dt,
        "peak_memory_gb": peak,
    }


def sweep(config, seq: int, steps: int, checkpointing: bool, device, max_batch: int) -> dict:
    rows, batch = [], 1
    while batch <= max_batch:
        try:
            rows.append(measure(config, batch, seq, steps, checkpointing, device))
        except torch.OutOfMemoryError:
            break
        print(json.dumps({"checkpointing": checkpointing, **rows[-1]}), flush=True)
        batch *= 2
    if not rows:
        return {"batch_1": None, "largest": None}
    return {"batch_1": rows[0], "largest": rows[-1], "all": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak")
    ap.add_argument("--tiny", action="store_true", help="toy shapes on CPU: checks the script, not the GPU")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_gpu.json"))
    a = ap.parse_args()
    if a.tiny:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        device = torch.device("cpu")
        a.seq, a.steps, a.max_batch = min(a.seq, 64), min(a.steps, 3), min(a.max_batch, 4)
    elif not torch.cuda.is_available():
        sys.exit("bench_train_gpu: no CUDA device here (use --tiny for a CPU smoke run)")
    else:
        device = torch.device("cuda")
    from trainer.train import init_distributed

    init_distributed()
    config = otter_config(a.tiny)
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (--tiny smoke run)",
        "seq": a.seq,
        "steps": a.steps,
        "peak_tflops": a.peak_tflops,
        "otter_reported_a100": OTTER_A100,
    }
    for ckpt in (False, True):
        result["checkpointing" if ckpt else "no_checkpointing"] = sweep(
            config, a.seq, a.steps, ckpt, device, a.max_batch
        )
    # samples/s per PFLOPS of bf16 peak, against the original's 3.1 it/s at batch 1 on 312 TFLOPS
    theirs = OTTER_A100["it_per_s"] / (OTTER_A100["peak_tflops"] / 1000)
    best = max(
        (
            r["largest"]["samples_per_s"]
            for r in (result["no_checkpointing"], result["checkpointing"])
            if r["largest"]
        ),
        default=0.0,
    )
    result["normalised_samples_per_s_per_pflops"] = {
        "ours_best": best / (a.peak_tflops / 1000),
        "otter": theirs,
    }
    result["ratio_vs_otter_normalised"] = best / (a.peak_tflops / 1000) / theirs
    print(json.dumps(result, indent=1))
    if not a.tiny:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
