"""kill -9 of ``syphus retrieve`` mid-run, then a rerun: one complete context-set run, each
vector cached once, and the pairs and images untouched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from curation.store import Corpus, InstructionRow
from tests.curation.retrieval.conftest import SHAPES, draw

SYPHUS = [sys.executable, "-m", "syphus.cli"]


@pytest.mark.slow
def test_killed_retrieve_reruns_to_one_complete_run(tmp_path):
    c = tmp_path / "c"
    with Corpus(c) as cc:
        run = cc.start_run("test")
        rows = []
        with cc.image_writer(run) as w:
            for i in range(48):
                col, sh = SHAPES[i % len(SHAPES)]
                w.add(f"img{i}", draw(col, sh, offset=i // len(SHAPES)))
                rows.append(InstructionRow(f"S_INS_{i:03d}", "S", f"Shape {i}?", "A shape.", [f"img{i}"]))
        cc.add_instructions(rows, run)
        cc.finish_run(run)
        before = (
            cc.con.execute("SELECT * FROM instructions ORDER BY id").fetchall(),
            cc.con.execute("SELECT * FROM images ORDER BY id").fetchall(),
        )
    cmd = [*SYPHUS, "retrieve", str(c), "--policy", "i2i", "--k", "3", "--workers", "0", "--batch-size", "4"]
    for delay in (2.0, 4.0):  # kill at two points: usually while loading, then while embedding
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, check=True, capture_output=True)
    with Corpus(c, read_only=True) as cc:
        q = cc.con.execute
        done = q("SELECT id FROM runs WHERE command = 'retrieve i2i' AND status = 'done'").fetchall()
        assert q("SELECT count(*) FROM runs WHERE command LIKE 'retrieve%'").fetchone()[0] == len(done) >= 1
        latest = q("SELECT count(*), count(DISTINCT (query_id, rank)) FROM current_context").fetchone()
        assert latest == (48 * 3, 48 * 3)
        assert q("SELECT count(*), count(DISTINCT key) FROM embeddings WHERE kind = 'image'").fetchone() == (
            48,
            48,
        )
        assert (
            q("SELECT * FROM instructions ORDER BY id").fetchall(),
            q("SELECT * FROM images ORDER BY id").fetchall(),
        ) == before
