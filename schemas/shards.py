"""The training-shard format written by ``syphus export shards`` and read by the trainer.

A shard directory holds ``manifest.json`` and pairs of parquet files:

* ``part-NNNNN.parquet``: one row per instruction-response pair, columns
  ``id, task, lang, media, instruction, answer, image_ids (list<string>),
  context (list<struct<id, instruction, answer, image_ids list<string>>>)``.
  ``context`` holds the in-context examples, denormalised, in rank order.
  ``media`` is ``image`` (image ids are separate images, Otter's T axis), ``video``
  (image ids are frames of one clip, the F axis) or ``none`` (text only).
* ``images-NNNNN.parquet``: ``image_id, bytes`` (original encoded bytes, uncompressed
  column, small row groups) for every image the part's rows and their context use.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

SHARD_FORMAT_VERSION = 1


class ShardFiles(BaseModel):
    instructions: str
    images: str
    rows: int
    images_rows: int


class ShardManifest(BaseModel):
    format_version: int = SHARD_FORMAT_VERSION
    corpus: str | None = None
    created_at: str
    rows: int
    tasks: dict[str, int] = Field(default_factory=dict)
    langs: dict[str, int] = Field(default_factory=dict)
    shards: list[ShardFiles]
