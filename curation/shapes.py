"""Drawn shapes: a small visual question-answering task whose answers are exact and knowable only
from the image, so a few hundred CPU steps of a tiny Otter can learn it and a blank-image control
shows that the model reads the picture.

Each 32x32 image holds one circle, square or triangle in one of four colours on the left or right
(in the demo's task moved by up to 2 pixels); each question asks for its colour, its shape or its
side (chance: 1/4, 1/3, 1/2). The trainer's learning test and ``syphus shapes`` (the demo's task)
both draw from here.
"""

from __future__ import annotations

import io
import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from schemas.errors import SyphusError

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (40, 60, 230), "yellow": (230, 220, 30)}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right")
# category -> (question, possible answers)
QUESTIONS = {
    "colour": ("What colour is the shape?", tuple(COLOURS)),
    "shape": ("What shape is it?", SHAPES),
    "where": ("Where is the shape?", SIDES),
}
TASK = "SHAPES"
# Pixels the demo's shapes move by: 600 distinct scenes, of which a fifth are held out.
JITTER = 2
MARKER = "syphus-shapes.json"


def chance_accuracy() -> float:
    """Expected accuracy of uniform guessing when the three questions are equally frequent."""
    return sum(1 / len(answers) for _, answers in QUESTIONS.values()) / len(QUESTIONS)


def draw(
    shape: str = "circle",
    colour: str = "red",
    where: str = "left",
    size: int = 32,
    blank: bool = False,
    *,
    dx: int = 0,
    dy: int = 0,
) -> bytes:
    """PNG bytes of one shape on white; ``blank`` gives the same canvas without the shape.
    ``dx``/``dy`` move it by a few pixels."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    if not blank:
        d = ImageDraw.Draw(img)
        r = size // 5
        cx = {"left": size // 4, "right": 3 * size // 4, "middle": size // 2}[where] + dx
        cy = size // 2 + dy
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            d.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            d.rectangle(box, fill=COLOURS[colour])
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class ShapeQuestion:
    id: str  # "{prefix}_INS_{i:05d}", MIMIC-IT style, so the task reads as SHAPES on import
    image_id: str
    question: str
    answer: str
    category: str  # "colour" | "shape" | "where"
    scene: tuple  # (shape, colour, side, dx, dy): what was drawn
    image: bytes  # PNG (a blank canvas when the questions were made with blank=True)


def held_out_scene(scene: tuple) -> bool:
    """Whether a scene belongs to the held-out split: a fixed fifth of all scenes, chosen by a hash
    of what is drawn, so no held-out image is ever drawn in the training split."""
    return zlib.crc32(repr(scene).encode()) % 5 == 0


def shapes_questions(
    n: int,
    seed: int,
    *,
    prefix: str = TASK,
    blank: bool = False,
    size: int = 32,
    jitter: int = 0,
    split: str | None = None,
) -> list[ShapeQuestion]:
    """``n`` questions, one image each, deterministic for a seed. ``jitter`` moves each shape by up
    to that many pixels in x and y (more distinct images); ``split`` ("train" or "heldout") draws
    only the scenes of that split (see ``held_out_scene``). ``blank`` keeps the questions and answers
    but draws empty canvases: the control that shows whether a model reads the image."""
    if n < 0:
        raise SyphusError(f"number of shape questions must be >= 0 (got {n})")
    if split not in (None, "train", "heldout"):
        raise SyphusError(f"split must be 'train' or 'heldout' (got {split!r})")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for _ in range(10_000):  # a fifth of the scenes are held out: a draw lands in a split quickly
            scene = (
                rng.choice(SHAPES),
                rng.choice(list(COLOURS)),
                rng.choice(SIDES),
                rng.randint(-jitter, jitter),
                rng.randint(-jitter, jitter),
            )
            if split is None or held_out_scene(scene) == (split == "heldout"):
                break
        else:
            raise SyphusError(f"no scene of split {split!r} at jitter {jitter}; use a larger jitter")
        category = rng.choice(list(QUESTIONS))
        shape, colour, side, dx, dy = scene
        answer = {"colour": colour, "shape": shape, "where": side}[category]
        image = draw(shape, colour, side, size, blank, dx=dx, dy=dy)
        out.append(
            ShapeQuestion(
                f"{prefix}_INS_{i:05d}",
                f"{prefix}_IMG_{i:05d}",
                QUESTIONS[category][0],
                answer,
                category,
                scene,
                image,
            )
        )
    return out


@dataclass
class ShapesFiles:
    train: Path  # MIMIC-IT instructions JSON (its images parquet beside it)
    train_images: Path
    heldout: Path
    heldout_images: Path
    heldout_blank: Path
    heldout_blank_images: Path
    example_image: Path  # one held-out image as a PNG file (what `syphus chat --image` takes)
    example: ShapeQuestion
    n_train: int
    n_heldout: int


def write_mimicit_split(folder: Path, name: str, questions: list[ShapeQuestion]) -> tuple[Path, Path]:
    """``{name}_instructions.json`` and ``{name}.parquet`` (the original MIMIC-IT files, images as
    base64 in a pandas-style parquet) in ``folder``. Each record keeps its question's category,
    so an evaluation can score per category."""
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.jsonfiles import write_json_atomic
    from curation.mimicit_io import pandas_images_schema

    folder.mkdir(parents=True, exist_ok=True)
    data = {
        q.id: {
            "instruction": q.question,
            "answer": q.answer,
            "image_ids": [q.image_id],
            "rel_ins_ids": [],
            "category": q.category,
        }
        for q in questions
    }
    ins = folder / f"{name}_instructions.json"
    write_json_atomic(
        ins, {"meta": {"version": "0.0.1", "author": "syphus shapes", "task": TASK}, "data": data}
    )
    par = folder / f"{name}.parquet"
    table = pa.table(
        {
            "base64": [base64.b64encode(q.image).decode("ascii") for q in questions],
            "id": [q.image_id for q in questions],
        },
        schema=pandas_images_schema(),
    )
    tmp = par.with_name(par.name + ".partial")
    pq.write_table(table, tmp, compression="none")
    tmp.replace(par)
    return ins, par


def heldout_questions(n: int, seed: int, *, blank: bool = False) -> list[ShapeQuestion]:
    """The held-out split ``write_shapes_task`` writes for ``seed``: another seed and another id
    prefix than the training split, and only held-out scenes."""
    return shapes_questions(
        n, seed + 1_000_003, prefix="SHAPESHELD", jitter=JITTER, split="heldout", blank=blank
    )


def write_shapes_task(out: Path, *, train: int = 2000, heldout: int = 300, seed: int = 0) -> ShapesFiles:
    """The shapes task as files a user could have been handed: ``train/`` (MIMIC-IT files to import
    and train on), ``heldout/`` (other scenes, never drawn in ``train/``) and ``heldout-blank/`` (the
    same held-out questions on blank canvases), plus one held-out image as a PNG file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SyphusError(f"{out}: exists and is not a folder; choose another path")
    if train < 1 or heldout < 1:
        raise SyphusError(f"--train and --heldout must be at least 1 (got {train} and {heldout})")
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise SyphusError(
            f"{out}: folder is not empty and was not written by 'syphus shapes'; choose another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    # written first, so a killed run can be rerun into the same folder
    marker.write_text(
        json.dumps({"written_by": "syphus shapes", "train": train, "heldout": heldout, "seed": seed})
    )
    train_qs = shapes_questions(train, seed, jitter=JITTER, split="train")
    held = heldout_questions(heldout, seed)
    blank = heldout_questions(heldout, seed, blank=True)
    tr, tr_img = write_mimicit_split(out / "train", TASK, train_qs)
    he, he_img = write_mimicit_split(out / "heldout", TASK, held)
    bl, bl_img = write_mimicit_split(out / "heldout-blank", TASK, blank)
    example = held[0]
    png = out / "heldout" / f"{example.image_id}.png"
    png.write_bytes(example.image)
    return ShapesFiles(tr, tr_img, he, he_img, bl, bl_img, png, example, len(train_qs), len(held))
