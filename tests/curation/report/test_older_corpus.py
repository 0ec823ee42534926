"""A corpus written before every table was created with it still reports, and is left as it was."""

from __future__ import annotations

import hashlib

import duckdb

from curation.schema import TABLES
from curation.store import DB_NAME, Corpus
from syphus.cli import main

# the tables a stage used to create on first use, so a corpus that never ran it lacks them
LAZY_TABLES = ("requests", "request_batches", "embeddings")


def test_report_reads_a_corpus_that_lacks_the_later_tables(corpus, tmp_path, capsys):
    with Corpus(corpus.path) as c:
        assert set(TABLES) <= {
            r[0] for r in c.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    con = duckdb.connect(str(corpus.path / DB_NAME))
    for t in LAZY_TABLES:
        con.execute(f"DROP TABLE {t}")
    con.close()
    before = hashlib.sha256((corpus.path / DB_NAME).read_bytes()).hexdigest()

    out = tmp_path / "r.html"
    main(["report", "--corpus", str(corpus.path), "--out", str(out)])

    assert f"report: {out.resolve()}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert corpus.gen_run in page and 'id="quarantine"' in page
    assert hashlib.sha256((corpus.path / DB_NAME).read_bytes()).hexdigest() == before  # read-only
    con = duckdb.connect(str(corpus.path / DB_NAME), read_only=True)
    assert not {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()} & set(
        LAZY_TABLES
    )
    con.close()
