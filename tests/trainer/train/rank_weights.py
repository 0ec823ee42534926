"""Run by tests/trainer/train/test_ranks.py under torchrun with two CPU ranks (not a test module).

Trains two steps at ZeRO-2 and then at ZeRO-3, exports the model the way ``syphus train``
does, and checks on every rank that the exported weights are exactly what this rank holds:
at ZeRO-2 its full copy, at ZeRO-3 its own slice of each parameter. Writes ``rankN.json``.

    python -m torch.distributed.run --nproc_per_node 2 tests/trainer/train/rank_weights.py MIX OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import deepspeed
import torch
from safetensors.torch import load_file

from schemas.mix import load_mix
from schemas.train import TrainConfig
from trainer.data import MixStream, StreamOptions
from trainer.prompting import SpecialTokens
from trainer.train import (
    StepRunner,
    build_model,
    deepspeed_config,
    export_model,
    init_distributed,
    seed_everything,
)


def held(p: torch.nn.Parameter, zero3: bool, rank: int) -> tuple[torch.Tensor, int]:
    """(what this rank holds of ``p``, flattened; where that starts in the flat parameter)."""
    if zero3:
        part = p.ds_tensor.detach().flatten()
        return part, rank * part.numel()
    return p.detach().flatten(), 0


def check_stage(stage: int, mix_path: str, out: Path, rank: int, world: int) -> dict:
    cfg = TrainConfig(max_steps=2, batch_size=2, zero_stage=stage, lr=2e-3, torch_threads=1, seed=7)
    seed_everything(cfg.seed)
    model, tokenizer, processor = build_model(cfg)
    data = MixStream(
        load_mix(mix_path),
        tokenizer=tokenizer,
        special=SpecialTokens.from_model(tokenizer, model.config),
        image_processor=processor,
        options=StreamOptions(batch_size=cfg.batch_size, seed=cfg.seed),
        rank=rank,
        world_size=world,
    )
    groups = [g for g in model.optimizer_param_groups(cfg.weight_decay) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=deepspeed_config(cfg, "fp32", on_gpu=False)
    )
    step = StepRunner(engine, cfg, "fp32", world)
    batches = iter(data)
    for _ in range(cfg.max_steps):
        step(next(batches))
    folder = out / f"zero{stage}"
    export_model(engine, tokenizer, processor, folder, stage == 3, rank)
    saved = load_file(folder / "model.safetensors")
    compared, differ, missing, trainable = 0, [], [], 0
    for name, p in engine.module.named_parameters():
        if name not in saved:
            missing.append(name)
            continue
        mine, start = held(p, stage == 3, rank)
        full = saved[name].flatten()
        n = min(mine.numel(), max(0, full.numel() - start))  # the last slice may be padding
        if n == 0:
            continue
        compared += 1
        trainable += p.requires_grad
        if not torch.equal(full[start : start + n], mine[:n]):
            differ.append(name)
    return {"compared": compared, "trainable": trainable, "differ": differ, "missing": missing}


def main() -> None:
    mix_path, out = sys.argv[1], Path(sys.argv[2])
    rank, _, world = init_distributed()
    report = {"world": world}
    for stage in (2, 3):
        report[f"zero{stage}"] = check_stage(stage, mix_path, out, rank, world)
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
