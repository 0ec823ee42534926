"""The bundled example data: well-formed in each public format, consistent, small, reproducible."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.paths import REPO

BUNDLED = REPO / "examples" / "data"


def load_maker():
    spec = importlib.util.spec_from_file_location(
        "make_example_data", REPO / "examples" / "make_example_data.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    pytest.importorskip("skimage")
    out = tmp_path_factory.mktemp("example-data")
    counts = load_maker().make_example_data(out)
    return out, counts


def test_deterministic_small_and_matches_the_bundled_copy(generated, tmp_path):
    out, counts = generated
    again = tmp_path / "again"
    load_maker().make_example_data(again)
    assert digest(out) == digest(again)
    assert counts["bytes"] < 3_000_000
    assert 30 <= sum(1 for p in out.rglob("*.png")) + sum(1 for p in out.rglob("*.jpg")) <= 80
    # the committed data is what the script writes (annotations byte for byte, same image files)
    bundled = digest(BUNDLED)
    fresh = digest(out)
    assert set(bundled) == set(fresh)
    for name in fresh:
        if name.endswith(".json"):
            assert bundled[name] == fresh[name], (
                f"examples/data/{name} is stale: rerun examples/make_example_data.py"
            )


def test_coco_files_are_consistent(generated):
    out, _ = generated
    caps = json.loads((out / "coco/annotations/captions_example.json").read_text())
    inst = json.loads((out / "coco/annotations/instances_example.json").read_text())
    images = {im["id"]: im for im in caps["images"]}
    assert images == {im["id"]: im for im in inst["images"]}
    cats = {c["id"] for c in inst["categories"]}
    for im in images.values():
        with Image.open(out / "coco/images" / im["file_name"]) as pic:
            assert pic.size == (im["width"], im["height"])
    assert {a["image_id"] for a in caps["annotations"]} == set(images)
    for a in inst["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert a["category_id"] in cats
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= im["width"] and y + h <= im["height"], a
        assert len(a["segmentation"][0]) >= 6 and a["area"] > 0
    coins = [a for a in inst["annotations"] if a["image_id"] == 7]
    assert len(coins) == 24
    assert len({a["id"] for a in inst["annotations"]}) == len(inst["annotations"])


def test_drawn_scene_boxes_are_exact(generated):
    """Every box of a drawn scene encloses coloured pixels that touch all four of its sides."""
    out, _ = generated
    inst = json.loads((out / "coco/annotations/instances_example.json").read_text())
    names = {im["id"]: im["file_name"] for im in inst["images"]}
    for a in inst["annotations"]:
        if a["image_id"] < 100:
            continue
        with Image.open(out / "coco/images" / names[a["image_id"]]) as pic:
            px = pic.convert("RGB").load()
        x, y, w, h = (int(v) for v in a["bbox"])

        def coloured(i, j, px=px):
            r, g, b = px[i, j]
            return max(r, g, b) - min(r, g, b) > 60

        assert any(coloured(i, y) for i in range(x, x + w)), a  # top row
        assert any(coloured(i, y + h - 1) for i in range(x, x + w)), a  # bottom row
        assert any(coloured(x, j) for j in range(y, y + h)), a  # left column
        assert any(coloured(x + w - 1, j) for j in range(y, y + h)), a  # right column


def test_activitynet_and_spot_the_diff(generated):
    out, _ = generated
    ann = json.loads((out / "activitynet/captions_example.json").read_text())
    assert len(ann) == 3
    for vid, v in ann.items():
        frames = sorted((out / "activitynet/frames").glob(f"{vid}_f*.png"))
        assert len(frames) == v["duration"] * 2 == 8
        assert len(v["timestamps"]) == len(v["sentences"]) >= 2
        assert all(0 <= a < b <= v["duration"] for a, b in v["timestamps"])
    sd = json.loads((out / "spot_the_diff/annotations/train.json").read_text())
    for rec in sd:
        a = Image.open(out / "spot_the_diff/resized_images" / f"{rec['img_id']}.png").convert("RGB")
        b = Image.open(out / "spot_the_diff/resized_images" / f"{rec['img_id']}_2.png").convert("RGB")
        assert a.size == b.size and a.tobytes() != b.tobytes()  # every pair really differs
        assert rec["sentences"] and all(isinstance(s, str) and s for s in rec["sentences"])
