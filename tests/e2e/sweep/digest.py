"""A digest of everything a corpus holds, to prove a refused command changed nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path


def corpus_digest(corpus_dir: Path) -> dict[str, str]:
    """sha256 per table (its rows in a stable order) and per file under ``images/``.

    A dict rather than one hash, so that a failing comparison shows which table or file moved.
    Tables without rows are left out: a stage creates its (empty) tables when it opens the corpus
    (``embed``/``retrieve`` their cache), which changes no data.
    """
    import duckdb

    out: dict[str, str] = {}
    con = duckdb.connect(str(corpus_dir / "corpus.duckdb"), read_only=True)
    try:
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        for t in tables:
            rows = con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall()
            if rows:
                out[f"table {t}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    finally:
        con.close()
    images = corpus_dir / "images"
    for f in sorted(images.rglob("*")) if images.is_dir() else []:
        if f.is_file():
            out[f"file {f.relative_to(corpus_dir)}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
