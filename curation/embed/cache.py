"""The embedding cache: one float16 vector per (model, kind, content key), inside the corpus.

Keys are content hashes, not ids: an image's key is its sha256 (so identical bytes under two
ids are embedded once), an instruction's key is the sha256 of its text. A rerun therefore
embeds only content it has not seen, and an edited text gets a fresh vector. The table itself
is defined in ``curation/schema.py`` with every other table of the corpus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ImageItem:
    """Where one distinct image's bytes live (read by DataLoader workers with one pread)."""

    key: str  # sha256
    path: str
    offset: int
    nbytes: int
    image_id: str  # one id carrying these bytes, for error messages


def image_items(con: duckdb.DuckDBPyConnection, images_dir: str) -> list[ImageItem]:
    rows = con.execute(
        "SELECT b.sha256, b.shard, b.byte_offset, b.nbytes, min(i.id) FROM blobs b JOIN images i USING (sha256) "
        "GROUP BY ALL ORDER BY b.shard, b.byte_offset"
    ).fetchall()
    return [ImageItem(r[0], f"{images_dir}/{r[1]}", r[2], r[3], r[4]) for r in rows]


def text_items(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """key -> instruction text, for every distinct instruction text in the corpus."""
    out: dict[str, str] = {}
    for (text,) in con.execute(
        "SELECT DISTINCT instruction FROM instructions ORDER BY instruction"
    ).fetchall():
        out[text_key(text)] = text
    return out


def cached_keys(con: duckdb.DuckDBPyConnection, model: str, kind: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT key FROM embeddings WHERE model = ? AND kind = ?", [model, kind]
        ).fetchall()
    }


def store_vectors(
    con: duckdb.DuckDBPyConnection,
    model: str,
    kind: str,
    keys: Sequence[str],
    vecs: np.ndarray,
    run_id: str | None,
) -> int:
    """Insert vectors (already L2-normalised) as float16; keys already cached are left as they are."""
    if len(keys) == 0:
        return 0
    v16 = np.ascontiguousarray(vecs, dtype=np.float16)
    dim = v16.shape[1]
    blobs = [row.tobytes() for row in v16]
    t = pa.table({"key": list(keys), "vec": pa.array(blobs, pa.binary())})
    con.register("_emb_batch", t)
    try:
        con.execute(
            "INSERT OR IGNORE INTO embeddings SELECT ?, ?, key, ?, vec, ? FROM _emb_batch",
            [model, kind, dim, run_id],
        )
    finally:
        con.unregister("_emb_batch")
    return len(keys)


def load_vectors(
    con: duckdb.DuckDBPyConnection, model: str, kind: str, keys: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """(keys, float32 matrix) for the cached vectors of one model; all of them or the given keys."""
    q = "SELECT key, dim, vec FROM embeddings WHERE model = ? AND kind = ?"
    params: list = [model, kind]
    if keys is not None:
        q += " AND key IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(keys))
    rel = con.sql(q + " ORDER BY key", params=params)
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
