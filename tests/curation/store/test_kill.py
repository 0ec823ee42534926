"""kill -9 in the middle of a command, then the same command again: it completes, nothing is
stored twice, and nothing the command did not write is lost."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from curation.store import Corpus, InstructionRow
from tests.curation.store.helpers import jpeg, png
from tests.curation.store.test_mimicit_io import snapshot

SYPHUS = [sys.executable, "-m", "syphus.cli"]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _kill_when(cmd: list[str], ready, timeout: float = 300) -> bool:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` holds; True when it was killed while
    still running (on a loaded machine it may finish between two polls)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while proc.poll() is None and not ready():
        assert time.time() < deadline, f"never reached the kill point: {cmd}"
        time.sleep(0.01)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def test_killed_import_images_reruns_to_exactly_one_copy(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(600):
        (photos / f"p{i:04d}.png").write_bytes(png(i) if i % 3 else jpeg(i))
    (photos / "p0001_copy.png").write_bytes(png(1))  # identical bytes under a second id
    user_files = _digest(photos)
    c = tmp_path / "c"
    cmd = [*SYPHUS, "import", "images", str(photos), "-c", str(c), "--rows-per-shard", "50"]
    _kill_when(cmd, lambda: len(list((c / "images").glob("*.parquet"))) >= 3)
    with Corpus(c) as cc:  # opens cleanly; the shards committed before the kill read back exactly
        assert cc.con.execute("SELECT count(*) FROM images").fetchone()[0] >= 100
        for iid, sha in cc.con.execute("SELECT id, sha256 FROM images").fetchall():
            assert hashlib.sha256(cc.get_image(iid)).hexdigest() == sha
    subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run(cmd, check=True, capture_output=True)  # a rerun of a finished import adds nothing
    with Corpus(c) as cc:
        assert cc.con.execute("SELECT count(*), count(DISTINCT id) FROM images").fetchone() == (601, 601)
        unique = len({hashlib.sha256(p.read_bytes()).digest() for p in photos.iterdir()})
        assert cc.con.execute("SELECT count(*) FROM blobs").fetchone()[0] == unique
        on_disk = {p.name for p in (c / "images").iterdir()}
        assert on_disk == {r[0] for r in cc.con.execute("SELECT name FROM image_shards").fetchall()}
        assert cc.get_image("p0599") == (png(599) if 599 % 3 else jpeg(599))
    assert _digest(photos) == user_files


def _big_corpus(path: Path, n_images: int = 300, n_ins: int = 3000) -> None:
    with Corpus(path) as c:
        run = c.start_run("test")
        with c.image_writer(run) as w:
            for i in range(n_images):
                w.add(f"I{i}", png(i) if i % 2 else jpeg(i))
        rows = [
            InstructionRow(f"T_INS_{k:05d}", "T", f"q{k}", f"a{k}", [f"I{k % n_images}"])
            for k in range(n_ins)
        ]
        c.add_instructions(rows, run)
        c.add_context_sets(
            [(f"T_INS_{k:05d}", 0, f"T_INS_{(k + 1) % n_ins:05d}", None) for k in range(n_ins)], "t", run
        )
        c.finish_run(run)


def _check_shards(out: Path, rows: int) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == rows
    ids = []
    for part in manifest["shards"]:
        ids += pq.read_table(out / part["instructions"], columns=["id"]).column("id").to_pylist()
        assert pq.read_metadata(out / part["images"]).num_rows == part["images_rows"]
    assert len(ids) == len(set(ids)) == rows


def test_killed_export_shards_keeps_the_previous_export_and_reruns(tmp_path):
    c = tmp_path / "c"
    _big_corpus(c)
    out = tmp_path / "shards"
    subprocess.run([*SYPHUS, "export", "shards", "-c", str(c), "-o", str(out), "--task", "T"], check=True)
    first = _digest(out)
    neighbour = tmp_path / "shards.old"
    neighbour.mkdir()
    (neighbour / "mine.txt").write_text("keep")
    corpus_before = snapshot(c), _digest(c / "images")
    cmd = [*SYPHUS, "export", "shards", "-c", str(c), "-o", str(out), "--rows-per-part", "40"]
    partial = tmp_path / "shards.partial"
    if _kill_when(cmd, lambda: len(list(partial.glob("part-*.parquet"))) >= 5):
        assert partial.exists()  # killed mid-way, and the finished export is still whole
        assert _digest(out) == first
    # as a kill between the swap's two renames leaves it: the replaced export under a hidden name
    shutil.copytree(out, tmp_path / ".shards.replaced-0badf00d")
    subprocess.run(cmd, check=True, capture_output=True)
    _check_shards(out, 3000)
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 75
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "shards", "shards.old"]
    assert (neighbour / "mine.txt").read_text() == "keep"
    assert (snapshot(c), _digest(c / "images")) == corpus_before
