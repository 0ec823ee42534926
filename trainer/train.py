"""The DeepSpeed training loop: ``python -m trainer.train --mix MIX --config TRAIN --out DIR``.

``syphus train`` runs this module under the ``deepspeed`` launcher (one process per device);
run directly it trains as a single process. Reads top to bottom: build the model, the data
stream and the engine, resume if a checkpoint exists, train, export.

Exact resumption: checkpoints hold model, optimizer and scheduler state (DeepSpeed's own
checkpoint) plus the step; the data stream is a pure function of ``(seed, micro-batch index)``
and the random generators are re-seeded from ``(seed, step, rank)`` at every step, so a run
resumed after a kill computes the same losses as one that was never stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from schemas.errors import SyphusError
from schemas.mix import load_mix
from schemas.progress import Progress, no_progress
from schemas.train import TrainConfig, load_train_config
from trainer.collate import Batch
from trainer.lifeline import exit_with_launcher
from trainer.model.loss import token_loss
from trainer.net import free_port
from trainer.prompting import SpecialTokens
from trainer.resume import (
    MANIFEST,
    SAVING,
    TAG_PREFIX,
    VerifiedCheckpointEngine,
    checkpoint_tag,
    checkpoint_tags,
    newest_good_checkpoint,
    read_manifest,
    write_manifest,
)
from trainer.runlock import hold_run_lock

CHECKPOINTS = "checkpoints"
MODEL_DIR = "model"
METRICS = "metrics.jsonl"
# Exit status after a one-line error about the user's input or run folder (a crash exits 1):
# ``syphus train`` then adds nothing of its own.
REPORTED_ERROR = 3


class CollectiveError(SyphusError):
    """An error every rank raises at once from a shared decision: only rank 0 prints it."""


# -- pieces a test or a benchmark can use on their own ----------------------------------------
def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float = 0.0):
    """LR multiplier: linear warmup from 0, then cosine decay to ``min_ratio``."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def choose_precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def clips_itself(cfg: TrainConfig, precision: str) -> bool:
    """Whether the loop clips gradients with torch instead of DeepSpeed (ZeRO-0 in fp32).

    DeepSpeed's fp32 clip walks every parameter of the model, frozen ones included, with
    model-parallel bookkeeping: on a small model that is a tenth of a CPU step. At ZeRO-0 the
    gradients sit on the parameters, already all-reduced when ``backward`` returns, so clipping
    the trainable ones with torch gives the same norm and the same update.
    """
    return cfg.zero_stage == 0 and precision == "fp32" and cfg.clip_grad > 0


def deepspeed_config(cfg: TrainConfig, precision: str, on_gpu: bool) -> dict:
    zero: dict = {"stage": cfg.zero_stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": 0.0 if clips_itself(cfg, precision) else cfg.clip_grad,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        # A torch AdamW also under offload: DeepSpeedCPUAdam would JIT-compile a C++ op first.
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_176 + rank) % (1 << 63)


def init_distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size); a plain ``python -m`` run becomes a world of one."""
    import deepspeed

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    deepspeed.init_distributed(verbose=False)
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])


def build_model(cfg: TrainConfig):
    """(model, tokenizer, image_processor) from ``init_from`` or a fresh ``OtterConfig``."""
    from trainer.checkpoints import init_model
    from trainer.model.modeling_otter import OtterConfig, build_otter

    if cfg.init_from:
        model, tokenizer, image_processor = init_model(cfg.init_from, cfg.model)
    else:
        fields = dict(cfg.model)
        name = fields.pop("name", None)
        try:
            config = OtterConfig.from_named(name, **fields) if name else OtterConfig(**fields)
        except TypeError as e:
            raise SyphusError(f"training config field 'model': {e}") from e
        model, tokenizer, image_processor = build_otter(config)
    lora = cfg.lora.model_dump() if cfg.lora is not None else None
    model.set_trainable(lm=cfg.train_lm, vision=cfg.train_vision, lora=lora)
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise SyphusError("training config: gradient_checkpointing is not supported by this model")
        model.gradient_checkpointing_enable()
    return model, tokenizer, image_processor


def frames_for(cfg: TrainConfig, model_config) -> int:
    """Frames per video sample: ``resample_frames``, capped at what the model's frame embeddings
    cover. An explicit value above that cap is a config error, reported before training starts."""
    cap = getattr(model_config, "max_num_frames", None)
    if not cap or cfg.resample_frames <= cap:
        return cfg.resample_frames
    if "resample_frames" in cfg.model_fields_set:
        raise SyphusError(
            f"training config field 'resample_frames': {cfg.resample_frames} frames, but the model "
            f"has frame embeddings for at most {cap} (model.max_num_frames)"
        )
    return cap


def total_steps(cfg: TrainConfig, epoch_size: int, world_size: int) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_step = cfg.batch_size * cfg.grad_accum * world_size
    return max(1, math.ceil(cfg.epochs * epoch_size / per_step))


def forward_batch(engine, batch: Batch, dtype: torch.dtype):
    """One micro-batch through the model; returns (loss, per-sample sums, per-sample counts)."""
    device = engine.device
    vision = batch.vision_x.to(device=device, dtype=dtype) if batch.vision_x is not None else None
    out = engine(
        vision_x=vision,
        lang_x=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
    )
    return token_loss(out.logits, batch.labels.to(device))


class StepRunner:
    """forward + backward + optimizer step of one micro-batch through a DeepSpeed engine.

    Two shortcuts for the common single-process case, both exact: a world of one at ZeRO-0
    skips the gradient all-reduce (flattening every gradient to sum it with itself), and the
    fp32 ZeRO-0 clip runs in torch over the trainable parameters (see ``clips_itself``).
    """

    def __init__(self, engine, cfg: TrainConfig, precision: str, world_size: int):
        self.engine = engine
        self.grad_norm: float | None = None  # of the last optimizer step; None where not computed
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
        self.clip = cfg.clip_grad if clips_itself(cfg, precision) else 0.0
        self.params = [p for p in engine.module.parameters() if p.requires_grad]
        self.world_size = world_size
        if cfg.zero_stage == 0 and world_size == 1:
            engine.enable_backward_allreduce = False

    def __call__(self, batch: Batch):
        """Returns (loss, per-sample loss sums, per-sample supervised counts).

        An optimizer step whose gradient norm is not finite leaves the weights as they were:
        DeepSpeed's ZeRO optimizers skip it themselves; on the torch-clip path the gradients
        are dropped, which AdamW reads as "no update".
        """
        engine = self.engine
        loss, sums, counts = forward_batch(engine, batch, self.dtype)
        engine.backward(self.global_mean(loss, counts))
        boundary = engine.is_gradient_accumulation_boundary()
        if self.clip and boundary:
            self.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip))
            if not math.isfinite(self.grad_norm):
                for p in self.params:
                    p.grad = None
        engine.step()
        if boundary and not self.clip:
            norm = engine.get_global_grad_norm()
            self.grad_norm = None if norm is None else float(norm)
        return loss, sums, counts

    def global_mean(self, loss: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """This rank's part of the mean over every supervised token of the global micro-batch.

        DeepSpeed averages gradients over ranks; scaling each rank's mean by its share of the
        tokens makes that average the gradient one process would get from the whole batch,
        however unevenly the answers' tokens fall across ranks.
        """
        if self.world_size == 1:
            return loss
        import torch.distributed as dist

        mine = counts.sum()
        total = mine.detach().clone()
        dist.all_reduce(total)
        return loss * (mine.clamp(min=1) * self.world_size / total.clamp(min=1))


def all_finite(engine) -> bool:
    """Whether every weight is finite, agreed across ranks (under ZeRO-3 each rank checks its
    own partition)."""
    import torch.distributed as dist

    bad = torch.zeros(1, device=engine.device)
    for p in engine.module.parameters():
        held = getattr(p, "ds_tensor", None)
        held = p if held is None else held
        if held.numel() and not bool(torch.isfinite(held).all()):
            bad += 1
            break
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad)
    return float(bad) == 0


def _check_finite_weights(engine, step: int) -> None:
    """Non-finite weights are never saved: the run stops with an error instead."""
    if not all_finite(engine):
        raise CollectiveError(
            f"step {step}: the model's weights are NaN or infinite, so they are not saved; lower lr "
            "or check init_from and the data (earlier checkpoints are kept)"
        )


def gathered_state_dict(module: torch.nn.Module, zero3: bool, rank: int) -> dict[str, torch.Tensor]:
    """Full CPU state dict on rank 0; under ZeRO-3 parameters are gathered one at a time."""
    if not zero3:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if rank == 0 else {}
    import deepspeed

    out: dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
            if rank == 0:
                out[name] = p.detach().cpu().clone()
    if rank == 0:
        for name, b in module.named_buffers(remove_duplicate=False):
            out[name] = b.detach().cpu().clone()
    return out


def export_model(engine, tokenizer, image_processor, out_dir: Path, zero3: bool, rank: int) -> None:
    """``save_pretrained`` with safetensors (+ tokenizer, image processor) into ``out_dir``."""
    import torch.distributed as dist

    state = gathered_state_dict(engine.module, zero3, rank)
    if rank == 0:
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        engine.module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    dist.barrier()


def plot_loss(metrics_path: Path, png: Path) -> None:
    """A PNG of the loss curve (total and per group) from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]  # eval rows (the `eval:` block) carry scores only
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="loss", linewidth=1.5)
    keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, linewidth=0.8, alpha=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


class NonFiniteSteps:
    """Counts optimizer steps whose loss or gradient norm was NaN or infinite.

    Such a step leaves the weights unchanged (see ``StepRunner``); a few are tolerated (fp16 loss
    scaling overflows by design), more than ``limit`` in a row stop the run with an error.
    """

    def __init__(self, limit: int, world_size: int):
        self.limit = limit
        self.world_size = world_size
        self.in_a_row = 0
        self.total = 0

    def observe(self, loss_sum: float, grad_norm: float | None, device) -> bool:
        """Record one optimizer step; True when it was non-finite (the same answer on every rank)."""
        bad = not math.isfinite(loss_sum) or (grad_norm is not None and not math.isfinite(grad_norm))
        if self.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(bad)], device=device)
            dist.all_reduce(flag)
            bad = float(flag) > 0
        self.in_a_row = self.in_a_row + 1 if bad else 0
        self.total += bad
        return bad

    def stop_if_exceeded(self, step: int, engine) -> None:
        if self.in_a_row > self.limit:
            raise CollectiveError(
                f"step {step}: the loss or gradient was NaN or infinite in {self.in_a_row} optimizer "
                f"steps in a row (training config field 'max_nonfinite_steps': {self.limit}); "
                "lower lr or check init_from and the data; earlier checkpoints are kept"
            )
        # An optimizer that applied a non-finite update cannot recover: stop at once.
        _check_finite_weights(engine, step)


@dataclass
class Meter:
    """Sums since the last log line, reduced across ranks when read."""

    samples: int = 0
    tokens: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    started: float = 0.0


def _read_metrics(path: Path, upto: int) -> list[str]:
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        if line.strip() and json.loads(line)["step"] <= upto:
            keep.append(line)
    return keep


def _check_run_dir(out: Path, cfg: TrainConfig, mix_text: str) -> None:
    """A resumed run must use the same config and mix; anything else needs a new --out."""
    saved = out / "train_config.json"
    mine = {"config": cfg.model_dump(mode="json"), "mix": mix_text}
    if saved.is_file():
        theirs = json.loads(saved.read_text())
        if theirs != mine:
            raise SyphusError(
                f"{out}: holds a run with a different config or mix; use a new --out to start over"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(mine, indent=2))


def train(
    mix_path: str | Path, config_path: str | Path, out: str | Path, progress: Progress | None = None
) -> dict:
    """Train (or resume) and export; returns the final metrics line on rank 0 (which alone reports
    to ``progress``)."""
    import deepspeed
    import torch.distributed as dist

    from trainer.data import MixStream, SkipGuard, StreamOptions

    cfg = load_train_config(config_path)
    mix = load_mix(mix_path)
    out = Path(out)
    launcher = exit_with_launcher()  # a kill -9 of `syphus train` takes this process with it
    rank, local_rank, world = init_distributed()
    # One trainer per folder: rank 0 holds the lock until the run is written (or it dies).
    run_lock = hold_run_lock(out, launcher) if rank == 0 else None
    eval_runs = None
    if rank == 0:
        _check_run_dir(out, cfg, Path(mix_path).read_text(encoding="utf-8"))
        if cfg.eval is not None:  # a wrong benchmark name or folder fails now, not at step `every`
            from syphus.eval.runner import training_benches

            eval_runs = training_benches(cfg.eval, Path(config_path).resolve().parent)
    dist.barrier()
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)

    model, tokenizer, image_processor = build_model(cfg)
    special = SpecialTokens.from_model(tokenizer, model.config)
    options = StreamOptions(
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        prompt_format=cfg.prompt_format,
        max_length=cfg.max_length,
        resample_frames=frames_for(cfg, model.config),
        max_context=cfg.max_context,
        supervise_context=cfg.supervise_context,
        shuffle_buffer=cfg.shuffle_buffer,
    )
    data = MixStream(
        mix,
        tokenizer=tokenizer,
        special=special,
        image_processor=image_processor,
        options=options,
        rank=rank,
        world_size=world,
    )
    steps = total_steps(cfg, data.epoch_size, world)
    skip_guard = SkipGuard(data.datasets, cfg.max_skipped_fraction, world)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * steps)

    on_gpu = torch.cuda.is_available()
    precision = choose_precision(cfg)
    groups = [g for g in model.optimizer_param_groups(cfg.weight_decay) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(steps, warmup, cfg.min_lr_ratio)
    )
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(cfg, precision, on_gpu),
    )
    train_step = StepRunner(engine, cfg, precision, world)

    ckpt_dir = out / CHECKPOINTS
    checkpoints = VerifiedCheckpointEngine(engine.checkpoint_engine)
    engine.checkpoint_engine = checkpoints
    step = _resume(engine, checkpoints, ckpt_dir, rank)
    metrics_path = out / METRICS
    if rank == 0:
        metrics_path.write_text("".join(line + "\n" for line in _read_metrics(metrics_path, step)))

    data.start_batch = step * cfg.grad_accum  # resume: skip what the checkpoint already consumed
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=cfg.num_workers)
    batches = iter(loader)

    writer = None
    if rank == 0 and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1)
    wandb_run = None
    if rank == 0 and cfg.wandb_project:
        import wandb

        wandb_run = wandb.init(
            project=cfg.wandb_project, dir=str(out), config=cfg.model_dump(mode="json"), resume="allow"
        )

    group_names = data.groups
    nonfinite = NonFiniteSteps(cfg.max_nonfinite_steps, world)
    skipped: dict[str, int] = {}
    shown_warnings = 0
    last: dict = {}
    meter = Meter(started=time.perf_counter())
    group_sums = torch.zeros(len(group_names), 2, dtype=torch.float64)
    advance = (progress if rank == 0 else None) or no_progress
    advance(step, total=steps, label="train")
    while step < steps:
        torch.manual_seed(step_seed(cfg.seed, step, rank))
        step_loss = 0.0
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            skip_guard.add(batch)
            for reason, n in batch.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + n
            for msg in batch.warnings:
                if shown_warnings < 20:
                    print(f"warning: skipped sample: {msg}", file=sys.stderr)
                shown_warnings += 1
            loss, sums, counts = train_step(batch)
            meter.samples += batch.n_samples
            meter.tokens += batch.n_tokens
            step_loss += float(sums.sum())
            meter.loss_sum += float(sums.sum())
            meter.loss_count += int(counts.sum())
            for g, s, c in zip(batch.groups, sums.tolist(), counts.tolist(), strict=True):
                if g:
                    group_sums[group_names.index(g), 0] += s
                    group_sums[group_names.index(g), 1] += c
        step += 1
        if nonfinite.observe(step_loss, train_step.grad_norm, engine.device):
            nonfinite.stop_if_exceeded(step, engine)
        if step % cfg.log_every == 0 or step == steps:
            last = _log(step, engine, meter, group_sums, group_names, rank, metrics_path, writer, wandb_run)
            meter = Meter(started=time.perf_counter())
            group_sums.zero_()
        advance(1, status=f"loss {last.get('loss', float('nan')):.4f}")
        if cfg.eval is not None and (step % cfg.eval.every == 0 or (step == steps and cfg.eval.at_end)):
            _evaluate(
                engine, tokenizer, image_processor, cfg, eval_runs, out, step, rank, metrics_path, writer
            )
        if step % cfg.save_every == 0 and step < steps:
            _save(engine, checkpoints, ckpt_dir, step, cfg, rank, world)
    if skipped and rank == 0:
        print(f"warning: skipped {sum(skipped.values())} samples: {skipped}", file=sys.stderr)
    skip_guard.finish()
    if nonfinite.total and rank == 0:
        print(
            f"warning: skipped {nonfinite.total} optimizer steps with a non-finite loss or gradient",
            file=sys.stderr,
        )
    _check_finite_weights(engine, step)
    export_model(engine, tokenizer, image_processor, out / MODEL_DIR, cfg.zero_stage == 3, rank)
    if rank == 0:
        plot_loss(metrics_path, out / "loss.png")
        if writer is not None:
            writer.close()
        if wandb_run is not None:
            wandb_run.finish()
        last["skipped"] = skipped
        last["nonfinite_steps"] = nonfinite.total
        (out / "summary.json").write_text(json.dumps(last, indent=2))
        run_lock.close()
    return last


def _log(step, engine, meter: Meter, group_sums, groups, rank, metrics_path, writer, wandb_run) -> dict:
    import torch.distributed as dist

    elapsed = max(1e-9, time.perf_counter() - meter.started)
    totals = torch.tensor(
        [meter.samples, meter.tokens, meter.loss_sum, meter.loss_count], dtype=torch.float64
    )
    dist.all_reduce(totals)
    dist.all_reduce(group_sums)
    row = {
        "step": step,
        "loss": float(totals[2] / max(1.0, float(totals[3]))),
        "lr": float(engine.get_lr()[0]),
        "samples_per_s": float(totals[0]) / elapsed,
        "tokens_per_s": float(totals[1]) / elapsed,
    }
    for g, (s, c) in zip(groups, group_sums.tolist(), strict=True):
        if c > 0:
            row[f"loss/{g}"] = s / c
    if rank == 0:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if writer is not None:
            for k, v in row.items():
                if k != "step":
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, step)
            writer.flush()
        if wandb_run is not None:
            wandb_run.log(row, step=step)
    return row


def _evaluate(engine, tokenizer, image_processor, cfg, runs, out, step, rank, metrics_path, writer) -> None:
    """The ``eval:`` block: rank 0 scores the model while the other ranks wait at a barrier."""
    import torch.distributed as dist

    if rank == 0:
        from syphus.eval.runner import evaluate_training_step

        row = evaluate_training_step(
            engine.module, tokenizer, image_processor, runs, batch_size=cfg.eval.batch_size, run_dir=out,
            step=step, prompt_format=cfg.prompt_format,
        )  # fmt: skip
        with open(metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")
        if writer is not None:
            for k, v in row.items():
                writer.add_scalar(k, v, step)
            writer.flush()
    dist.barrier()


def _resume(engine, checkpoints: VerifiedCheckpointEngine, ckpt_dir: Path, rank: int) -> int:
    """Load the newest checkpoint that verifies; returns its step (0 for a fresh run).

    Rank 0 verifies the digests (each file read once) and tells every rank which step to load.
    """
    import torch.distributed as dist

    choice = torch.tensor([-1], dtype=torch.long, device=engine.device)
    refused = None
    if rank == 0:
        try:
            tag_dir, warnings = newest_good_checkpoint(ckpt_dir)
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            if tag_dir is not None:
                choice[0] = int(tag_dir.name.removeprefix(TAG_PREFIX))
        except SyphusError as e:
            refused = e
            choice[0] = -2
    dist.broadcast(choice, src=0)
    step = int(choice[0])
    if refused is not None:
        raise refused
    if step == -2:
        raise CollectiveError(f"{ckpt_dir}: no checkpoint verifies (rank 0 names the file)")
    if step < 0:
        return 0
    tag = checkpoint_tag(step)
    checkpoints.allow(ckpt_dir / tag, read_manifest(ckpt_dir / tag))
    _, client = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    if not client or client.get("step") != step:
        raise SyphusError(f"{ckpt_dir / tag}: its saved step does not match the folder name")
    if rank == 0:
        print(f"resumed from {ckpt_dir / tag}", file=sys.stderr)
    return step


def _save(
    engine,
    checkpoints: VerifiedCheckpointEngine,
    ckpt_dir: Path,
    step: int,
    cfg: TrainConfig,
    rank: int,
    world: int,
) -> None:
    """DeepSpeed's checkpoint plus ``manifest.json`` (the sha256 of every file), written last."""
    import torch.distributed as dist

    _check_finite_weights(engine, step)
    tag_dir = ckpt_dir / checkpoint_tag(step)
    if rank == 0:
        tag_dir.mkdir(parents=True, exist_ok=True)
        (tag_dir / SAVING).touch()
        (tag_dir / MANIFEST).unlink(missing_ok=True)  # ours, from an earlier pass over this step
    dist.barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=tag_dir.name, client_state={"step": step})
    written: list = [None] * world
    dist.all_gather_object(written, checkpoints.written)
    if rank == 0:
        write_manifest(tag_dir, step, written)
        for old in checkpoint_tags(ckpt_dir)[: -cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.splitlines()[0])
    parser.add_argument("--mix", required=True, help="dataset mix YAML")
    parser.add_argument("--config", required=True, help="training config YAML")
    parser.add_argument("--out", required=True, help="run directory (checkpoints, logs, final model)")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    try:
        # The launcher's rank 0 draws the bar when someone watches a terminal.
        from syphus.cli.ui import progress_bar

        with progress_bar("train", enabled=sys.stderr.isatty() and os.environ.get("RANK", "0") == "0") as bar:
            train(args.mix, args.config, args.out, bar)
    except SyphusError as e:
        if os.environ.get("SYPHUS_DEBUG"):
            raise
        if not isinstance(e, CollectiveError) or os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr)
        sys.exit(REPORTED_ERROR)


if __name__ == "__main__":
    main()
