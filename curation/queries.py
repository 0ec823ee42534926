"""What the stages ask of a corpus, as methods of ``Corpus`` (this class is one of its bases).

The tables are defined in ``curation/schema.py``; the queries other modules need (curate,
retrieve, export, translate, stats, the report) live here, so a change to a table is made in the
store and nowhere else. Each method returns plain data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from curation.schema import REQUEST_ARROW_SCHEMA, REQUEST_COLUMNS, RequestRecord, now


@dataclass
class StoredPair:
    """One instruction-response pair as the corpus holds it, with its ordered image ids."""

    id: str
    task: str
    instruction: str
    answer: str
    lang: str
    image_ids: list[str]
    extra: dict[str, Any] | None = None


@dataclass
class CorpusStats:
    instructions: int
    by_task_lang: list[tuple[str, str, int]]
    images: int
    unique_blobs: int
    image_bytes: int
    shards: int
    missing_image_refs: int
    missing_context_refs: int
    flagged: int
    quarantined: int
    runs: list[tuple[str, str, str]] = field(default_factory=list)


def text_key(text: str) -> str:
    """The embedding-cache key of an instruction text: its sha256, so an edited text gets a fresh
    vector (an image's key is the sha256 of its bytes, so identical bytes are embedded once)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ImageItem:
    """Where one distinct image's bytes live (read by DataLoader workers with one pread)."""

    key: str  # sha256
    path: str
    offset: int
    nbytes: int
    image_id: str  # one id carrying these bytes, for error messages


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


class CorpusQueries:
    con: duckdb.DuckDBPyConnection
    images_dir: Any  # a Path, set by Corpus

    # -- instruction-response pairs ------------------------------------------------------------

    def pairs(
        self,
        ids: Sequence[str] | None = None,
        *,
        tasks: Sequence[str] | None = None,
        lang: str | None = None,
        request_keys: Sequence[str] | None = None,
        active_only: bool = False,
    ) -> list[StoredPair]:
        """Pairs with their image ids, in id order: all of them, or those matching every filter
        given (ids, tasks, a language, the generation requests they came from). ``active_only``
        leaves out pairs an active curate flag excludes."""
        where, params = ["true"], []
        if ids is not None:
            where.append("i.id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(ids))
        if tasks is not None:
            where.append("i.task IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(tasks))
        if lang is not None:
            where.append("i.lang = ?")
            params.append(lang)
        if request_keys is not None:
            where.append("json_extract_string(i.extra, '$.request_key') IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(request_keys))
        table = "active_instructions" if active_only else "instructions"
        rows = self.con.execute(
            "SELECT i.id, i.task, i.instruction, i.answer, i.lang, CAST(i.extra AS VARCHAR), "
            "coalesce((SELECT list(image_id ORDER BY pos) FROM instruction_images x WHERE x.ins_id = i.id), []) "
            f"FROM {table} i WHERE {' AND '.join(where)} ORDER BY i.id",
            params,
        ).fetchall()
        return [
            StoredPair(r[0], r[1], r[2], r[3], r[4], list(r[6]), json.loads(r[5]) if r[5] else None)
            for r in rows
        ]

    def pair_keys(
        self,
        *,
        tasks: Sequence[str] | None = None,
        langs: Sequence[str] | None = None,
        active_only: bool = True,
    ) -> list[tuple[str, str, str]]:
        """(id, task, lang) of the pairs of these tasks and languages, ordered by task and id."""
        where, params = ["true"], []
        if tasks:
            where.append("task IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(tasks))
        if langs:
            where.append("lang IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(langs))
        table = "active_instructions" if active_only else "instructions"
        return [
            tuple(r)
            for r in self.con.execute(
                f"SELECT id, task, lang FROM {table} WHERE {' AND '.join(where)} ORDER BY task, id", params
            ).fetchall()
        ]

    def existing_instructions(self, ids: Sequence[str]) -> set[str]:
        """Which of these instruction ids the corpus holds."""
        if not ids:
            return set()
        return {
            r[0]
            for r in self.con.execute(
                "SELECT id FROM instructions WHERE id IN (SELECT unnest(?::VARCHAR[]))", [list(ids)]
            ).fetchall()
        }

    def task_names(self, *, active_only: bool = False) -> list[str]:
        table = "active_instructions" if active_only else "instructions"
        return [r[0] for r in self.con.execute(f"SELECT DISTINCT task FROM {table} ORDER BY task").fetchall()]

    def pairs_missing_images(self, tasks: Sequence[str], *, active_only: bool = False) -> set[str]:
        """Ids of the pairs of these tasks that name an image the corpus lacks."""
        table = "active_instructions" if active_only else "instructions"
        return {
            r[0]
            for r in self.con.execute(
                f"SELECT DISTINCT x.ins_id FROM instruction_images x JOIN {table} i ON i.id = x.ins_id "
                "WHERE i.task IN (SELECT unnest(?::VARCHAR[])) AND x.image_id NOT IN (SELECT id FROM images)",
                [list(tasks)],
            ).fetchall()
        }

    def answered_sources(self, request_keys: Sequence[str]) -> set[tuple[str, str, str]]:
        """(request key, task, source id) of every annotation these generation requests already
        gave pairs to, or whose reply was quarantined."""
        return set(
            self.con.execute(
                "SELECT json_extract_string(extra, '$.request_key'), task, source_id FROM instructions "
                "WHERE json_extract_string(extra, '$.request_key') IN (SELECT unnest(?::VARCHAR[])) "
                "UNION SELECT q.source, r.task, q.record_id FROM quarantine q JOIN requests r ON r.key = q.source "
                "WHERE q.stage = 'generate' AND q.source IN (SELECT unnest(?::VARCHAR[]))",
                [list(request_keys), list(request_keys)],
            ).fetchall()
        )

    def first_image_id(self) -> str | None:
        """The smallest image id, to show the corpus's naming in a message; None when there are none."""
        row = self.con.execute("SELECT min(id) FROM images").fetchone()
        return row[0] if row else None

    def count_active(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM active_instructions").fetchone()[0])

    def image_sha256(self) -> dict[str, str]:
        """image id -> sha256 of its bytes, for every image."""
        return dict(self.con.execute("SELECT id, sha256 FROM images").fetchall())

    # -- the embedding cache: one float16 vector per (model, kind, content key) ------------------

    def image_items(self) -> list[ImageItem]:
        """Every distinct image (by bytes) with where its bytes are, in shard order."""
        rows = self.con.execute(
            "SELECT b.sha256, b.shard, b.byte_offset, b.nbytes, min(i.id) FROM blobs b JOIN images i USING (sha256) "
            "GROUP BY ALL ORDER BY b.shard, b.byte_offset"
        ).fetchall()
        return [ImageItem(r[0], f"{self.images_dir}/{r[1]}", r[2], r[3], r[4]) for r in rows]

    def text_items(self) -> dict[str, str]:
        """key -> instruction text, for every distinct instruction text in the corpus."""
        out: dict[str, str] = {}
        for (text,) in self.con.execute(
            "SELECT DISTINCT instruction FROM instructions ORDER BY instruction"
        ).fetchall():
            out[text_key(text)] = text
        return out

    def cached_keys(self, model: str, kind: str) -> set[str]:
        return {
            r[0]
            for r in self.con.execute(
                "SELECT key FROM embeddings WHERE model = ? AND kind = ?", [model, kind]
            ).fetchall()
        }

    def store_vectors(
        self, model: str, kind: str, keys: Sequence[str], vecs: np.ndarray, run_id: str | None
    ) -> int:
        """Insert vectors (already L2-normalised) as float16; keys already cached are left as they are."""
        if len(keys) == 0:
            return 0
        v16 = np.ascontiguousarray(vecs, dtype=np.float16)
        dim = v16.shape[1]
        blobs = [row.tobytes() for row in v16]
        t = pa.table({"key": list(keys), "vec": pa.array(blobs, pa.binary())})
        self.con.register("_emb_batch", t)
        try:
            self.con.execute(
                "INSERT OR IGNORE INTO embeddings SELECT ?, ?, key, ?, vec, ? FROM _emb_batch",
                [model, kind, dim, run_id],
            )
        finally:
            self.con.unregister("_emb_batch")
        return len(keys)

    def load_vectors(
        self, model: str, kind: str, keys: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """(keys, float32 matrix) for the cached vectors of one model; all of them or the given keys."""
        q = "SELECT key, dim, vec FROM embeddings WHERE model = ? AND kind = ?"
        params: list = [model, kind]
        if keys is not None:
            q += " AND key IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(keys))
        rel = self.con.sql(q + " ORDER BY key", params=params)
        t = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        if t.num_rows == 0:
            return [], np.zeros((0, 0), np.float32)
        dims = set(t.column("dim").to_pylist())
        if len(dims) != 1:
            raise RuntimeError(f"embedding cache for {model}/{kind} mixes dimensions {sorted(dims)}")
        dim = dims.pop()
        col = t.column("vec").combine_chunks()
        offs = np.frombuffer(col.buffers()[1], dtype=np.int32, count=len(col) + 1, offset=col.offset * 4)
        data = np.frombuffer(col.buffers()[2], dtype=np.uint8)[offs[0] : offs[-1]]
        mat = data.view(np.float16).reshape(len(col), dim).astype(np.float32)
        return t.column("key").to_pylist(), mat

    # -- the generation request log (its journal is syphus/engine/requestlog.py) -----------------

    def request_records(self, keys: Sequence[str], *, uningested_only: bool = False) -> list[RequestRecord]:
        """The finished replies among ``keys``; with ``uningested_only``, those whose pairs are not
        yet in the corpus."""
        if not keys:
            return []
        cols = ", ".join(REQUEST_COLUMNS)
        cur = self.con.execute(
            f"SELECT {cols} FROM requests WHERE status = 'done'{' AND NOT ingested' if uningested_only else ''} "
            "AND key IN (SELECT unnest(?::VARCHAR[]))",
            [list(keys)],
        )
        return [RequestRecord(**dict(zip(REQUEST_COLUMNS, r, strict=True))) for r in cur.fetchall()]

    def done_request_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = self.con.execute(
            "SELECT key FROM requests WHERE status = 'done' AND key IN (SELECT unnest(?::VARCHAR[]))",
            [list(keys)],
        ).fetchall()
        return {r[0] for r in rows}

    def mean_completion_tokens(self, model: str) -> float | None:
        row = self.con.execute(
            "SELECT avg(completion_tokens) FROM requests WHERE status = 'done' AND model = ?", [model]
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def upsert_requests(self, recs: Sequence[RequestRecord]) -> None:
        """Write request rows; the last record per key wins, and a 'done' row is never replaced."""
        last: dict[str, RequestRecord] = {}
        for r in recs:
            if r.key in last and last[r.key].status == "done" and r.status != "done":
                continue
            last[r.key] = r
        cols = {c: [getattr(r, c) for r in last.values()] for c in REQUEST_COLUMNS}
        self.con.register("_req_batch", pa.table(cols, schema=REQUEST_ARROW_SCHEMA))
        try:
            names = ", ".join(REQUEST_COLUMNS)
            sets = ", ".join(f"{c} = excluded.{c}" for c in REQUEST_COLUMNS if c != "key")
            self.con.execute(
                f"INSERT INTO requests ({names}) SELECT {names} FROM _req_batch "
                f"ON CONFLICT (key) DO UPDATE SET {sets} WHERE requests.status <> 'done'"
            )
        finally:
            self.con.unregister("_req_batch")

    def mark_ingested(self, keys: Sequence[str]) -> None:
        """Record that the pairs of these replies are in the corpus."""
        self.con.execute(
            "UPDATE requests SET ingested = TRUE WHERE key IN (SELECT unnest(?::VARCHAR[]))", [list(keys)]
        )

    def open_request_batches(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Provider batch jobs submitted and not yet collected, oldest first."""
        q = "SELECT batch_id, provider, api_base, model, keys, status FROM request_batches WHERE status = 'open'"
        params: list[Any] = []
        if provider:
            q += " AND provider = ?"
            params.append(provider)
        return [
            {"batch_id": bid, "provider": prov, "api_base": base, "model": model, "keys": json.loads(keys),
             "status": status}
            for bid, prov, base, model, keys, status in self.con.execute(q + " ORDER BY created_at", params).fetchall()
        ]  # fmt: skip

    def add_request_batch(
        self, batch_id: str, provider: str, api_base: str, model: str, keys: list[str], run_id: str
    ) -> None:
        self.con.execute(
            "INSERT INTO request_batches VALUES (?, ?, ?, ?, ?, 'open', ?, ?, NULL)",
            [batch_id, provider, api_base, model, json.dumps(keys), run_id, now()],
        )

    def close_request_batch(self, batch_id: str, status: str) -> None:
        self.con.execute(
            "UPDATE request_batches SET status = ?, finished_at = ? WHERE batch_id = ?",
            [status, now(), batch_id],
        )

    # -- context sets and flags ------------------------------------------------------------------

    def context_excluding(self, method_excluded: str) -> dict[str, list[str]]:
        """Per query id, the related ids of the latest run that assigned any by a method other
        than ``method_excluded``, in rank order."""
        rows = self.con.execute(
            """
            WITH cand AS (
                SELECT DISTINCT cs.query_id, cs.run_id, r.started_at
                FROM context_sets cs JOIN runs r ON r.id = cs.run_id WHERE cs.method <> $1),
            best AS (SELECT query_id, arg_max(run_id, started_at) AS run_id FROM cand GROUP BY query_id)
            SELECT cs.query_id, cs.related_id FROM context_sets cs JOIN best b USING (query_id, run_id)
            WHERE cs.method <> $1 ORDER BY cs.query_id, cs.rank
            """,
            [method_excluded],
        ).fetchall()
        out: dict[str, list[str]] = {}
        for q, r in rows:
            out.setdefault(q, []).append(r)
        return out

    def set_flags(self, flags: Sequence[tuple[str, str, str]], run_id: str) -> None:
        """Raise (ins_id, flag, reason) flags for a curate run; a flag raised before is updated."""
        if flags:
            self.con.executemany(
                "INSERT INTO instruction_flags (ins_id, flag, reason, run_id, active) VALUES (?, ?, ?, ?, TRUE) "
                "ON CONFLICT (ins_id, flag) DO UPDATE SET reason = excluded.reason, run_id = excluded.run_id, "
                "active = TRUE",
                [(i, f, r, run_id) for i, f, r in flags],
            )

    def clear_flags(self, *, flag: str | None = None, run_id: str | None = None) -> int:
        """Deactivate active flags (all, one kind, or one curate run's); returns how many."""
        where, params = ["active"], []
        if flag:
            where.append("flag = ?")
            params.append(flag)
        if run_id:
            where.append("run_id = ?")
            params.append(run_id)
        cond = " AND ".join(where)
        n = self.con.execute(f"SELECT count(*) FROM instruction_flags WHERE {cond}", params).fetchone()[0]
        self.con.execute(f"UPDATE instruction_flags SET active = FALSE WHERE {cond}", params)
        return int(n)

    # -- judge scores (syphus score) ---------------------------------------------------------------

    def add_scores(self, rows: pa.Table) -> None:
        """Store judge verdicts (columns of the ``scores`` table); a verdict given before for the
        same (pair, judge, rubric) is replaced. One Arrow insert: thousands of rows per call."""
        if rows.num_rows == 0:
            return
        self.con.register("_scores_in", rows)
        try:
            self.con.execute(
                "INSERT OR REPLACE INTO scores (instruction_id, judge_model, rubric_sha256, score, scale_max, "
                "reason, request_key, run_id, created_at) SELECT instruction_id, judge_model, rubric_sha256, "
                "score, scale_max, reason, request_key, run_id, created_at FROM _scores_in"
            )
        finally:
            self.con.unregister("_scores_in")

    def scored_ids(self, judge: str, rubric_sha256: str) -> set[str]:
        """Pairs this judge has scored under this rubric."""
        return {
            r[0]
            for r in self.con.execute(
                "SELECT instruction_id FROM scores WHERE judge_model = ? AND rubric_sha256 = ?",
                [judge, rubric_sha256],
            ).fetchall()
        }

    def quarantined_sources(self, stage: str) -> set[str]:
        """The sources (request keys) of one stage's quarantine rows."""
        return {
            r[0]
            for r in self.con.execute(
                "SELECT DISTINCT source FROM quarantine WHERE stage = ? AND source IS NOT NULL", [stage]
            ).fetchall()
        }

    def score_judges(self) -> list[str]:
        """The judge models that scored pairs of this corpus."""
        return [
            r[0] for r in self.con.execute("SELECT DISTINCT judge_model FROM scores ORDER BY 1").fetchall()
        ]

    def latest_scores(self, judge: str | None = None) -> list[tuple[str, float, float, str, str]]:
        """Per scored pair, its most recent verdict (of ``judge`` when given): (instruction id,
        score, scale max, judge model, rubric sha256), in id order."""
        where, params = "WHERE instruction_id IN (SELECT id FROM instructions)", []
        if judge:
            where, params = where + " AND judge_model = ?", [judge]
        return [
            tuple(r)
            for r in self.con.execute(
                "SELECT instruction_id, arg_max(score, created_at), arg_max(scale_max, created_at), "
                "arg_max(judge_model, created_at), arg_max(rubric_sha256, created_at) "
                f"FROM scores {where} GROUP BY instruction_id ORDER BY instruction_id",
                params,
            ).fetchall()
        ]

    def scores_of(self, ins_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The most recent verdict of each of these pairs (those scored): score, scale_max,
        reason, judge_model, rubric_sha256."""
        if not ins_ids:
            return {}
        rows = _rows(
            self.con.execute(
                "SELECT instruction_id, score, scale_max, reason, judge_model, rubric_sha256 FROM ("
                "SELECT *, row_number() OVER (PARTITION BY instruction_id ORDER BY created_at DESC, judge_model) AS rn "
                "FROM scores WHERE instruction_id IN (SELECT unnest(?::VARCHAR[]))) WHERE rn = 1",
                [list(ins_ids)],
            )
        )
        return {r.pop("instruction_id"): r for r in rows}

    def score_histograms(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Per task, how many pairs got each (rounded) score in their most recent verdict, the
        scale and how many pairs have no verdict: {task: {"bins": {score: n}, "scale_max", "unscored"}}."""
        where, params = self._of_run(run_id, "i")
        rows = self.con.execute(
            "WITH latest AS (SELECT instruction_id, arg_max(score, created_at) AS score, "
            "arg_max(scale_max, created_at) AS scale_max FROM scores GROUP BY instruction_id) "
            "SELECT i.task, round(l.score) AS bin, max(l.scale_max), count(*) FROM instructions i "
            f"LEFT JOIN latest l ON l.instruction_id = i.id WHERE true{where} GROUP BY 1, 2 ORDER BY 1, 2",
            params,
        ).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for task, b, scale, n in rows:
            h = out.setdefault(task, {"bins": {}, "scale_max": 0.0, "unscored": 0})
            if b is None:
                h["unscored"] += int(n)
            else:
                h["bins"][float(b)] = int(n)
                h["scale_max"] = max(h["scale_max"], float(scale))
        return {t: h for t, h in out.items() if h["bins"]}

    # -- whole-corpus counts -----------------------------------------------------------------------

    def stats(self) -> CorpusStats:
        """Counts that tell whether a corpus is whole: per task and language, images, dangling references."""
        q = self.con.execute

        def one(sql: str) -> int:
            return int(q(sql).fetchone()[0] or 0)

        return CorpusStats(
            instructions=one("SELECT count(*) FROM instructions"),
            by_task_lang=[
                tuple(r)
                for r in q(
                    "SELECT task, lang, count(*) FROM instructions GROUP BY 1, 2 ORDER BY 1, 2"
                ).fetchall()
            ],
            images=one("SELECT count(*) FROM images"),
            unique_blobs=one("SELECT count(*) FROM blobs"),
            image_bytes=one("SELECT sum(nbytes) FROM blobs"),
            shards=one("SELECT count(*) FROM image_shards"),
            missing_image_refs=one(
                "SELECT count(*) FROM instruction_images x WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = x.image_id)"
            ),
            missing_context_refs=one(
                "SELECT count(*) FROM current_context c WHERE NOT EXISTS (SELECT 1 FROM instructions i WHERE i.id = c.related_id)"
            ),
            flagged=one("SELECT count(DISTINCT ins_id) FROM instruction_flags WHERE active"),
            quarantined=one("SELECT count(*) FROM quarantine"),
            runs=[
                (r[0], r[1], r[2])
                for r in q("SELECT id, command, status FROM runs ORDER BY started_at").fetchall()
            ],
        )

    # -- what the report shows, for all runs or one (``run_id``) ------------------------------------

    def has_run(self, run_id: str) -> bool:
        return self.con.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone() is not None

    @staticmethod
    def _of_run(run_id: str | None, alias: str = "") -> tuple[str, list]:
        """Instructions of one run: generated by it, or given context sets by it."""
        if run_id is None:
            return "", []
        p = f"{alias}." if alias else ""
        return (
            f" AND ({p}run_id = ? OR {p}id IN (SELECT query_id FROM context_sets WHERE run_id = ?))",
            [run_id, run_id],
        )

    def task_counts(self, run_id: str | None = None) -> list[tuple[str, int]]:
        where, params = self._of_run(run_id)
        return self.con.execute(
            f"SELECT task, count(*) AS n FROM instructions WHERE true{where} GROUP BY task ORDER BY task",
            params,
        ).fetchall()

    def sample_keys(self, task: str, limit: int, run_id: str | None = None) -> list[str]:
        """One sample per source annotation (an instruction without one is its own sample)."""
        where, params = self._of_run(run_id)
        return [
            r[0]
            for r in self.con.execute(
                f"SELECT coalesce(source_id, id) AS k, min(id) AS first FROM instructions "
                f"WHERE task = ?{where} GROUP BY k ORDER BY first LIMIT ?",
                [task, *params, limit],
            ).fetchall()
        ]

    def count_samples(self, task: str, run_id: str | None = None) -> int:
        where, params = self._of_run(run_id)
        return self.con.execute(
            f"SELECT count(DISTINCT coalesce(source_id, id)) FROM instructions WHERE task = ?{where}",
            [task, *params],
        ).fetchone()[0]

    def sample_pairs(self, task: str, key: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """The pairs of one sample (source annotation), with their active flags and image ids."""
        where, params = self._of_run(run_id, "i")
        return _rows(
            self.con.execute(
                f"SELECT i.id, i.instruction, i.answer, i.lang, i.parent_id, i.source_id, i.run_id, "
                f"CAST(i.extra AS VARCHAR) AS extra, "
                f"(SELECT string_agg(flag || coalesce(': ' || reason, ''), '; ') FROM instruction_flags f "
                f"WHERE f.ins_id = i.id AND f.active) AS flags, "
                f"(SELECT list(image_id ORDER BY pos) FROM instruction_images m WHERE m.ins_id = i.id) AS image_ids "
                f"FROM instructions i WHERE i.task = ? AND coalesce(i.source_id, i.id) = ?{where} "
                f"ORDER BY (i.parent_id IS NOT NULL), i.id",
                [task, key, *params],
            )
        )

    def context_details(
        self, ins_ids: Sequence[str], run_id: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Per instruction, its in-context examples in rank order with their text and images: those
        ``run_id`` assigned when it assigned any, else the current ones."""
        if not ins_ids:
            return {}
        if (
            run_id is not None
            and self.con.execute("SELECT 1 FROM context_sets WHERE run_id = ? LIMIT 1", [run_id]).fetchone()
        ):
            source, params = "(SELECT * FROM context_sets WHERE run_id = ?)", [run_id]
        else:
            source, params = "current_context", []
        out: dict[str, list[dict[str, Any]]] = {}
        for r in _rows(
            self.con.execute(
                f"SELECT c.query_id, c.rank, c.related_id, c.score, c.method, c.run_id, r.instruction, r.answer, "
                f"r.task, (SELECT list(image_id ORDER BY pos) FROM instruction_images m "
                f"WHERE m.ins_id = c.related_id) AS image_ids "
                f"FROM {source} c LEFT JOIN instructions r ON r.id = c.related_id "
                f"WHERE c.query_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY c.query_id, c.rank",
                [*params, list(ins_ids)],
            )
        ):
            out.setdefault(r["query_id"], []).append(r)
        return out

    def quarantined(self, limit: int, run_id: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(how many outputs are quarantined, the first ``limit`` of them with the task they belong to)."""
        where, params = ("WHERE q.run_id = ?", [run_id]) if run_id else ("", [])
        total = self.con.execute(f"SELECT count(*) FROM quarantine q {where}", params).fetchone()[0]
        rows = _rows(
            self.con.execute(
                "SELECT q.stage, q.source, q.record_id, q.reason, q.raw, q.run_id, q.created_at, "
                "coalesce((SELECT min(i.task) FROM instructions i WHERE i.source_id = q.record_id), "
                "(SELECT min(r.task) FROM requests r WHERE r.source_id = q.record_id)) AS task "
                f"FROM quarantine q {where} ORDER BY q.created_at, q.id LIMIT ?",
                [*params, limit],
            )
        )
        return total, rows

    def run_rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Runs in start order, each with ``counts`` of what it wrote and ``requests`` (its request
        log figures, or None when it sent none)."""
        where, params = ("WHERE id = ?", [run_id]) if run_id else ("", [])
        runs = _rows(
            self.con.execute(
                f"SELECT id, command, status, started_at, finished_at, CAST(summary AS VARCHAR) AS summary "
                f"FROM runs {where} ORDER BY started_at, id",
                params,
            )
        )
        counts = {
            "instructions": ("instructions", "count(*)"),
            "images": ("images", "count(*)"),
            "context sets": ("context_sets", "count(DISTINCT query_id)"),
            "quarantined": ("quarantine", "count(*)"),
        }
        for run in runs:
            run["counts"] = {}
            for label, (table, agg) in counts.items():
                n = self.con.execute(f"SELECT {agg} FROM {table} WHERE run_id = ?", [run["id"]]).fetchone()[0]
                if n:
                    run["counts"][label] = n
            run["requests"] = self.request_stats(run["id"])
        return runs

    def request_stats(self, run_id: str) -> dict[str, Any] | None:
        """Requests, tokens, cost, failures and time span of one run's requests; None if it sent none."""
        row = _rows(
            self.con.execute(
                "SELECT count(*) AS n, sum(prompt_tokens) AS prompt_tokens, "
                "sum(completion_tokens) AS completion_tokens, sum(cost) AS cost, "
                "count(*) FILTER (WHERE status <> 'done') AS failed, "
                "min(started_at) AS t0, max(finished_at) AS t1 FROM requests WHERE run_id = ?",
                [run_id],
            )
        )[0]
        return row if row["n"] else None

    def table_size(self, table: str) -> int:
        """Rows of one table (a name from curation/schema.py)."""
        from curation.schema import TABLES

        if table not in TABLES:
            raise ValueError(f"unknown corpus table {table!r}")
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
