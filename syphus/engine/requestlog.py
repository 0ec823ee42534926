"""The durable request log: every LLM request, keyed by what was asked, with its raw reply.

A response is first appended to a journal file next to the database (one ``write`` per reply,
so a ``kill -9`` right after it loses nothing: the bytes are in the OS page cache), then
folded into the ``requests`` table in batches, together with the pairs parsed from it, in one
DuckDB transaction. A single-row DuckDB commit costs ~5 ms here, which would cap a run at 200
replies a second; the journal keeps durability per reply and the database writes batched.
On open, a journal left by a killed run is replayed into the table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from curation.schema import REQUEST_ARROW_SCHEMA, REQUEST_COLUMNS, RequestRecord, now
from curation.store import Corpus, InstructionRow

__all__ = ["Ingest", "RequestLog", "RequestRecord", "request_key"]

JOURNAL_NAME = "requests.journal"


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
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE status = 'done' AND NOT ingested "
            "AND key IN (SELECT unnest(?::VARCHAR[]))",
            [keys],
        )
        return [RequestRecord(**dict(zip(REQUEST_COLUMNS, r, strict=True))) for r in cur.fetchall()]

    def done_records(self, keys: Iterable[str]) -> list[RequestRecord]:
        keys = list(keys)
        if not keys:
            return []
        cur = self.con.execute(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE status = 'done' AND key IN (SELECT unnest(?::VARCHAR[]))",
            [keys],
        )
        return [RequestRecord(**dict(zip(REQUEST_COLUMNS, r, strict=True))) for r in cur.fetchall()]

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
    cols = {c: [getattr(r, c) for r in last.values()] for c in REQUEST_COLUMNS}
    table = pa.table(cols, schema=REQUEST_ARROW_SCHEMA)
    con.register("_req_batch", table)
    try:
        sets = ", ".join(f"{c} = excluded.{c}" for c in REQUEST_COLUMNS if c != "key")
        con.execute(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) SELECT {', '.join(REQUEST_COLUMNS)} FROM _req_batch "
            f"ON CONFLICT (key) DO UPDATE SET {sets} WHERE requests.status <> 'done'"
        )
    finally:
        con.unregister("_req_batch")
