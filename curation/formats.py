"""The one reader of each file the stages hand each other: MIMIC-IT instructions and context
maps (``*_train.json``), the columns of a MIMIC-IT images parquet, and the manifest of a shard
folder.

``syphus import mimicit``, ``syphus mix`` and the trainer all read these files through here, so a
file one of them accepts the others accept too, with the same one-line errors naming the file.
This module reads files only (no corpus, no torch), which is why the trainer may import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from curation.jsonfiles import read_json
from schemas.errors import SyphusError, first_validation_error
from schemas.mimicit import ContextMap, InstructionRecord
from schemas.shards import ShardManifest

MANIFEST_NAME = "manifest.json"
# where a MIMIC-IT images parquet may keep the image id when it is not the pandas index
ID_COLUMN_CANDIDATES = ("id", "image_id", "img_id", "key", "__index_level_0__")


def read_instructions(path: str | Path) -> tuple[dict[str, Any], dict[str, InstructionRecord]]:
    """(meta, records by id) of a ``*_instructions.json``; every record is validated, and an
    error names the file, the id and the field."""
    path = Path(path)
    doc = read_json(path, what="MIMIC-IT instructions JSON")
    if not isinstance(doc, dict) or "data" not in doc:
        raise SyphusError(f"{path}: expected an object with 'meta' and 'data' (a MIMIC-IT instructions file)")
    data = doc["data"]
    if not isinstance(data, dict):
        raise SyphusError(f"{path}: field 'data' must map instruction ids to records")
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise SyphusError(f"{path}: field 'meta' must be an object")
    records: dict[str, InstructionRecord] = {}
    for ins_id, rec in data.items():
        if not isinstance(rec, dict):
            raise SyphusError(f"{path}: record '{ins_id}': expected an object, got {type(rec).__name__}")
        try:
            records[ins_id] = InstructionRecord.model_validate(rec, strict=False)
        except ValidationError as e:
            raise first_validation_error(e, where=f"{path}: record '{ins_id}'") from e
        for fname in ("instruction", "answer"):
            if not isinstance(rec.get(fname), str):
                raise SyphusError(f"{path}: record '{ins_id}': field '{fname}' must be a string")
        for fname in ("image_ids", "rel_ins_ids"):
            v = rec.get(fname)
            if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                raise SyphusError(f"{path}: record '{ins_id}': field '{fname}' must be a list of strings")
    return meta, records


def read_context_map(path: str | Path) -> dict[str, list[str]]:
    """A ``*_train.json``: for each instruction id, the ids of its in-context examples."""
    path = Path(path)
    doc = read_json(path, what="MIMIC-IT train JSON")
    if not isinstance(doc, dict):
        raise SyphusError(f"{path}: expected an object mapping instruction ids to lists of related ids")
    for k, v in doc.items():
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise SyphusError(f"{path}: entry '{k}': expected a list of instruction ids")
    return ContextMap.model_validate(doc).root


def read_shard_manifest(root: str | Path) -> ShardManifest:
    """The manifest of a folder ``syphus export shards`` wrote, once every file it lists exists."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise SyphusError(f"{path}: shard manifest not found (write it with 'syphus export shards')")
    try:
        manifest = ShardManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SyphusError(f"{path}: invalid shard manifest: {str(e).splitlines()[0]}") from e
    for s in manifest.shards:
        for name in (s.instructions, s.images):
            if not (root / name).is_file():
                raise SyphusError(f"{path}: lists '{name}' but {root / name} does not exist")
    return manifest


def images_parquet_columns(schema: pa.Schema, path: str | Path) -> tuple[str, str]:
    """(id column, base64 column) of a MIMIC-IT images parquet: Otter's keeps the id as the
    pandas index; other tools write it as a column."""
    names = schema.names
    id_col = None
    md = schema.metadata or {}
    if b"pandas" in md:
        try:
            idx = json.loads(md[b"pandas"]).get("index_columns", [])
            if idx and isinstance(idx[0], str) and idx[0] in names:
                id_col = idx[0]
        except (ValueError, AttributeError):
            pass
    if id_col is None:
        id_col = next((c for c in ID_COLUMN_CANDIDATES if c in names), None)
    if id_col is None:
        raise SyphusError(
            f"{path}: no image id column (looked for the pandas index and {', '.join(ID_COLUMN_CANDIDATES)})"
        )
    if "base64" not in names:
        raise SyphusError(f"{path}: no 'base64' column (columns are {', '.join(names)})")
    return id_col, "base64"
