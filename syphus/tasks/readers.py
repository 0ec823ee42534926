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
    """Stream ``(line number, value)`` from a JSON-lines file, skipping blank lines; a file with
    no line at all is an error (a file the user named that holds nothing is a wrong file)."""
    empty = True
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise SyphusError(
                    f"{path}: line {lineno}: not UTF-8 text ({e.reason} at byte {e.start})"
                ) from e
            if not line.strip():
                continue
            empty = False
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise SyphusError(
                    f"{path}: line {lineno}: malformed JSON at column {e.colno}: {e.msg}"
                ) from e
    if empty:
        raise SyphusError(f"{path}: empty file (expected one JSON object a line)")


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


class _JsonStream:
    """Incremental reader of one top-level JSON array or object, a value at a time.

    Public annotation files (Ego4D narrations, ScanRefer, ActivityNet Captions) are one big
    array or object; reading them element by element keeps memory at one record, not the file.
    """

    CHUNK = 1 << 20

    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, encoding="utf-8-sig")
        self.buf = ""
        self.pos = 0
        self.consumed_lines = 0  # newlines in text already dropped from the buffer
        self.eof = False
        self.decoder = json.JSONDecoder()

    def close(self) -> None:
        self.f.close()

    def _more(self) -> bool:
        if self.eof:
            return False
        # drop what is parsed, then read at least as much again as is kept, so a huge value
        # costs amortised linear time
        self.consumed_lines += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :]
        self.pos = 0
        try:
            chunk = self.f.read(max(self.CHUNK, len(self.buf)))
        except UnicodeDecodeError as e:
            raise SyphusError(f"{self.where()}: not UTF-8 text ({e.reason}); save the file as UTF-8") from e
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def where(self) -> str:
        line = self.consumed_lines + self.buf.count("\n", 0, self.pos) + 1
        return f"{self.path}: line {line}"

    def skip_ws(self) -> str:
        """The next non-blank character (not consumed), or '' at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.skip_ws()
        if not c or c not in chars:
            found = repr(c) if c else "end of file"
            raise SyphusError(f"{self.where()}: malformed JSON: expected {what}, found {found}")
        self.pos += 1
        return c

    def value(self) -> Any:
        self.skip_ws()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                line = self.consumed_lines + self.buf.count("\n", 0, e.pos) + 1
                if self._more():
                    continue
                raise SyphusError(f"{self.path}: malformed JSON at line {line}: {e.msg}") from e
            if end == len(self.buf) and not self.eof and self._more():
                continue  # a number may go on in the next chunk
            self.pos = end
            return value


def iter_json_container(path: Path, kind: type, what: str = "") -> Iterator[tuple[str | int, Any, str]]:
    """Stream ``(key or index, value, where)`` from a file holding one JSON object or array.

    ``kind`` is ``dict`` or ``list``; a file of the other shape raises SyphusError saying
    ``what`` was expected.
    """
    s = _JsonStream(path)
    try:
        opening = "{" if kind is dict else "["
        closing = "}" if kind is dict else "]"
        what = what or ("an object" if kind is dict else "a list")
        c = s.skip_ws()
        if c != opening:
            found = {"{": "an object", "[": "a list", "": "an empty file"}.get(c, f"{c!r}")
            raise SyphusError(f"{path}: expected {what}, found {found}")
        s.pos += 1
        if s.skip_ws() == closing:
            return
        index = 0
        while True:
            where = s.where()
            if kind is dict:
                if s.skip_ws() != '"':
                    raise SyphusError(f"{where}: malformed JSON: expected a quoted key")
                key = s.value()
                s.expect(":", "':' after a key")
            else:
                key = index
            yield key, s.value(), where
            index += 1
            if s.expect(f",{closing}", f"',' or '{closing}'") == closing:
                return
    finally:
        s.close()


class RepeatedRecords:
    """Tells an exact repeat of an earlier record (same content, key order aside) from a new one,
    so readers count repeats as merged instead of folding them in silently."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def repeated(self, raw: Any) -> bool:
        import hashlib

        canon = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
        digest = hashlib.blake2b(canon, digest_size=16).digest()
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False
