"""Every table of a corpus, in one place: the store creates them all when it opens a corpus.

Stages read and write these tables through ``curation.store.Corpus``; no other module creates a
table. The ``requests`` table is defined by its row type, ``RequestRecord``: its SQL columns, its
Arrow schema and the column list the request log writes are all derived from the dataclass.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

# Still 1: the tables a stage used to create on first use (requests, request_batches, embeddings)
# are now created with the corpus, which an older syphus reads unchanged; so is ``scores``, created
# in a corpus that lacks it when it is next opened for writing (read-only: an empty stand-in).
SCHEMA_VERSION = 1


def now() -> _dt.datetime:
    """UTC now without a time zone: the form every TIMESTAMP column of the corpus holds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _column(sql: str, arrow: pa.DataType, default: Any = None, **kw) -> Any:
    """A dataclass field that also carries its SQL column type and its Arrow type."""
    return field(default=default, metadata={"sql": sql, "arrow": arrow}, **kw)


@dataclass
class RequestRecord:
    """One row of the request log (a finished reply or a final error)."""

    key: str = field(metadata={"sql": "VARCHAR PRIMARY KEY", "arrow": pa.string()})
    model: str = field(metadata={"sql": "VARCHAR NOT NULL", "arrow": pa.string()})
    status: str = field(metadata={"sql": "VARCHAR NOT NULL", "arrow": pa.string()})  # "done" or "error"
    task: str | None = _column("VARCHAR", pa.string())
    source_id: str | None = _column("VARCHAR", pa.string())
    raw: str | None = _column("VARCHAR", pa.string())
    finish_reason: str | None = _column("VARCHAR", pa.string())
    prompt_tokens: int = _column("INTEGER", pa.int32(), 0)
    completion_tokens: int = _column("INTEGER", pa.int32(), 0)
    cost: float = _column("DOUBLE", pa.float64(), 0.0)
    error: str | None = _column("VARCHAR", pa.string())
    attempts: int = _column("INTEGER NOT NULL DEFAULT 0", pa.int32(), 0)
    run_id: str | None = _column("VARCHAR", pa.string())
    backend: str | None = _column("VARCHAR", pa.string())
    started_at: _dt.datetime | None = _column("TIMESTAMP", pa.timestamp("us"))
    finished_at: _dt.datetime | None = field(
        default_factory=now, metadata={"sql": "TIMESTAMP", "arrow": pa.timestamp("us")}
    )
    latency_s: float | None = _column("DOUBLE", pa.float64())

    def to_json(self) -> str:
        # shallow on purpose: asdict deep-copies the messages, a third of the log's CPU per reply
        d = {f.name: getattr(self, f.name) for f in _REQUEST_FIELDS}
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


_REQUEST_FIELDS = fields(RequestRecord)
REQUEST_COLUMNS = tuple(f.name for f in _REQUEST_FIELDS)
REQUEST_ARROW_SCHEMA = pa.schema([(f.name, f.metadata["arrow"]) for f in _REQUEST_FIELDS])
_REQUEST_SQL = ", ".join(f"{f.name} {f.metadata['sql']}" for f in _REQUEST_FIELDS)

TABLES = {
    "store_meta": "key VARCHAR PRIMARY KEY, value VARCHAR",
    # what ran, with which config and versions
    "runs": "id VARCHAR PRIMARY KEY, command VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL, "
    "finished_at TIMESTAMP, status VARCHAR NOT NULL, config JSON, versions JSON, summary JSON",
    # image storage: shard files, one row per distinct bytes (blob), ids pointing at blobs
    "image_shards": "name VARCHAR PRIMARY KEY, rows INTEGER NOT NULL, nbytes BIGINT NOT NULL, run_id VARCHAR",
    "blobs": "sha256 VARCHAR PRIMARY KEY, shard VARCHAR NOT NULL, row_group INTEGER NOT NULL, "
    "row_in_group INTEGER NOT NULL, byte_offset BIGINT NOT NULL, nbytes BIGINT NOT NULL, "
    "width INTEGER, height INTEGER, format VARCHAR",
    "images": "id VARCHAR PRIMARY KEY, sha256 VARCHAR NOT NULL, source VARCHAR, run_id VARCHAR",
    # instruction-response pairs, their ordered images, their in-context examples, their flags
    "instructions": "id VARCHAR PRIMARY KEY, task VARCHAR NOT NULL, instruction VARCHAR NOT NULL, "
    "answer VARCHAR NOT NULL, lang VARCHAR NOT NULL DEFAULT 'en', parent_id VARCHAR, "
    "source_id VARCHAR, run_id VARCHAR, extra JSON",
    "instruction_images": "ins_id VARCHAR NOT NULL, pos INTEGER NOT NULL, image_id VARCHAR NOT NULL, "
    "PRIMARY KEY (ins_id, pos)",
    "context_sets": "query_id VARCHAR NOT NULL, rank INTEGER NOT NULL, related_id VARCHAR NOT NULL, "
    "score DOUBLE, method VARCHAR NOT NULL, run_id VARCHAR NOT NULL, "
    "PRIMARY KEY (query_id, run_id, method, rank)",
    "instruction_flags": "ins_id VARCHAR NOT NULL, flag VARCHAR NOT NULL, reason VARCHAR, run_id VARCHAR, "
    "active BOOLEAN NOT NULL DEFAULT TRUE, PRIMARY KEY (ins_id, flag)",
    # outputs that could not be parsed or imported, with the reason
    "quarantine": "id VARCHAR PRIMARY KEY, stage VARCHAR NOT NULL, source VARCHAR, record_id VARCHAR, "
    "reason VARCHAR NOT NULL, raw VARCHAR, run_id VARCHAR, created_at TIMESTAMP NOT NULL",
    # the generation log (syphus/engine/requestlog.py): one row per request key
    "requests": _REQUEST_SQL + ", ingested BOOLEAN NOT NULL DEFAULT FALSE",
    "request_batches": "batch_id VARCHAR PRIMARY KEY, provider VARCHAR NOT NULL, api_base VARCHAR, "
    "model VARCHAR NOT NULL, keys JSON NOT NULL, status VARCHAR NOT NULL, run_id VARCHAR, "
    "created_at TIMESTAMP NOT NULL, finished_at TIMESTAMP",
    # the embedding cache (Corpus.store_vectors / load_vectors): one float16 vector per (model, kind, content key)
    "embeddings": "model VARCHAR NOT NULL, kind VARCHAR NOT NULL, key VARCHAR NOT NULL, dim INTEGER NOT NULL, "
    "vec BLOB NOT NULL, run_id VARCHAR, PRIMARY KEY (model, kind, key)",
    # a judge's verdict per pair (syphus score): one row per (pair, judge model, rubric text)
    "scores": "instruction_id VARCHAR NOT NULL, judge_model VARCHAR NOT NULL, rubric_sha256 VARCHAR NOT NULL, "
    "score DOUBLE NOT NULL, scale_max DOUBLE NOT NULL, reason VARCHAR, request_key VARCHAR, run_id VARCHAR, "
    "created_at TIMESTAMP NOT NULL, PRIMARY KEY (instruction_id, judge_model, rubric_sha256)",
}

VIEWS = {
    # the context set of each instruction from the latest run that assigned it any
    "current_context": """
    WITH ranked AS (
        SELECT cs.query_id, cs.run_id, cs.method,
               row_number() OVER (PARTITION BY cs.query_id ORDER BY r.started_at DESC, cs.run_id DESC, cs.method) AS rn
        FROM (SELECT DISTINCT query_id, run_id, method FROM context_sets) cs JOIN runs r ON r.id = cs.run_id)
    SELECT c.* FROM context_sets c JOIN ranked k
        ON k.query_id = c.query_id AND k.run_id = c.run_id AND k.method = c.method AND k.rn = 1""",
    # instructions no active flag excludes: what export, retrieval and mix use
    "active_instructions": """
    SELECT * FROM instructions i
    WHERE NOT EXISTS (SELECT 1 FROM instruction_flags f WHERE f.ins_id = i.id AND f.active)""",
}


def create_statements(*, temporary: bool = False, only: set[str] | None = None) -> str:
    """The DDL of the tables (all, or ``only`` these), then of the views unless ``temporary``.

    ``temporary`` creates empty TEMP tables: a read-only connection may create those, which lets
    a corpus written by an older syphus, that lacks a table, be read as if the table were empty."""
    kind = "TEMP TABLE" if temporary else "TABLE"
    out = [
        f"CREATE {kind} IF NOT EXISTS {name} ({cols});"
        for name, cols in TABLES.items()
        if only is None or name in only
    ]
    if not temporary:
        out += [f"CREATE OR REPLACE VIEW {name} AS {sql};" for name, sql in VIEWS.items()]
    return "\n".join(out)
