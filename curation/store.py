"""The corpus store: one directory with ``corpus.duckdb`` and ``images/*.parquet`` shards.

SQL is the interface to the data (``corpus.con`` is a plain DuckDB connection); this module
adds the few things SQL cannot do alone: writing image shards crash-safely and reading one
image by id without touching the rest of its shard.

Image shards are plain parquet (``sha256``, ``bytes``), the binary column uncompressed and
plain-encoded, in row groups of 64 rows. After a shard is closed we record the byte offset of
every image inside the file, so a lookup is one ``pread`` of exactly that image; a reader
that only knows parquet can still read the shard as a table.

Crash safety: a shard is written as ``*.parquet.partial`` and renamed when complete; the rows
that point into it are committed to DuckDB after the rename. On open, partial files and
shards no row points to are removed, so a killed command leaves a usable corpus and a rerun
completes it.
"""

from __future__ import annotations

import json
import mmap
import os
import platform
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from curation.images import DEFAULT_MAX_PIXELS, ImageInfo, inspect_image
from curation.queries import CorpusQueries
from curation.schema import SCHEMA_VERSION, TABLES, create_statements, now
from schemas.errors import SyphusError

DB_NAME = "corpus.duckdb"
IMAGES_DIR = "images"
ROWS_PER_GROUP = 64


# Instruction ids and task names become file names on export ({TASK}_instructions.json), so
# they are limited to characters that are safe in a path component on every system.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")
NAME_RULE = "letters, digits, '_', '.', '-'; not starting with '.' or '-'; at most 200 characters"


def check_name(value: object, *, what: str) -> str:
    """Return ``value`` if it is a valid instruction id or task name, else raise SyphusError."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = repr(value)
        if len(shown) > 80:  # a 10 MB id must not become a 10 MB message
            shown = (
                f"{shown[:60]}... ({len(value)} characters)" if isinstance(value, str) else shown[:80] + "..."
            )
        raise SyphusError(f"{what} {shown}: not a valid name (allowed: {NAME_RULE})")
    return value


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def package_versions() -> dict[str, str]:
    """Versions recorded with every run (cheap: metadata only, no imports)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("syphus", "duckdb", "pyarrow", "torch", "transformers", "litellm", "faiss-cpu", "deepspeed"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def open_shard(path: str | Path) -> int:
    """A read descriptor for an image shard; a missing or unreadable shard is a one-line error."""
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise SyphusError(
            f"{path}: cannot read image shard ({e.strerror}); the corpus is damaged: restore the file "
            "from a backup, or re-import its images"
        ) from e


@dataclass
class ImageLocation:
    shard: str
    row_group: int
    row_in_group: int
    byte_offset: int
    nbytes: int


@dataclass
class InstructionRow:
    id: str
    task: str
    instruction: str
    answer: str
    image_ids: list[str] = field(default_factory=list)
    lang: str = "en"
    parent_id: str | None = None
    source_id: str | None = None
    extra: dict[str, Any] | None = None


class Corpus(CorpusQueries):
    """A corpus directory. Use as a context manager, or call ``close()``.

    The queries other stages ask are its methods from ``curation/queries.py``."""

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False):
        self.path = Path(path)
        db = self.path / DB_NAME
        self.images_dir = self.path / IMAGES_DIR
        if not db.exists():
            if not create or read_only:
                raise SyphusError(
                    f"{self.path}: no corpus here (missing {DB_NAME}); create one with 'syphus import'"
                )
            if self.path.exists() and not self.path.is_dir():
                raise SyphusError(f"{self.path}: is a file, not a corpus folder; choose another --corpus")
            if self.images_dir.is_dir() and any(self.images_dir.iterdir()):
                # a new corpus would treat the files there as its own shards
                raise SyphusError(
                    f"{self.path}: has an '{IMAGES_DIR}/' folder but no {DB_NAME}, so it is not a corpus; "
                    "choose a new or empty folder for the corpus"
                )
            self.path.mkdir(parents=True, exist_ok=True)
        if not read_only:
            self.images_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(db), read_only=read_only)
        except duckdb.IOException as e:
            raise SyphusError(f"{db}: cannot open ({e}); is another syphus command using this corpus?") from e
        self.read_only = read_only
        if not read_only:
            self.con.execute(create_statements())
            self._check_version()
            self._remove_orphans()
        else:
            self._stand_in_for_missing_tables()
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()
        self._index: dict[str, tuple[str, int, int]] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self.con.close()

    def _check_version(self) -> None:
        row = self.con.execute("SELECT value FROM store_meta WHERE key='schema_version'").fetchone()
        if row is None:
            self.con.execute("INSERT INTO store_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        elif int(row[0]) > SCHEMA_VERSION:
            raise SyphusError(
                f"{self.path}: corpus schema version {row[0]} is newer than this syphus ({SCHEMA_VERSION}); upgrade syphus"
            )

    def _stand_in_for_missing_tables(self) -> None:
        """A corpus written by an older syphus may lack a table that a later stage used to create;
        read-only, stand in an empty temporary one so that every query works on every corpus."""
        have = {
            r[0]
            for r in self.con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()
        }
        missing = set(TABLES) - have
        if missing:
            self.con.execute(create_statements(temporary=True, only=missing))

    def _remove_orphans(self) -> None:
        """Delete shard files a killed command left behind (never referenced by a committed row)."""
        known = {r[0] for r in self.con.execute("SELECT name FROM image_shards").fetchall()}
        for f in self.images_dir.iterdir():
            if not f.name.startswith("shard-"):  # only names the store gives its shards
                continue
            if f.name.endswith(".parquet.partial") or (f.name.endswith(".parquet") and f.name not in known):
                f.unlink(missing_ok=True)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self, command: str, config: dict[str, Any] | None = None, *, run_id: str | None = None
    ) -> str:
        run_id = run_id or new_run_id(command.split()[0] if command else "run")
        self.con.execute(
            "INSERT INTO runs (id, command, started_at, status, config, versions) VALUES (?, ?, ?, 'running', ?, ?)",
            [run_id, command, now(), json.dumps(config or {}, default=str), json.dumps(package_versions())],
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "done", summary: dict[str, Any] | None = None) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
            [now(), status, json.dumps(summary or {}, default=str), run_id],
        )

    # -- images ------------------------------------------------------------------------------

    def image_writer(self, run_id: str, **kw) -> ImageShardWriter:
        return ImageShardWriter(self, run_id, **kw)

    def has_images(self, ids: Sequence[str]) -> dict[str, str]:
        """Map of the given ids that exist to their sha256."""
        if not ids:
            return {}
        rows = self.con.execute(
            "SELECT id, sha256 FROM images WHERE id IN (SELECT unnest(?::VARCHAR[]))", [list(ids)]
        ).fetchall()
        return dict(rows)

    def image_location(self, image_id: str) -> ImageLocation:
        row = self.con.execute(
            "SELECT b.shard, b.row_group, b.row_in_group, b.byte_offset, b.nbytes "
            "FROM images i JOIN blobs b USING (sha256) WHERE i.id = ?",
            [image_id],
        ).fetchone()
        if row is None:
            raise SyphusError(f"{self.path}: unknown image id '{image_id}'")
        return ImageLocation(*row)

    def load_image_index(self) -> None:
        """Load id -> (shard, offset, nbytes) into memory for fast random reads."""
        rows = self.con.execute(
            "SELECT i.id, b.shard, b.byte_offset, b.nbytes FROM images i JOIN blobs b USING (sha256)"
        ).fetchall()
        self._index = {r[0]: (r[1], r[2], r[3]) for r in rows}

    def _fd(self, shard: str) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            with self._fd_lock:
                fd = self._fds.get(shard)
                if fd is None:
                    fd = self._fds[shard] = open_shard(self.images_dir / shard)
        return fd

    def image_index(self, ids: Sequence[str]) -> dict[str, tuple[str, str, int, int]]:
        """id -> (sha256, shard, byte offset, nbytes) for those of ``ids`` the corpus holds: for a
        caller that reads the same images again later (``read_image_at``) without a query each."""
        if not ids:
            return {}
        rows = self.con.execute(
            "SELECT i.id, i.sha256, b.shard, b.byte_offset, b.nbytes FROM images i JOIN blobs b USING (sha256) "
            "WHERE i.id IN (SELECT unnest(?::VARCHAR[]))",
            [list(ids)],
        ).fetchall()
        shards: dict[str, str] = {}  # one string per shard name, not one per image
        return {r[0]: (r[1], shards.setdefault(r[2], r[2]), r[3], r[4]) for r in rows}

    def read_image_at(self, shard: str, offset: int, nbytes: int, image_id: str = "") -> bytes:
        """The bytes at a location ``image_index`` gave: one pread, no query."""
        data = os.pread(self._fd(shard), nbytes, offset)
        if len(data) != nbytes:
            raise SyphusError(f"{self.images_dir / shard}: truncated shard (image '{image_id}')")
        return data

    def get_image(self, image_id: str) -> bytes:
        """The original encoded bytes of one image: one pread of exactly its bytes."""
        if self._index is not None:
            loc = self._index.get(image_id)
            if loc is None:
                raise SyphusError(f"{self.path}: unknown image id '{image_id}'")
            shard, off, n = loc
        else:
            where = self.image_location(image_id)
            shard, off, n = where.shard, where.byte_offset, where.nbytes
        data = os.pread(self._fd(shard), n, off)
        if len(data) != n:
            raise SyphusError(f"{self.images_dir / shard}: truncated shard (image '{image_id}')")
        return data

    def iter_images(self, ids: Iterable[str] | None = None, batch: int = 512) -> Iterator[tuple[str, bytes]]:
        """Yield (id, bytes), reading in shard order for locality."""
        if ids is None:
            q = (
                "SELECT i.id, b.shard, b.byte_offset, b.nbytes FROM images i JOIN blobs b USING (sha256) "
                "ORDER BY b.shard, b.byte_offset"
            )
            cur = self.con.execute(q)
        else:
            cur = self.con.execute(
                "SELECT i.id, b.shard, b.byte_offset, b.nbytes FROM images i JOIN blobs b USING (sha256) "
                "WHERE i.id IN (SELECT unnest(?::VARCHAR[])) ORDER BY b.shard, b.byte_offset",
                [list(ids)],
            )
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                break
            for iid, shard, off, n in rows:
                data = os.pread(self._fd(shard), n, off)
                if len(data) != n:
                    raise SyphusError(f"{self.images_dir / shard}: truncated shard (image '{iid}')")
                yield iid, data

    # -- instructions ------------------------------------------------------------------------

    def add_instructions(self, rows: Sequence[InstructionRow], run_id: str) -> int:
        """Insert instruction rows and their image order. Call inside ``transaction()`` to
        make a larger unit atomic. Ids already present are an error (SyphusError)."""
        if not rows:
            return 0
        for r in rows:
            check_name(r.id, what="instruction id")
            check_name(r.task, what=f"instruction '{r.id}': task")
        ids = [r.id for r in rows]
        dup = self.con.execute(
            "SELECT id FROM instructions WHERE id IN (SELECT unnest(?::VARCHAR[])) LIMIT 1", [ids]
        ).fetchone()
        if dup:
            raise SyphusError(f"{self.path}: instruction id '{dup[0]}' is already in the corpus")
        ins = pa.table(
            {
                "id": ids,
                "task": [r.task for r in rows],
                "instruction": [r.instruction for r in rows],
                "answer": [r.answer for r in rows],
                "lang": [r.lang for r in rows],
                "parent_id": [r.parent_id for r in rows],
                "source_id": [r.source_id for r in rows],
                "run_id": [run_id] * len(rows),
                "extra": [json.dumps(r.extra, ensure_ascii=False) if r.extra else None for r in rows],
            }
        )
        links = pa.table(
            {
                "ins_id": [r.id for r in rows for _ in r.image_ids],
                "pos": [p for r in rows for p in range(len(r.image_ids))],
                "image_id": [i for r in rows for i in r.image_ids],
            }
        )
        self.con.register("_ins_batch", ins)
        self.con.register("_link_batch", links)
        try:
            self.con.execute(
                "INSERT INTO instructions (id, task, instruction, answer, lang, parent_id, source_id, run_id, extra) "
                "SELECT id, task, instruction, answer, lang, parent_id, source_id, run_id, extra::JSON FROM _ins_batch"
            )
            self.con.execute("INSERT INTO instruction_images SELECT ins_id, pos, image_id FROM _link_batch")
        finally:
            self.con.unregister("_ins_batch")
            self.con.unregister("_link_batch")
        return len(rows)

    def add_context_sets(
        self, rows: Sequence[tuple[str, int, str, float | None]], method: str, run_id: str
    ) -> int:
        """Insert (query_id, rank, related_id, score) rows for one run."""
        if not rows:
            return 0
        t = pa.table(
            {
                "query_id": [r[0] for r in rows],
                "rank": pa.array([r[1] for r in rows], pa.int32()),
                "related_id": [r[2] for r in rows],
                "score": pa.array([r[3] for r in rows], pa.float64()),
            }
        )
        self.con.register("_cs_batch", t)
        try:
            self.con.execute(
                "INSERT INTO context_sets SELECT query_id, rank, related_id, score, ?, ? FROM _cs_batch",
                [method, run_id],
            )
        finally:
            self.con.unregister("_cs_batch")
        return len(rows)

    def quarantine(
        self,
        stage: str,
        reason: str,
        *,
        source: str | None = None,
        record_id: str | None = None,
        raw: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.con.execute(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [uuid.uuid4().hex, stage, source, record_id, reason, raw, run_id, now()],
        )

    def context_map(self, ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """The current in-context examples of each instruction (latest run that assigned any)."""
        q = "SELECT query_id, related_id FROM current_context"
        params: list[Any] = []
        if ids is not None:
            q += " WHERE query_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(ids))
        q += " ORDER BY query_id, rank"
        out: dict[str, list[str]] = {}
        for qid, rid in self.con.execute(q, params).fetchall():
            out.setdefault(qid, []).append(rid)
        return out

    def forget_parsed(self, request_keys: Sequence[str]) -> None:
        """Remove the pairs and generate-stage quarantine entries parsed from these stored replies,
        and mark the replies not yet ingested, so that a new parser can fold them in again. The raw
        replies themselves stay: nothing paid for is lost."""
        keys = list(request_keys)
        with self.transaction() as con:
            parsed = (
                "SELECT id FROM instructions WHERE json_extract_string(extra, '$.request_key') "
                "IN (SELECT unnest(?::VARCHAR[]))"
            )
            con.execute(f"DELETE FROM instruction_images WHERE ins_id IN ({parsed})", [keys])
            con.execute(f"DELETE FROM instructions WHERE id IN ({parsed})", [keys])
            con.execute(
                "DELETE FROM quarantine WHERE stage = 'generate' AND source IN (SELECT unnest(?::VARCHAR[]))",
                [keys],
            )
            con.execute(
                "UPDATE requests SET ingested = FALSE WHERE key IN (SELECT unnest(?::VARCHAR[]))", [keys]
            )

    def rollback_run(self, run_id: str) -> None:
        """Remove everything a failed run wrote, so the corpus is as it was before it."""
        with self.transaction() as con:
            con.execute(
                "DELETE FROM instruction_images WHERE ins_id IN (SELECT id FROM instructions WHERE run_id = ?)",
                [run_id],
            )
            con.execute("DELETE FROM instructions WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM context_sets WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM images WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM quarantine WHERE run_id = ?", [run_id])
            shards = [
                r[0]
                for r in con.execute("SELECT name FROM image_shards WHERE run_id = ?", [run_id]).fetchall()
            ]
            # Blobs written by this run are only referenced by this run's images (others were deduped
            # against existing blobs before writing), so the run's shards can go entirely.
            con.execute("DELETE FROM blobs WHERE shard IN (SELECT unnest(?::VARCHAR[]))", [shards])
            con.execute("DELETE FROM image_shards WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM runs WHERE id = ?", [run_id])
        for s in shards:
            fd = self._fds.pop(s, None)
            if fd is not None:
                os.close(fd)
            (self.images_dir / s).unlink(missing_ok=True)


class ImageShardWriter:
    """Streams images into new parquet shards and indexes them.

    ``add`` returns immediately; rows become visible in the corpus each time a shard is
    completed (every ``rows_per_shard`` images or ``bytes_per_shard`` bytes) and on ``close``.
    Identical bytes are stored once: a second id with the same sha256 points at the same blob.
    """

    def __init__(
        self,
        corpus: Corpus,
        run_id: str,
        *,
        rows_per_shard: int = 4096,
        bytes_per_shard: int = 512 << 20,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        source: str | None = None,
    ):
        if rows_per_shard < 1:
            raise SyphusError(f"--rows-per-shard: must be at least 1 (got {rows_per_shard})")
        self.corpus = corpus
        self.run_id = run_id
        self.rows_per_shard = rows_per_shard
        self.bytes_per_shard = bytes_per_shard
        self.max_pixels = max_pixels
        self.source = source
        self._shard: _ShardFile | None = None  # the shard being written, opened at its first image
        self._pending_sha: set[str] = set()
        self._ids: list[tuple[str, str]] = []  # (id, sha256) to commit with the next shard
        self._pending_ids: dict[str, str] = {}

    def add(
        self, image_id: str, data: bytes, *, where: str | None = None, info: ImageInfo | None = None
    ) -> str:
        """Add one image; returns 'added', 'existing' (same id, same bytes) or 'dedup'."""
        return self.add_batch([(image_id, data, where)], infos=[info] if info else None)[0]

    def add_batch(
        self, items: Sequence[tuple[str, bytes, str | None]], infos: Sequence[ImageInfo] | None = None
    ) -> list[str]:
        """Add (id, bytes, where) items with one lookup query for the whole batch.

        Returns per item 'added', 'existing' (same id already stored with the same bytes) or
        'dedup' (new id whose bytes are already stored). A bad item raises SyphusError before
        anything of the batch is buffered."""
        if infos is None:
            infos = [
                inspect_image(d, where=w or f"image '{i}'", max_pixels=self.max_pixels) for i, d, w in items
            ]
        ids = [i for i, _, _ in items]
        stored_ids = self.corpus.has_images([i for i in ids if i not in self._pending_ids])
        shas = [inf.sha256 for inf in infos]
        stored_shas = {
            r[0]
            for r in self.corpus.con.execute(
                "SELECT sha256 FROM blobs WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))", [shas]
            ).fetchall()
        }
        status: list[str] = []
        seen_in_batch: dict[str, str] = {}
        for (iid, _data, where), info in zip(items, infos, strict=True):
            prev = self._pending_ids.get(iid) or stored_ids.get(iid) or seen_in_batch.get(iid)
            if prev is not None:
                if prev == info.sha256:
                    status.append("existing")
                    continue
                raise SyphusError(f"{where or iid}: id '{iid}' is already in the corpus with different bytes")
            status.append("new")
            seen_in_batch[iid] = info.sha256
        for k, ((iid, data, _where), info) in enumerate(zip(items, infos, strict=True)):
            if status[k] != "new":
                continue
            if info.sha256 in self._pending_sha or info.sha256 in stored_shas:
                status[k] = "dedup"
            else:
                status[k] = "added"
                if self._shard is None:
                    name = f"shard-{now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
                    self._shard = _ShardFile(self.corpus.images_dir / name)
                self._shard.add(info, data)
                self._pending_sha.add(info.sha256)
            self._ids.append((iid, info.sha256))
            self._pending_ids[iid] = info.sha256
        if self._shard is not None and (
            len(self._shard.infos) >= self.rows_per_shard or self._shard.data_bytes >= self.bytes_per_shard
        ):
            self.flush()
        return status

    def flush(self) -> None:
        """Write the buffered images as one shard and commit their index rows."""
        shard, ids = self._shard, self._ids
        if shard is None and not ids:
            return
        shard_rows: list[tuple] = []
        shard_name = None
        nbytes = 0
        if shard is not None:
            final = shard.finish()
            shard_name = final.name
            nbytes = final.stat().st_size
            for k, (info, offset) in enumerate(zip(shard.infos, shard.offsets, strict=True)):
                shard_rows.append(
                    (
                        info.sha256,
                        shard_name,
                        k // ROWS_PER_GROUP,
                        k % ROWS_PER_GROUP,
                        offset,
                        info.nbytes,
                        info.width,
                        info.height,
                        info.format,
                    )
                )
        con = self.corpus.con
        with self.corpus.transaction():
            if shard_name:
                con.execute(
                    "INSERT INTO image_shards VALUES (?, ?, ?, ?)",
                    [shard_name, len(shard_rows), nbytes, self.run_id],
                )
                cols = list(zip(*shard_rows, strict=True))
                names = [
                    "sha256",
                    "shard",
                    "row_group",
                    "row_in_group",
                    "byte_offset",
                    "nbytes",
                    "width",
                    "height",
                    "format",
                ]
                con.register("_blob_batch", pa.table(dict(zip(names, cols, strict=True))))
                try:
                    con.execute(f"INSERT INTO blobs SELECT {', '.join(names)} FROM _blob_batch")
                finally:
                    con.unregister("_blob_batch")
            t = pa.table({"id": [i for i, _ in ids], "sha256": [s for _, s in ids]})
            con.register("_img_batch", t)
            try:
                con.execute(
                    "INSERT INTO images SELECT id, sha256, ?, ? FROM _img_batch", [self.source, self.run_id]
                )
            finally:
                con.unregister("_img_batch")
        self._shard, self._ids = None, []
        self._pending_sha.clear()
        self._pending_ids.clear()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ImageShardWriter:
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()


SHARD_SCHEMA = pa.schema(
    [pa.field("sha256", pa.string(), nullable=False), pa.field("bytes", pa.binary(), nullable=False)]
)


class _ShardFile:
    """One image shard written as images arrive: each full group of ``ROWS_PER_GROUP`` images
    goes to disk at once, so memory holds one group, not the shard (up to 512 MB).

    The file is ``NAME.partial`` until ``finish`` has located every image's byte offset, synced
    it and renamed it; a crash before that leaves a ``.partial`` that opening the corpus removes.
    """

    PROBE = 256  # leading and trailing bytes kept per image to find it in the file again

    def __init__(self, final: Path):
        self.final = final
        self.partial = final.with_name(final.name + ".partial")
        self.infos: list[ImageInfo] = []
        self.data_bytes = 0  # image bytes added so far
        self.offsets: list[int] = []
        self._probes: list[tuple[bytes, bytes]] = []  # (leading, trailing) bytes per image
        self._group: list[bytes] = []
        self._writer = pq.ParquetWriter(
            self.partial,
            SHARD_SCHEMA,
            compression={"sha256": "zstd", "bytes": "none"},
            use_dictionary=["sha256"],
            write_statistics=["sha256"],
            data_page_size=1 << 20,
        )

    def add(self, info: ImageInfo, data: bytes) -> None:
        self.infos.append(info)
        self.data_bytes += len(data)
        self._probes.append((data[: self.PROBE], data[-self.PROBE :]))
        self._group.append(data)
        if len(self._group) == ROWS_PER_GROUP:
            self._write_group()

    def _write_group(self) -> None:
        n = len(self._group)
        shas = [i.sha256 for i in self.infos[len(self.infos) - n :]]
        t = pa.table({"sha256": shas, "bytes": self._group}, schema=SHARD_SCHEMA)
        self._writer.write_table(t, row_group_size=ROWS_PER_GROUP)
        self._group = []

    def finish(self) -> Path:
        """Write the last group, locate every image, fsync and rename; returns the final path."""
        if self._group:
            self._write_group()
        self._writer.close()
        self.offsets = _locate_values(self.partial, self.infos, self._probes)
        with open(self.partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.partial, self.final)
        return self.final


def _locate_values(path: Path, infos: list[ImageInfo], probes: list[tuple[bytes, bytes]]) -> list[int]:
    """Find each image's offset in the file. Values of a plain-encoded, uncompressed binary
    column are stored verbatim, in order, each after its 4-byte little-endian length, so a
    forward search for an image's leading bytes from its row group's column chunk start finds
    it; the length prefix and the trailing bytes must match too, which rules out a false match
    without keeping (or re-hashing) the image itself."""
    md = pq.ParquetFile(path).metadata
    col = md.schema.names.index("bytes")
    offsets: list[int] = []
    k = 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        for rg in range(md.num_row_groups):
            pos = md.row_group(rg).column(col).data_page_offset
            for _ in range(md.row_group(rg).num_rows):
                n, (head, tail) = infos[k].nbytes, probes[k]
                while True:
                    p = blob.find(head, pos)
                    if p < 0:
                        raise RuntimeError(f"{path}: could not locate image {k} in its shard")
                    if (
                        p >= 4
                        and int.from_bytes(blob[p - 4 : p], "little") == n
                        and blob[p + n - len(tail) : p + n] == tail
                    ):
                        break
                    pos = p + 1
                offsets.append(p)
                pos = p + n
                k += 1
    return offsets
