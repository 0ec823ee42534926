"""The dataset-mix YAML: Otter's grouped format, plus our own exported shards as a source.

Otter's format (``shared_scripts/*.yaml`` in the original repository)::

    IMAGE_TEXT:
      LADD:
        mimicit_path: json/LA/LADD_instructions.json
        images_path: Parquets/LA.parquet
        num_samples: -1
    IMAGE_TEXT_IN_CONTEXT:
      LACR_I2I:
        mimicit_path: ...
        images_path: ...
        train_config_path: json/LA/LACR_I2I_train.json
        num_samples: 5000
    TEXT_ONLY:
      LIMA:
        mimicit_path: ...

``num_samples`` is the number of records a dataset contributes per epoch: more than it has
repeats every record and draws the remainder, fewer draws a sample; ``-1`` or ``0`` (or leaving
it out) takes every record once, as Otter's ``resample_data`` does.

A dataset may instead name ``shards_path``: a directory written by ``syphus export shards``
(optionally restricted with ``tasks`` and ``langs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import SyphusError, first_validation_error, read_yaml

GROUPS = ("IMAGE_TEXT", "TEXT_ONLY", "IMAGE_TEXT_IN_CONTEXT", "VIDEO_TEXT")
Group = Literal["IMAGE_TEXT", "TEXT_ONLY", "IMAGE_TEXT_IN_CONTEXT", "VIDEO_TEXT"]


class MixDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mimicit_path: str | None = None
    images_path: str | None = None
    train_config_path: str | None = None
    task_description: str | None = None  # Otter's loader reads it per dataset; kept, not used
    shards_path: str | None = None
    tasks: list[str] | None = None
    langs: list[str] | None = None
    num_samples: int = Field(-1, description="records per epoch; -1 or 0: all of them (Otter's meaning)")

    @model_validator(mode="after")
    def _one_source(self) -> MixDataset:
        if (self.mimicit_path is None) == (self.shards_path is None):
            raise ValueError("give exactly one of mimicit_path or shards_path")
        if self.num_samples < -1:
            raise ValueError("num_samples must be a count, or -1 / 0 for all records")
        return self


class MixConfig(BaseModel):
    """Group name -> dataset name -> dataset."""

    model_config = ConfigDict(extra="forbid")

    IMAGE_TEXT: dict[str, MixDataset] = Field(default_factory=dict)
    TEXT_ONLY: dict[str, MixDataset] = Field(default_factory=dict)
    IMAGE_TEXT_IN_CONTEXT: dict[str, MixDataset] = Field(default_factory=dict)
    VIDEO_TEXT: dict[str, MixDataset] = Field(default_factory=dict)

    def datasets(self) -> list[tuple[str, str, MixDataset]]:
        """(group, name, dataset) in file order."""
        out = []
        for g in GROUPS:
            for name, ds in getattr(self, g).items():
                out.append((g, name, ds))
        return out

    def resolve_paths(self, base: Path) -> MixConfig:
        """Paths in the YAML are relative to the YAML's own folder."""

        def fix(p: str | None) -> str | None:
            if p is None:
                return None
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else (base / q))

        data = self.model_dump()
        for g in GROUPS:
            for ds in data[g].values():
                for k in ("mimicit_path", "images_path", "train_config_path", "shards_path"):
                    ds[k] = fix(ds[k])
        return MixConfig.model_validate(data)


def load_mix(path: str | Path) -> MixConfig:
    """Read and validate a mix YAML; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise SyphusError(f"{path}: mix file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not raw:
        raise SyphusError(f"{path}: expected a mapping of groups {', '.join(GROUPS)}")
    unknown = [k for k in raw if k not in GROUPS]
    if unknown:
        raise SyphusError(f"{path}: unknown group '{unknown[0]}' (groups are {', '.join(GROUPS)})")
    for g, dsets in raw.items():
        if dsets is None:
            raw[g] = {}
        elif not isinstance(dsets, dict):
            raise SyphusError(f"{path}: group '{g}' must map dataset names to settings")
    try:
        mix = MixConfig.model_validate(raw)
    except ValidationError as e:
        raise first_validation_error(e, where=str(path)) from e
    return mix.resolve_paths(path.parent)
