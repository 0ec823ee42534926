"""The durable request log: every LLM request, keyed by what was asked, with its raw reply.

A response is first appended to a journal file next to the database (one ``write`` per reply,
so a ``kill -9`` right after it loses nothing: the bytes are in the OS page cache), then
folded into the ``requests`` table in batches, together with the pairs parsed from it, in one
DuckDB transaction. A single-row DuckDB commit costs ~5 ms here, which would cap a run at 200
replies a second; the journal keeps durability per reply and the database writes batched.
On open, a journal left by a killed run is replayed into the table.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

from curation.store import Corpus, InstructionRow, now

JOURNAL_NAME = "requests.journal"

DDL = """
CREATE TABLE IF NOT EXISTS requests (
    key VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, task VARCHAR, source_id VARCHAR,
    status VARCHAR NOT NULL, raw VARCHAR, finish_reason VARCHAR,
    prompt_tokens INTEGER, completion_tokens INTEGER, cost DOUBLE, error VARCHAR,
    attempts INTEGER NOT NULL DEFAULT 0, run_id VARCHAR, backend VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP, latency_s DOUBLE,
    ingested BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE IF NOT EXISTS request_batches (
    batch_id VARCHAR PRIMARY KEY, provider VARCHAR NOT NULL, api_base VARCHAR, model VARCHAR NOT NULL,
    keys JSON NOT NULL, status VARCHAR NOT NULL, run_id VARCHAR, created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP);
"""

COLUMNS = (
    "key", "model", "task", "source_id", "status", "raw", "finish_reason", "prompt_tokens",
    "completion_tokens", "cost", "error", "attempts", "run_id", "backend", "started_at",
    "finished_at", "latency_s",
)  # fmt: skip

ARROW_SCHEMA = pa.schema(
    [
        ("key", pa.string()), ("model", pa.string()), ("task", pa.string()), ("source_id", pa.string()),
        ("status", pa.string()), ("raw", pa.string()), ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()), ("cost", pa.float64()),
        ("error", pa.string()), ("attempts", pa.int32()), ("run_id", pa.string()), ("backend", pa.string()),
        ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")), ("latency_s", pa.float64()),
    ]
)  # fmt: skip


def request_key(model: str, messages: Sequence[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of what is asked: same question, same key, any run."""
    canon = json.dumps(
        {"model": model, "messages": list(messages), "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


@dataclass
class RequestRecord:
    """One row of the request log (a finished reply or a final error)."""

    key: str
    model: str
    status: str  # "done" or "error"
    task: str | None = None
    source_id: str | None = None
    raw: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    error: str | None = None
    attempts: int = 0
    run_id: str | None = None
    backend: str | None = None
    started_at: _dt.datetime | None = None
    finished_at: _dt.datetime | None = field(default_factory=now)
    latency_s: float | None = None

    def to_json(self) -> str:
        # shallow on purpose: asdict deep-copies the messages, a third of the log's CPU per reply
        d = {f.name: getattr(self, f.name) for f in _RECORD_FIELDS}
        for k in ("started_at", "finished_at"):
            if d[k] is not None:
                d[k] = d[k].isoformat()
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> RequestRecord:
        d = json.loads(line)
        for k in ("started_at", "finished_at"):
            if d.get(k):
                d[k] = _dt.datetime.fromisoformat(d[k])
        return cls(**d)


_RECORD_FIELDS = fields(RequestRecord)


@dataclass
class Ingest:
    """What a finished reply turned into: pairs for the corpus, or a quarantine entry."""

    run_id: str
    rows: list[InstructionRow] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)  # kwargs of Corpus.quarantine


class RequestLog:
    """The ``requests`` table of one corpus plus its journal. Single-threaded: call from one thread."""

    def __init__(self, corpus: Corpus, *, fold_every: int = 512):
        self.corpus = corpus
        self.con = corpus.con
        self.con.execute(DDL)
        self.journal_path = corpus.path / JOURNAL_NAME
        self.fold_every = fold_every
        self._pending: list[RequestRecord] = []
        self._ingest: dict[str, Ingest] = {}
        self.replayed = self._replay()
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- reading -------------------------------------------------------------------------------

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        if not keys:
            return set()
        rows = self.con.execute(
            "SELECT key FROM requests WHERE status = 'done' AND key IN (SELECT unnest(?::VARCHAR[]))", [keys]
        ).fetchall()
        return {r[0] for r in rows}

    def uningested(self, keys: Iterable[str]) -> list[RequestRecord]:
        """Finished replies among ``keys`` whose pairs are not yet in the corpus."""
        keys = list(keys)
        if not keys:
            return []
        cur = self.con.execute(
            f"SELECT {', '.join(COLUMNS)} FROM requests WHERE status = 'done' AND NOT ingested "
            "AND key IN (SELECT unnest(?::VARCHAR[]))",
            [keys],
        )
        return [RequestRecord(**dict(zip(COLUMNS, r, strict=True))) for r in cur.fetchall()]

    def done_records(self, keys: Iterable[str]) -> list[RequestRecord]:
        keys = list(keys)
        if not keys:
            return []
        cur = self.con.execute(
            f"SELECT {', '.join(COLUMNS)} FROM requests WHERE status = 'done' AND key IN (SELECT unnest(?::VARCHAR[]))",
            [keys],
        )
        return [RequestRecord(**dict(zip(COLUMNS, r, strict=True))) for r in cur.fetchall()]

    def mean_completion_tokens(self, model: str) -> float | None:
        row = self.con.execute(
            "SELECT avg(completion_tokens) FROM requests WHERE status = 'done' AND model = ?", [model]
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # -- writing -------------------------------------------------------------------------------

    def record(self, rec: RequestRecord, ingest: Ingest | None = None) -> None:
        """Make one reply durable now (journal) and queue it for the next fold into DuckDB."""
        os.write(self._fd, (rec.to_json() + "\n").encode("utf-8"))
        self._pending.append(rec)
        if ingest is not None:
            self._ingest[rec.key] = ingest
        if len(self._pending) >= self.fold_every:
            self.fold()

    def add_ingest(self, key: str, ingest: Ingest) -> None:
        """Queue pairs for a reply that is already in the table (resume, reparse)."""
        self._ingest[key] = ingest

    def fold(self) -> None:
        """Write queued replies and their pairs to DuckDB in one transaction; empty the journal."""
        if not self._pending and not self._ingest:
            return
        pending, ingest = self._pending, self._ingest
        with self.corpus.transaction() as con:
            if pending:
                _upsert(con, pending)
            by_run: dict[str, list[InstructionRow]] = {}
            for ing in ingest.values():
                by_run.setdefault(ing.run_id, []).extend(ing.rows)
                for q in ing.quarantine:
                    self.corpus.quarantine(stage="generate", run_id=ing.run_id, **q)
            for run_id, rows in by_run.items():
                self.corpus.add_instructions(rows, run_id=run_id)
            if ingest:
                con.execute(
                    "UPDATE requests SET ingested = TRUE WHERE key IN (SELECT unnest(?::VARCHAR[]))",
                    [list(ingest)],
                )
        os.fsync(self._fd)
        os.ftruncate(self._fd, 0)
        self._pending, self._ingest = [], {}

    def close(self) -> None:
        if self._fd >= 0:
            self.fold()
            os.close(self._fd)
            self._fd = -1

    def _replay(self) -> int:
        """Fold a journal a killed run left behind. Idempotent: a finished row is never overwritten."""
        if not self.journal_path.exists():
            return 0
        recs = []
        with open(self.journal_path, encoding="utf-8") as f:
            for line in f:
                if line.endswith("\n"):  # a line cut by a crash mid-write was never acknowledged
                    recs.append(RequestRecord.from_json(line))
        if recs:
            with self.corpus.transaction() as con:
                _upsert(con, recs)
        self.journal_path.unlink()
        return len(recs)

    # -- batch jobs ----------------------------------------------------------------------------

    def open_batches(self, provider: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT batch_id, provider, api_base, model, keys, status FROM request_batches WHERE status = 'open'"
        params: list[Any] = []
        if provider:
            q += " AND provider = ?"
            params.append(provider)
        out = []
        for bid, prov, base, model, keys, status in self.con.execute(
            q + " ORDER BY created_at", params
        ).fetchall():
            out.append(
                {
                    "batch_id": bid,
                    "provider": prov,
                    "api_base": base,
                    "model": model,
                    "keys": json.loads(keys),
                    "status": status,
                }
            )
        return out

    def add_batch(
        self, batch_id: str, provider: str, api_base: str, model: str, keys: list[str], run_id: str
    ) -> None:
        self.con.execute(
            "INSERT INTO request_batches VALUES (?, ?, ?, ?, ?, 'open', ?, ?, NULL)",
            [batch_id, provider, api_base, model, json.dumps(keys), run_id, now()],
        )

    def close_batch(self, batch_id: str, status: str) -> None:
        self.con.execute(
            "UPDATE request_batches SET status = ?, finished_at = ? WHERE batch_id = ?",
            [status, now(), batch_id],
        )


def _upsert(con, recs: list[RequestRecord]) -> None:
    # Last record per key wins inside one batch; an existing 'done' row is never replaced.
    last: dict[str, RequestRecord] = {}
    for r in recs:
        if r.key in last and last[r.key].status == "done" and r.status != "done":
            continue
        last[r.key] = r
    cols = {c: [getattr(r, c) for r in last.values()] for c in COLUMNS}
    table = pa.table(cols, schema=ARROW_SCHEMA)
    con.register("_req_batch", table)
    try:
        sets = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "key")
        con.execute(
            f"INSERT INTO requests ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM _req_batch "
            f"ON CONFLICT (key) DO UPDATE SET {sets} WHERE requests.status <> 'done'"
        )
    finally:
        con.unregister("_req_batch")
