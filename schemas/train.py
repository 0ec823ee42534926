"""The training config YAML read by ``syphus train --config``.

Example::

    model:                      # OtterConfig fields for a fresh model
      name: tiny                # base: trainer/configs/tiny.json (or a JSON path)
      cross_attn_every_n_layers: 1
    init_from: null             # or a model folder, an OpenFlamingo checkpoint.pt or an Otter HF folder
    train_lm: false
    train_vision: false
    batch_size: 4               # per device, per micro-step
    grad_accum: 1
    max_steps: 200              # or epochs: 3
    lr: 1.0e-4
    warmup_steps: 10
    zero_stage: 2
    save_every: 50
    eval:                       # optional: score a subset every N steps (rank 0), see docs/eval.md
      every: 50
      data: benchmarks/         # each benchmark's files as DATA/<name>/ (relative to this file)
      datasets: [{name: pope}, {name: mme, limit: 32}]
      limit: 64                 # samples per benchmark unless a dataset says otherwise

Every number must be finite and in its range (``lr: .inf`` is refused before anything runs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import SyphusError, first_validation_error, read_yaml
from schemas.eval import TrainEval


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | None = None


def _non_finite(value: Any, where: str) -> str | None:
    """The path of the first NaN or infinite float inside ``value`` (nested dicts and lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}.{k}")
        if found:
            return found
    return None


class TrainConfig(BaseModel):
    # allow_inf_nan=False: no float field accepts .nan or .inf (pydantic's bounds alone let inf through)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: dict[str, Any] = Field(
        default_factory=lambda: {"name": "tiny"},
        description="OtterConfig fields for a fresh model; `name` picks trainer/configs/NAME.json (or a JSON path) as the base",
    )
    init_from: str | None = Field(
        None,
        description="start from a model folder written by syphus (train/convert), or import an OpenFlamingo v2 "
        "checkpoint.pt or an Otter HF folder over the model that `model` describes (its lm and vision_encoder "
        "must be the ones the checkpoint was trained with), as `syphus convert` does",
    )
    train_lm: bool = False
    train_vision: bool = False
    lora: LoraSettings | None = None

    prompt_format: str = "otter"
    max_length: int = Field(1024, ge=8)
    resample_frames: int = Field(8, ge=1)
    max_context: int | None = Field(None, ge=0)
    supervise_context: bool = True
    shuffle_buffer: int = Field(1024, ge=1)
    num_workers: int = Field(0, ge=0)
    max_skipped_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="stop with an error when a dataset loses more than this share of its samples "
        "(missing or undecodable images, ids missing from the instructions, prompts too long)",
    )

    batch_size: int = Field(4, ge=1, description="samples per device per micro-step")
    grad_accum: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0)

    lr: float = Field(1e-4, gt=0, le=1)
    weight_decay: float = Field(0.1, ge=0, le=1)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0, le=1)
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    clip_grad: float = Field(1.0, gt=0)
    max_nonfinite_steps: int = Field(
        10,
        ge=0,
        description="optimizer steps in a row with a NaN/inf loss or gradient that are skipped before the run stops",
    )

    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False

    seed: int = Field(42, ge=0, lt=2**63)
    torch_threads: int | None = Field(
        None, ge=1, description="intra-op CPU threads per process (1 is fastest for tiny models on busy CPUs)"
    )
    save_every: int = Field(100, ge=1, description="checkpoint every N optimizer steps")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(1, ge=1)
    tensorboard: bool = True
    wandb_project: str | None = None
    eval: TrainEval | None = Field(
        None, description="benchmarks scored every `every` steps into RUN/eval/step-NNNNNN/ and metrics.jsonl"
    )

    @field_validator("model")
    @classmethod
    def _finite_model_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        found = _non_finite(value, "model")
        if found:
            raise ValueError(f"{found} must be a finite number")
        return value

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("give max_steps or epochs")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage: 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        if self.eval is not None and self.zero_stage == 3:
            # rank 0 generates alone, and under ZeRO-3 it holds only its shard of the weights
            raise ValueError("eval needs zero_stage 0, 1 or 2 (ZeRO-3 splits the weights across ranks)")
        return self


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config YAML; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise SyphusError(f"{path}: training config not found")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise SyphusError(f"{path}: expected a mapping of training settings")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise first_validation_error(e, where=str(path)) from e
