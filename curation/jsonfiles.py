"""Reading user JSON files with errors that name the file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.errors import SyphusError


def _no_duplicate_keys(path: Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise SyphusError(f"{path}: duplicate key '{k}' (ids must be unique)")
            out[k] = v
        return out

    return hook


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """Parse a whole JSON file strictly: UTF-8, no duplicate keys, not empty."""
    path = Path(path)
    if not path.is_file():
        raise SyphusError(f"{path}: {what} not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise SyphusError(f"{path}: empty file (expected a {what})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SyphusError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from e
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError as e:
        raise SyphusError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e


def write_json_atomic(path: Path, obj: Any, *, indent: int | None = None) -> None:
    """Write JSON to a temporary name and rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.flush()
    tmp.replace(path)
