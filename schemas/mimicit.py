"""The MIMIC-IT file formats, as the original Otter code reads and writes them.

An instructions file is ``{"meta": {...}, "data": {ins_id: record}}``; a context map (Otter's
``*_train.json``, named "train config" there) is ``{ins_id: [related ins_id, ...]}``; images live
in a parquet keyed by image id with a ``base64`` column (or, in older releases, a JSON
``{image_id: base64}``). The files are read by ``curation/formats.py``, validated by these models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator


class InstructionRecord(BaseModel):
    """One instruction-response pair of MIMIC-IT."""

    model_config = ConfigDict(extra="allow")

    instruction: str
    answer: str
    image_ids: list[str] = Field(default_factory=list)
    rel_ins_ids: list[str] = Field(default_factory=list)

    @field_validator("image_ids", "rel_ins_ids", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


class MimicitMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str | None = None
    time: str | None = None
    author: str | None = None


class MimicitFile(BaseModel):
    """A whole ``*_instructions.json`` file."""

    meta: MimicitMeta = Field(default_factory=MimicitMeta)
    data: dict[str, InstructionRecord]


class ContextMap(RootModel[dict[str, list[str]]]):
    """A ``*_train.json`` file: for each instruction id, the ids of its in-context examples.
    Read by ``curation.formats.read_context_map``."""


def task_of_id(ins_id: str) -> str | None:
    """MIMIC-IT ids look like ``LA_INS_00001``: the task is what precedes ``_INS_``."""
    if "_INS_" in ins_id:
        return ins_id.split("_INS_", 1)[0]
    return None
