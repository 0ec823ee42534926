"""Damaged images and image files: refused at import with a one-line error naming the file (or
skipped and counted with --skip-bad), and never a traceback in a later stage."""

from __future__ import annotations

import io
import json
import os

from PIL import Image

from tests.curation.store.helpers import jpeg, one_error_line, run_syphus, summary_value, write_mimicit
from tests.curation.store.test_mimicit_io import snapshot


def test_truncated_jpeg_is_refused_at_import_not_later(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(jpeg(i, (200, 150)))
    whole = jpeg(9, (200, 150))
    (photos / "p1.jpg").write_bytes(whole[: len(whole) // 2])  # the header is intact
    c = tmp_path / "c"
    rc, _, err = run_syphus("import", "images", photos, "-c", c)
    line = one_error_line(err)
    assert rc == 1 and "p1.jpg: corrupt image bytes" in line and "--skip-bad" in line
    assert snapshot(c)[2] == []
    rc, out, err = run_syphus("import", "images", photos, "-c", c, "--skip-bad")
    assert rc == 0, err
    assert summary_value(out, "skipped: bad image").startswith("1 (e.g. ")
    assert "p1.jpg: corrupt image bytes" in out
    assert [r[0] for r in snapshot(c)[2]] == ["p0", "p2"]


def test_pixel_bomb_is_refused_before_it_is_decoded(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    buf = io.BytesIO()
    Image.new("1", (12000, 9000)).save(buf, "PNG")  # 108 Mpx in a few kB
    (photos / "bomb.png").write_bytes(buf.getvalue())
    rc, _, err = run_syphus("import", "images", photos, "-c", tmp_path / "c")
    assert rc == 1 and "bomb.png: image is 12000x9000" in one_error_line(err)
    rc, _, err = run_syphus("import", "images", photos, "-c", tmp_path / "c", "--max-pixels", "200000000")
    assert rc == 0, err


def test_non_utf8_file_name_is_named_in_one_line(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "ok.jpg").write_bytes(jpeg(1))
    with open(os.path.join(os.fsencode(photos), b"caf\xe9.jpg"), "wb") as f:
        f.write(jpeg(2))
    c = tmp_path / "c"
    rc, _, err = run_syphus("import", "images", photos, "-c", c)
    line = one_error_line(err)
    assert rc == 1 and "caf\\xe9.jpg: file name is not valid UTF-8" in line
    rc, out, err = run_syphus("import", "images", photos, "-c", c, "--skip-bad")
    assert rc == 0, err
    assert summary_value(out, "skipped: file name not UTF-8").startswith("1 (e.g. ")
    assert [r[0] for r in snapshot(c)[2]] == ["ok"]


def test_truncated_images_json_names_the_file_and_position(tmp_path):
    files = write_mimicit(tmp_path / "in", n_images=6, n_ins=4, images_json=True)
    c = tmp_path / "c"
    base = write_mimicit(tmp_path / "base", task="VST", n_images=2, n_ins=2)
    assert run_syphus("import", "mimicit", base["instructions"], "-c", c, "-i", base["images"])[0] == 0
    before = snapshot(c)
    raw = files["images"].read_bytes()
    cut = raw.index(b'"LA_IMG_000004"') + 40  # inside the fifth image's base64
    files["images"].write_bytes(raw[:cut])
    rc, _, err = run_syphus("import", "mimicit", files["instructions"], "-c", c, "-i", files["images"])
    line = one_error_line(err)
    assert rc == 1 and f"{files['images']}: truncated images JSON: the file ends at byte {cut}" in line
    assert "after image 4 ('LA_IMG_000003')" in line
    assert snapshot(c) == before
    files["images"].write_text(json.dumps(["not", "an", "object"]))
    rc, _, err = run_syphus("import", "mimicit", files["instructions"], "-c", c, "-i", files["images"])
    assert rc == 1 and "expected a JSON object mapping image ids" in one_error_line(err)
    assert snapshot(c) == before


def test_a_deleted_image_shard_is_a_one_line_error_naming_it(tmp_path):
    files = write_mimicit(tmp_path / "in", n_images=4, n_ins=4)
    c = tmp_path / "c"
    assert run_syphus("import", "mimicit", files["instructions"], "-c", c, "-i", files["images"])[0] == 0
    (shard,) = (c / "images").glob("*.parquet")
    shard.unlink()
    rc, _, err = run_syphus("export", "shards", "-c", c, "-o", tmp_path / "s")
    line = one_error_line(err)
    assert rc == 1 and f"{shard}: cannot read image shard" in line
    assert not (tmp_path / "s").exists()


def _bad_image_files():
    png_bytes = io.BytesIO()
    Image.effect_noise((300, 200), 60).convert("RGB").save(png_bytes, "PNG")
    whole_png = png_bytes.getvalue()
    bomb = io.BytesIO()
    Image.new("1", (12000, 9000)).save(bomb, "PNG")
    yield "empty", "e.jpg", b"", "empty image bytes"
    yield "not an image", "notes.jpg", b"just some text\n", "corrupt image bytes"
    yield "truncated png", "t.png", whole_png[: len(whole_png) - 40], "corrupt image bytes"
    yield "truncated jpeg", "t.jpg", jpeg(3, (300, 200))[:900], "corrupt image bytes"
    yield "pixel bomb", "b.png", bomb.getvalue(), "decompression bomb"


def test_every_bad_image_file_is_one_line_naming_it_and_leaves_the_corpus_unchanged(tmp_path):
    c = tmp_path / "c"
    good = tmp_path / "good"
    good.mkdir()
    (good / "g.jpg").write_bytes(jpeg(1))
    assert run_syphus("import", "images", good, "-c", c)[0] == 0
    before = snapshot(c)
    for name, fname, data, words in _bad_image_files():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        (folder / "fine.jpg").write_bytes(jpeg(7))
        (folder / fname).write_bytes(data)
        rc, _, err = run_syphus("import", "images", folder, "-c", c)
        line = one_error_line(err)
        assert rc == 1 and str(folder / fname) in line and words in line, (name, line)
        assert snapshot(c) == before, name
