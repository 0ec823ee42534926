"""Training throughput on CPU: the DeepSpeed engine vs a plain PyTorch loop, same tiny Otter.

Both loops train identical copies of the tiny config on the same pre-built batches of the
synthetic shapes VQA (data loading excluded), with AdamW, clip 1.0 and the cosine schedule.
They run in alternating rounds so that load from other processes hits both alike; figures
are medians over rounds. Run: ``DS_ACCELERATOR=cpu python bench/bench_train_cpu.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from schemas.mix import MixConfig  # noqa: E402
from schemas.train import TrainConfig  # noqa: E402
from tests.trainer.train.helpers import shapes_vqa, write_shards  # noqa: E402
from trainer.data import MixStream, StreamOptions  # noqa: E402
from trainer.model.loss import token_loss  # noqa: E402
from trainer.model.modeling_otter import build_otter  # noqa: E402
from trainer.prompting import SpecialTokens  # noqa: E402
from trainer.train import StepRunner, cosine_with_warmup, deepspeed_config, init_distributed  # noqa: E402


def make_batches(n: int, batch_size: int, tokenizer, special, image_processor):
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    rows, images = shapes_vqa(n * batch_size, seed=0)
    write_shards(tmp / "shards", rows, images)
    mix = MixConfig.model_validate({"IMAGE_TEXT": {"s": {"shards_path": str(tmp / "shards")}}})
    stream = MixStream(
        mix,
        tokenizer=tokenizer,
        special=special,
        image_processor=image_processor,
        options=StreamOptions(batch_size=batch_size),
    )
    it = iter(stream)
    return [next(it) for _ in range(n)]


def plain_step(model, optimizer, scheduler, batch):
    out = model(vision_x=batch.vision_x, lang_x=batch.input_ids, attention_mask=batch.attention_mask)
    loss = token_loss(out.logits, batch.labels)[0]
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def ds_step(runner: StepRunner, batch):
    return runner(batch)[0]  # the trainer's own step: exactly what ``syphus train`` runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--zero-stages", default="0,2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import deepspeed

    init_distributed()
    model, tok, ip = build_otter("tiny")
    special = SpecialTokens.from_model(tok, model.config)
    batches = make_batches(args.steps, args.batch_size, tok, special, ip)
    samples = sum(b.n_samples for b in batches)
    tokens = sum(b.n_tokens for b in batches)
    total = args.rounds * args.steps + 10

    def optim(m):
        groups = [g for g in m.optimizer_param_groups(0.1) if g["params"]]
        opt = torch.optim.AdamW(groups, lr=1e-3)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, 5))

    plain = copy.deepcopy(model)
    p_opt, p_sched = optim(plain)
    engines = {}
    for stage in [int(s) for s in args.zero_stages.split(",")]:
        m = copy.deepcopy(model)
        opt, sched = optim(m)
        cfg = TrainConfig(max_steps=total, batch_size=args.batch_size, zero_stage=stage)
        engine, *_ = deepspeed.initialize(
            model=m, optimizer=opt, lr_scheduler=sched, config=deepspeed_config(cfg, "fp32", False)
        )
        engines[stage] = StepRunner(engine, cfg, "fp32", world_size=1)
    for b in batches[:3]:  # warm up every path
        plain_step(plain, p_opt, p_sched, b)
        for e in engines.values():
            ds_step(e, b)

    times: dict[str, list[float]] = {"plain": [], **{f"zero{s}": [] for s in engines}}
    for _ in range(args.rounds):
        t = time.perf_counter()
        for b in batches:
            plain_step(plain, p_opt, p_sched, b)
        times["plain"].append(time.perf_counter() - t)
        for s, e in engines.items():
            t = time.perf_counter()
            for b in batches:
                ds_step(e, b)
            times[f"zero{s}"].append(time.perf_counter() - t)

    base = statistics.median(times["plain"])
    result = {
        "device": "cpu",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "plain": {"samples_per_s": samples / base, "tokens_per_s": tokens / base},
    }
    for s in engines:
        med = statistics.median(times[f"zero{s}"])
        # Per-round paired ratios are less sensitive to load drifting between rounds.
        paired = statistics.median(d / p for d, p in zip(times[f"zero{s}"], times["plain"], strict=True))
        result[f"deepspeed_zero{s}"] = {
            "samples_per_s": samples / med,
            "tokens_per_s": tokens / med,
            "overhead_vs_plain": med / base - 1,
            "overhead_paired_median": paired - 1,
        }
    out = ROOT / "bench" / "results" / "train_cpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
