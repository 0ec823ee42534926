"""Tiny corpora with drawn images for the retrieval tests."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image, ImageDraw

from curation.store import Corpus, InstructionRow

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPES = [
    ("red", "circle"),
    ("blue", "square"),
    ("green", "triangle"),
    ("yellow", "circle"),
    ("purple", "square"),
    ("orange", "triangle"),
]


def draw(color: str, shape: str, size: int = 160, quality: int = 90, offset: int = 0) -> bytes:
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    a, b = 30 + offset, size - 30 + offset
    if shape == "circle":
        d.ellipse([a, a, b, b], fill=color)
    elif shape == "square":
        d.rectangle([a, a, b, b], fill=color)
    else:
        d.polygon([(size // 2 + offset, a), (a, b), (b, b)], fill=color)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_corpus(path, images: dict[str, bytes], instructions: list[InstructionRow]) -> Corpus:
    c = Corpus(path)
    run = c.start_run("test")
    with c.image_writer(run) as w:
        for iid, data in images.items():
            w.add(iid, data)
    c.add_instructions(instructions, run)
    c.finish_run(run)
    return c


@pytest.fixture
def shapes_corpus(tmp_path):
    """Six drawn images, one exact copy under another id ('img0_copy'), two instructions per image."""
    images = {f"img{i}": draw(col, sh) for i, (col, sh) in enumerate(SHAPES)}
    images["img0_copy"] = images["img0"]
    rows = []
    for iid in images:
        rows.append(
            InstructionRow(
                id=f"{iid}_q1",
                task="COLOR",
                instruction=f"What colour is the shape in {iid}?",
                answer="It is a colour.",
                image_ids=[iid],
            )
        )
        rows.append(
            InstructionRow(
                id=f"{iid}_q2",
                task="SHAPE",
                instruction=f"Which shape is drawn in {iid}?",
                answer="A geometric shape.",
                image_ids=[iid],
            )
        )
    c = make_corpus(tmp_path / "corpus", images, rows)
    yield c
    c.close()
