"""Reading annotation files with errors that name the file, the record and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.errors import SyphusError, first_validation_error

M = TypeVar("M", bound=BaseModel)


def check_paths(paths: list[Path] | list[str], task: str) -> list[Path]:
    """Existing files only; a missing path or an empty list is a user error."""
    out = [Path(p) for p in paths]
    if not out:
        raise SyphusError(f"task {task}: no annotation files given")
    for p in out:
        if not p.is_file():
            raise SyphusError(f"{p}: annotation file not found (task {task})")
    return out


def load_json(path: Path) -> Any:
    """A whole JSON file; malformed JSON names line and column."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise SyphusError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise SyphusError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Stream ``(line number, value)`` from a JSON-lines file, skipping blank lines."""
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise SyphusError(
                    f"{path}: line {lineno}: malformed JSON at column {e.colno}: {e.msg}"
                ) from e


def validate(model: type[M], value: Any, where: str) -> M:
    """``model.model_validate`` with a one-line SyphusError naming ``where`` and the field."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise first_validation_error(e, where=where) from e


def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    """Check the top-level shape of a file (``list``, ``dict``) before reading records."""
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise SyphusError(f"{where}: expected {what} ({names}), found {type(value).__name__}")
    return value
