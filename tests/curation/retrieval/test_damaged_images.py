"""Retrieval over a corpus whose stored images are damaged: an image that does not decode is
left out and counted; a missing shard stops with one line naming it (never a traceback)."""

from __future__ import annotations

import hashlib

from curation.images import ImageInfo
from curation.store import Corpus, InstructionRow
from tests.curation.retrieval.conftest import SHAPES, draw
from tests.curation.store.helpers import one_error_line, run_syphus


def _corpus(path, *, broken: bool) -> None:
    """Six drawn images, and (with ``broken``) one truncated JPEG stored the way a corpus
    imported before full decoding could hold it."""
    with Corpus(path) as c:
        run = c.start_run("test")
        rows = []
        with c.image_writer(run) as w:
            for i, (col, sh) in enumerate(SHAPES):
                w.add(f"img{i}", draw(col, sh))
            if broken:
                data = draw("black", "circle")
                data = data[: len(data) // 2]
                info = ImageInfo(hashlib.sha256(data).hexdigest(), 160, 160, "JPEG", len(data))
                w.add("img_broken", data, info=info)
        for iid in [f"img{i}" for i in range(len(SHAPES))] + (["img_broken"] if broken else []):
            rows.append(InstructionRow(f"{iid}_q", "SHAPES", f"What is in {iid}?", "A shape.", [iid]))
        c.add_instructions(rows, run)
        c.finish_run(run)


def test_retrieve_i2i_skips_and_counts_an_undecodable_image(tmp_path):
    c = tmp_path / "c"
    _corpus(c, broken=True)
    rc, out, err = run_syphus("retrieve", c, "--policy", "i2i", "--k", "2", "--workers", "0")
    assert rc == 0, err
    assert "1 image(s) left out because their stored bytes do not decode (e.g. 'img_broken')" in " ".join(
        out.split()
    )
    with Corpus(c, read_only=True) as cc:
        queries = {r[0] for r in cc.con.execute("SELECT DISTINCT query_id FROM context_sets").fetchall()}
        related = {r[0] for r in cc.con.execute("SELECT DISTINCT related_id FROM context_sets").fetchall()}
    assert queries == {f"img{i}_q" for i in range(len(SHAPES))} and "img_broken_q" not in related


def test_retrieve_with_a_deleted_shard_names_it(tmp_path):
    c = tmp_path / "c"
    _corpus(c, broken=False)
    (shard,) = (c / "images").glob("*.parquet")
    shard.unlink()
    for workers in ("0", "1"):
        rc, _, err = run_syphus("retrieve", c, "--policy", "i2i", "--k", "2", "--workers", workers)
        assert rc == 1 and f"{shard}: cannot read image shard" in one_error_line(err)
