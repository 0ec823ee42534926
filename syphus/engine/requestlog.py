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

from curation.schema import RequestRecord
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
        self.journal_path = corpus.path / JOURNAL_NAME
        self.fold_every = fold_every
        self._pending: list[RequestRecord] = []
        self._ingest: dict[str, Ingest] = {}
        self.replayed = self._replay()
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- reading -------------------------------------------------------------------------------

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        return self.corpus.done_request_keys(list(keys))

    def uningested(self, keys: Iterable[str]) -> list[RequestRecord]:
        """Finished replies among ``keys`` whose pairs are not yet in the corpus."""
        return self.corpus.request_records(list(keys), uningested_only=True)

    def done_records(self, keys: Iterable[str]) -> list[RequestRecord]:
        return self.corpus.request_records(list(keys))

    def mean_completion_tokens(self, model: str) -> float | None:
        return self.corpus.mean_completion_tokens(model)

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
        with self.corpus.transaction():
            if pending:
                self.corpus.upsert_requests(pending)
            by_run: dict[str, list[InstructionRow]] = {}
            for ing in ingest.values():
                by_run.setdefault(ing.run_id, []).extend(ing.rows)
                for q in ing.quarantine:
                    self.corpus.quarantine(stage="generate", run_id=ing.run_id, **q)
            for run_id, rows in by_run.items():
                self.corpus.add_instructions(rows, run_id=run_id)
            if ingest:
                self.corpus.mark_ingested(list(ingest))
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
            with self.corpus.transaction():
                self.corpus.upsert_requests(recs)
        self.journal_path.unlink()
        return len(recs)

    # -- batch jobs ----------------------------------------------------------------------------

    def open_batches(self, provider: str | None = None) -> list[dict[str, Any]]:
        return self.corpus.open_request_batches(provider)

    def add_batch(
        self, batch_id: str, provider: str, api_base: str, model: str, keys: list[str], run_id: str
    ) -> None:
        self.corpus.add_request_batch(batch_id, provider, api_base, model, keys, run_id)

    def close_batch(self, batch_id: str, status: str) -> None:
        self.corpus.close_request_batch(batch_id, status)
