"""The corpus store: original bytes, dedup, small row groups, fast exact reads, crash safety."""

from __future__ import annotations

import hashlib
import os

import pyarrow.parquet as pq
import pytest

from curation.store import Corpus, InstructionRow
from schemas.errors import SyphusError
from tests.curation.store.helpers import jpeg, png


def test_images_round_trip_byte_identical_and_deduplicated(tmp_path):
    c = Corpus(tmp_path / "c")
    run = c.start_run("test")
    blobs = {f"img{i}": jpeg(i) for i in range(150)}
    with c.image_writer(run, rows_per_shard=100) as w:
        for iid, b in blobs.items():
            w.add(iid, b)
        assert w.add("copy_of_img3", blobs["img3"]) == "dedup"
    assert c.con.execute("SELECT count(*) FROM images").fetchone()[0] == 151
    assert c.con.execute("SELECT count(*) FROM blobs").fetchone()[0] == 150
    for iid, b in blobs.items():
        assert c.get_image(iid) == b
    assert c.get_image("copy_of_img3") == blobs["img3"]
    c.load_image_index()
    assert c.get_image("img149") == blobs["img149"]
    row = c.con.execute(
        "SELECT width, height, format, sha256 FROM blobs b JOIN images i USING (sha256) WHERE id='img7'"
    ).fetchone()
    assert row == (64, 48, "JPEG", hashlib.sha256(blobs["img7"]).hexdigest())
    c.close()


def test_shards_are_plain_parquet_with_small_row_groups(tmp_path):
    c = Corpus(tmp_path / "c")
    run = c.start_run("test")
    with c.image_writer(run) as w:
        for i in range(200):
            w.add(f"i{i}", png(i) + bytes([i % 7]) * i)  # trailing bytes keep each blob distinct
    shard = next((tmp_path / "c" / "images").glob("*.parquet"))
    pf = pq.ParquetFile(shard)
    assert pf.metadata.num_row_groups == 4
    assert all(pf.metadata.row_group(k).num_rows <= 64 for k in range(4))
    col = pf.metadata.row_group(0).column(1)
    assert col.compression == "UNCOMPRESSED"
    table = pf.read()
    assert table.column("bytes")[5].as_py() == c.get_image("i5")
    c.close()


def test_shard_writer_holds_one_row_group_not_the_shard(tmp_path):
    # images go to the .partial file a row group at a time; only the last, unfinished group stays
    # in memory, and every image still reads back byte-identical through its recorded offset
    c = Corpus(tmp_path / "c")
    run = c.start_run("import")
    images = {f"img{i}": jpeg(i) for i in range(150)}
    with c.image_writer(run) as w:
        for iid, data in images.items():
            w.add(iid, data)
        shard = w._shard
        assert len(shard._group) == 150 % 64  # two full groups already written out
        assert shard.partial.stat().st_size > sum(len(images[f"img{i}"]) for i in range(128))
    c.finish_run(run)
    assert all(c.get_image(iid) == data for iid, data in images.items())
    assert not list((tmp_path / "c").rglob("*.partial"))
    c.close()


def test_same_id_with_different_bytes_is_an_error(tmp_path):
    c = Corpus(tmp_path / "c")
    run = c.start_run("test")
    with c.image_writer(run) as w:
        w.add("x", jpeg(1))
    with pytest.raises(SyphusError, match="'x' is already in the corpus with different bytes"):
        with c.image_writer(run) as w:
            w.add("x", jpeg(2))
    c.close()


def test_unknown_image_id_is_a_one_line_error(tmp_path):
    with Corpus(tmp_path / "c") as c, pytest.raises(SyphusError, match="unknown image id 'nope'"):
        c.get_image("nope")


def test_partial_and_orphan_shards_are_cleaned_on_open(tmp_path):
    c = Corpus(tmp_path / "c")
    run = c.start_run("test")
    with c.image_writer(run) as w:
        w.add("a", jpeg(1))
    c.close()
    images = tmp_path / "c" / "images"
    (images / "shard-x.parquet.partial").write_bytes(b"half")
    (images / "shard-orphan.parquet").write_bytes(b"never committed")
    with Corpus(tmp_path / "c") as c:
        assert sorted(p.name for p in images.iterdir()) == [
            c.con.execute("SELECT name FROM image_shards").fetchone()[0]
        ]
        assert c.get_image("a") == jpeg(1)


def test_rollback_run_restores_previous_state(tmp_path):
    c = Corpus(tmp_path / "c")
    r1 = c.start_run("first")
    with c.image_writer(r1) as w:
        w.add("keep", jpeg(1))
    c.add_instructions([InstructionRow("I1", "LA", "q", "a", ["keep"])], r1)
    r2 = c.start_run("second")
    with c.image_writer(r2) as w:
        w.add("drop", jpeg(2))
        w.add("dup_of_keep", jpeg(1))
    c.add_instructions([InstructionRow("I2", "LA", "q2", "a2", ["drop"])], r2)
    c.rollback_run(r2)
    assert [r[0] for r in c.con.execute("SELECT id FROM images ORDER BY id").fetchall()] == ["keep"]
    assert [r[0] for r in c.con.execute("SELECT id FROM instructions").fetchall()] == ["I1"]
    assert len(os.listdir(tmp_path / "c" / "images")) == 1
    assert c.get_image("keep") == jpeg(1)
    c.close()


def test_context_sets_latest_run_wins(tmp_path):
    c = Corpus(tmp_path / "c")
    r1 = c.start_run("a")
    c.add_instructions([InstructionRow(f"I{i}", "LA", "q", "a") for i in range(3)], r1)
    c.add_context_sets([("I0", 0, "I1", 0.9)], "t2t", r1)
    r2 = c.start_run("b")
    c.add_context_sets([("I0", 0, "I2", 0.8), ("I0", 1, "I1", 0.7)], "i2i", r2)
    assert c.context_map() == {"I0": ["I2", "I1"]}
    c.close()


def test_duplicate_instruction_ids_rejected(tmp_path):
    with Corpus(tmp_path / "c") as c:
        r = c.start_run("a")
        c.add_instructions([InstructionRow("I0", "LA", "q", "a")], r)
        with pytest.raises(SyphusError, match="'I0' is already in the corpus"):
            c.add_instructions([InstructionRow("I0", "LA", "q", "a")], r)


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(SyphusError, match="no corpus here"):
        Corpus(tmp_path / "none", create=False)
