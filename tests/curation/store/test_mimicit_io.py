"""MIMIC-IT import and export: lossless round trips and every kind of bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from curation.mimicit_io import export_mimicit, import_image_files, import_mimicit
from curation.shards_export import export_shards
from curation.store import Corpus
from tests.curation.store.helpers import jpeg, write_mimicit

SYPHUS = [sys.executable, "-m", "syphus.cli"]


def snapshot(corpus_dir: Path) -> tuple:
    with Corpus(corpus_dir, read_only=True) as c:
        q = c.con.execute
        return (
            q("SELECT id, task, instruction, answer, lang FROM instructions ORDER BY id").fetchall(),
            q("SELECT * FROM instruction_images ORDER BY 1, 2").fetchall(),
            q("SELECT id, sha256 FROM images ORDER BY id").fetchall(),
            q("SELECT count(*) FROM context_sets").fetchall(),
            sorted(os.listdir(corpus_dir / "images")),
        )


@pytest.mark.parametrize("variant", ["index", "column", "json", "urlsafe"])
def test_import_export_import_is_lossless(tmp_path, variant):
    files = write_mimicit(
        tmp_path / "in",
        index_as_column=variant == "column",
        images_json=variant == "json",
        urlsafe_every=2 if variant == "urlsafe" else 0,
    )
    with Corpus(tmp_path / "c1") as c:
        r = import_mimicit(c, files["instructions"], images=[files["images"]], train=files["train"])
        assert (r.instructions_added, r.images_added) == (20, 10)
        for iid, b in files["_raw"].items():
            assert c.get_image(iid) == b
        export_mimicit(c, tmp_path / "out")
    out = tmp_path / "out"
    original = json.loads(files["instructions"].read_text(encoding="utf-8"))["data"]
    exported = json.loads((out / "LA_instructions.json").read_text(encoding="utf-8"))["data"]
    assert exported == original
    assert json.loads((out / "LA_train.json").read_text()) == json.loads(files["train"].read_text())
    # The original Otter loader: whole parquet into pandas, .loc[id]['base64'], decode.
    df = pd.read_parquet(out / "LA.parquet")
    for iid, b in files["_raw"].items():
        assert base64.b64decode(df.loc[iid]["base64"]) == b
    with Corpus(tmp_path / "c2") as c:
        import_mimicit(
            c, out / "LA_instructions.json", images=[out / "LA.parquet"], train=out / "LA_train.json"
        )
        export_mimicit(c, tmp_path / "out2")
    assert (
        json.loads((tmp_path / "out2" / "LA_instructions.json").read_text(encoding="utf-8"))["data"]
        == original
    )


def test_rerunning_an_import_is_idempotent(tmp_path):
    files = write_mimicit(tmp_path / "in")
    with Corpus(tmp_path / "c") as c:
        import_mimicit(c, files["instructions"], images=[files["images"]])
        r = import_mimicit(c, files["instructions"], images=[files["images"]])
        assert (r.instructions_added, r.instructions_existing, r.images_added, r.images_existing) == (
            0,
            20,
            0,
            10,
        )


def test_export_shards_are_self_contained(tmp_path):
    import pyarrow.parquet as pq

    files = write_mimicit(tmp_path / "in")
    with Corpus(tmp_path / "c") as c:
        import_mimicit(c, files["instructions"], images=[files["images"]], train=files["train"])
        rep = export_shards(c, tmp_path / "shards", rows_per_part=8)
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["rows"] == rep.rows == 20 and len(manifest["shards"]) == 3
    for part in manifest["shards"]:
        rows = pq.read_table(tmp_path / "shards" / part["instructions"]).to_pylist()
        imgs = {
            r["image_id"]: r["bytes"] for r in pq.read_table(tmp_path / "shards" / part["images"]).to_pylist()
        }
        for row in rows:
            assert row["context"], "imported rel_ins_ids become in-context examples"
            for iid in row["image_ids"] + [i for ctx in row["context"] for i in ctx["image_ids"]]:
                assert imgs[iid] == files["_raw"][iid]


def test_import_image_files_with_id_pattern(tmp_path):
    d = tmp_path / "photos" / "set1"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"p{i}.jpg").write_bytes(jpeg(i))
    with Corpus(tmp_path / "c") as c:
        r = import_image_files(c, str(tmp_path / "photos"), id_pattern="{parent}_{stem}")
        assert r.images_added == 3
        assert c.get_image("set1_p2") == jpeg(2)


# -- bad input: one-line error naming the place, corpus unchanged -----------------------------


def _bad_cases(tmp_path: Path):
    files = write_mimicit(tmp_path / "in")
    ins = files["instructions"]
    doc = json.loads(ins.read_text(encoding="utf-8"))

    def variant(name: str, mutate=None, text: str | bytes | None = None) -> Path:
        p = tmp_path / "bad" / name / ins.name
        p.parent.mkdir(parents=True, exist_ok=True)
        if text is not None:
            p.write_bytes(text if isinstance(text, bytes) else text.encode())
        else:
            d = json.loads(json.dumps(doc))
            mutate(d)
            p.write_text(json.dumps(d), encoding="utf-8")
        return p

    good = ins.read_text(encoding="utf-8")
    yield (
        "malformed json",
        variant("malformed", text=good[:200] + "\n,,," + good[200:]),
        None,
        r"line 2, column",
    )
    yield (
        "missing field",
        variant("missing", lambda d: d["data"]["LA_INS_00003"].pop("answer")),
        None,
        (r"record 'LA_INS_00003': field 'answer'"),
    )
    yield (
        "wrong type",
        variant("wrongtype", lambda d: d["data"]["LA_INS_00004"].update(image_ids="LA_IMG_000001")),
        None,
        (r"record 'LA_INS_00004': field 'image_ids'"),
    )
    yield (
        "unknown image",
        variant("unknown", lambda d: d["data"]["LA_INS_00005"].update(image_ids=["NOPE"])),
        None,
        (r"record 'LA_INS_00005': field 'image_ids' names unknown image id 'NOPE'"),
    )
    dup = good.replace('"data": {', '"data": {"LA_INS_00000": {"instruction": "x", "answer": "y"}, ', 1)
    yield "duplicate id", variant("dup", text=dup), None, r"duplicate key 'LA_INS_00000'"
    yield "empty file", variant("empty", text=""), None, r"empty file"
    yield (
        "non utf8",
        variant("latin1", text=good.encode("utf-8").replace("ü".encode(), b"\xfc", 1)),
        None,
        r"not UTF-8",
    )

    df = pd.read_parquet(files["images"])
    corrupt = tmp_path / "bad" / "corrupt.parquet"
    df2 = df.copy()
    df2.iloc[7, 0] = base64.b64encode(b"\xff\xd8\xff garbage, not a jpeg").decode()
    df2.to_parquet(corrupt)
    yield "corrupt image", ins, corrupt, r"image 'LA_IMG_000007': corrupt image bytes"
    bomb = tmp_path / "bad" / "bomb.parquet"
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (12000, 9000)).save(buf, "PNG")  # 108 Mpx, a few kB on disk
    df3 = df.copy()
    df3.iloc[2, 0] = base64.b64encode(buf.getvalue()).decode()
    df3.to_parquet(bomb)
    yield "decompression bomb", ins, bomb, r"image 'LA_IMG_000002': image is 12000x9000 .* decompression bomb"
    empty_pq = tmp_path / "bad" / "empty.parquet"
    empty_pq.write_bytes(b"")
    yield "empty images file", ins, empty_pq, r"empty file"


def test_every_bad_input_gives_a_one_line_error_and_leaves_the_corpus_unchanged(tmp_path):
    base = write_mimicit(tmp_path / "base", task="VST", n_images=4, n_ins=4)
    corpus = tmp_path / "c"
    with Corpus(corpus) as c:
        import_mimicit(c, base["instructions"], images=[base["images"]])
    before = snapshot(corpus)
    images = tmp_path / "in" / "LA.parquet"
    seen = []
    for name, ins, imgs, pattern in _bad_cases(tmp_path):
        proc = subprocess.run(
            [
                *SYPHUS,
                "import",
                "mimicit",
                str(ins),
                "--corpus",
                str(corpus),
                "--images",
                str(imgs or images),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        err_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(err_lines) == 1, (name, proc.stderr)
        assert "Traceback" not in proc.stderr, name
        import re

        assert re.search(pattern, err_lines[0]), (name, err_lines[0])
        assert snapshot(corpus) == before, f"{name} changed the corpus"
        seen.append(name)
    assert len(seen) == 10


def test_skip_bad_quarantines_and_counts(tmp_path):
    files = write_mimicit(tmp_path / "in")
    doc = json.loads(files["instructions"].read_text(encoding="utf-8"))
    doc["data"]["LA_INS_00005"]["image_ids"] = ["NOPE"]
    files["instructions"].write_text(json.dumps(doc), encoding="utf-8")
    with Corpus(tmp_path / "c") as c:
        r = import_mimicit(c, files["instructions"], images=[files["images"]], skip_bad=True)
        # the two pairs whose rel_ins_ids name the skipped pair keep the link, counted
        assert r.instructions_added == 19 and r.skipped == {"unknown image id": 1}
        assert (r.context_unresolved, r.context_unresolved_example) == (2, "LA_INS_00005")
        reason, rec = c.con.execute(
            "SELECT reason, record_id FROM quarantine WHERE reason LIKE '%image_ids%'"
        ).fetchone()
        assert rec == "LA_INS_00005" and "NOPE" in reason


def test_killed_import_leaves_usable_corpus_and_rerun_completes(tmp_path):
    files = write_mimicit(tmp_path / "in", n_images=1500, n_ins=30)
    corpus = tmp_path / "c"
    cmd = [
        *SYPHUS,
        "import",
        "mimicit",
        str(files["instructions"]),
        "--corpus",
        str(corpus),
        "--images",
        str(files["images"]),
        "--rows-per-shard",
        "100",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    images = corpus / "images"
    deadline = time.time() + 60
    while time.time() < deadline:
        if images.exists() and sum(1 for p in images.glob("*.parquet")) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Corpus(corpus) as c:  # usable: opens, and what it holds reads back exactly
        n_before = c.con.execute("SELECT count(*) FROM images").fetchone()[0]
        assert 0 < n_before < 1500
        for (iid,) in c.con.execute("SELECT id FROM images LIMIT 50").fetchall():
            assert c.get_image(iid) == files["_raw"][iid]
    subprocess.run(cmd, check=True, capture_output=True)
    with Corpus(corpus) as c:
        assert c.con.execute("SELECT count(*) FROM images").fetchone()[0] == 1500
        unique = len({hashlib.sha256(b).digest() for b in files["_raw"].values()})
        assert c.con.execute("SELECT count(*) FROM blobs").fetchone()[0] == unique
        assert c.con.execute("SELECT count(*) FROM instructions").fetchone()[0] == 30
        for iid, b in list(files["_raw"].items())[::97]:
            assert c.get_image(iid) == b
        on_disk = {p.name for p in (corpus / "images").iterdir()}
        assert on_disk == {r[0] for r in c.con.execute("SELECT name FROM image_shards").fetchall()}


def test_parquet_batches_are_sized_by_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.mimicit_io import _rows_per_batch, iter_parquet_images

    big = tmp_path / "big.parquet"
    values = [base64.b64encode(os.urandom(300_000)).decode() for _ in range(30)]  # 400 KB of base64 each
    pq.write_table(pa.table({"id": [f"I{i}" for i in range(30)], "base64": values}), big, compression="none")
    pf = pq.ParquetFile(big)
    assert _rows_per_batch(pf, "base64", 2_000_000) == 4  # 2 MB over rows of 400 KB plus length prefixes
    assert _rows_per_batch(pf, "base64", 1) == 1
    assert _rows_per_batch(pf, "base64", 1 << 40) == 256  # small images: the usual 256 rows
    got = list(iter_parquet_images(big, batch_bytes=2_000_000))
    assert [i for i, _, _ in got] == [f"I{i}" for i in range(30)] and got[7][1] == values[7]
