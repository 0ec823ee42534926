"""The evaluation YAML read by ``syphus eval --config``, and the ``eval:`` block of a training config.

An evaluation file names datasets and models, as Otter's evaluation pipeline did::

    data: benchmarks/          # each benchmark's distributed files under DATA/<name>/
    out: results/
    batch_size: 8
    judge: gpt-4o-mini         # for MathVista's extractor and MM-Vet's grader
    datasets:
      - name: pope
        split: test
        limit: 500
      - name: mme
        prompt: short          # the benchmark's prompt style
        path: /data/MME        # this benchmark's files, if not DATA/mme
    models:
      - name: runs/demo/model  # a saved Otter folder ...
      - name: gpt-4o           # ... or an endpoint model
        api_base: http://127.0.0.1:8000/v1
      - name: otter-demo       # Otter's own form: a label plus model_path
        model_path: runs/demo/model

Relative paths are relative to the YAML file's folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import SyphusError, first_validation_error, read_yaml


class DatasetEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(
        ..., min_length=1, description="benchmark name (mme, pope, ...) or package.module:OBJECT"
    )
    split: str | None = None
    prompt: str | None = Field(None, description="the benchmark's prompt style (default: its own)")
    path: str | None = Field(None, description="this benchmark's files (default: DATA/<name>)")
    limit: int | None = Field(None, ge=1, description="only the first N samples")
    max_new_tokens: int | None = Field(None, ge=1)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(..., min_length=1, description="a saved Otter folder or an endpoint model name")
    model_path: str | None = Field(None, description="the Otter folder, when `name` is only a label")
    api_base: str | None = None
    backend: str = "auto"
    batch_size: int | None = Field(None, ge=1)
    prompt_format: str = "otter"
    concurrency: int | None = Field(None, ge=1)


class EvalFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    datasets: list[DatasetEntry] = Field(..., min_length=1)
    models: list[ModelEntry] = Field(..., min_length=1)
    data: str | None = Field(None, description="folder holding each benchmark's files as DATA/<name>/")
    out: str | None = None
    batch_size: int = Field(8, ge=1)
    limit: int | None = Field(None, ge=1, description="default per-dataset limit")
    judge: str | None = None
    judge_api_base: str | None = None
    max_cost: float | None = Field(None, ge=0)
    concurrency: int = Field(16, ge=1)


class TrainEval(BaseModel):
    """``eval:`` of a training config: score a subset every ``every`` optimizer steps (and at the
    end), on rank 0, into RUN/eval/step-NNNNNN/ and metrics.jsonl."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    every: int = Field(..., ge=1, description="optimizer steps between evaluations")
    data: str = Field(..., description="folder holding each benchmark's files as DATA/<name>/")
    datasets: list[DatasetEntry] = Field(..., min_length=1)
    limit: int | None = Field(64, ge=1, description="samples per benchmark (a subset keeps training moving)")
    batch_size: int = Field(8, ge=1)
    at_end: bool = Field(True, description="also evaluate the final model")


def resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def load_eval_file(path: str | Path) -> EvalFile:
    """Read and validate an evaluation YAML; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise SyphusError(f"{path}: evaluation config not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SyphusError(f"{path}: expected a mapping with 'datasets' and 'models'")
    try:
        return EvalFile.model_validate(raw)
    except ValidationError as e:
        raise first_validation_error(e, where=str(path)) from e
