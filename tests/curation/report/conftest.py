"""A small corpus with every kind of thing the report shows, built with the real store API."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from curation.store import Corpus, InstructionRow

COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (240, 200, 30), (140, 60, 170), (245, 130, 30)]


def drawn_image(k: int, fmt: str = "PNG") -> bytes:
    im = Image.new("RGB", (96, 72), (250, 250, 245))
    d = ImageDraw.Draw(im)
    d.ellipse([10 + 8 * k, 16, 40 + 8 * k, 46], fill=COLOURS[k % len(COLOURS)])
    d.text((4, 58), f"img {k}", fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


@dataclass
class BuiltCorpus:
    path: Path
    gen_run: str
    gen2_run: str
    retrieve_run: str
    samples: dict[str, int]  # task -> number of samples (source annotations)


def build_corpus(root: Path) -> BuiltCorpus:
    c = Corpus(root)
    try:
        gen = c.start_run("generate --task LA --task SD --task DC", {"model": "local/smollm2"})
        with c.image_writer(gen) as w:
            for k in range(3):
                w.add(f"LA_IMG_{k}", drawn_image(k, "JPEG" if k % 2 else "PNG"))
            w.add("SD_IMG_7_1", drawn_image(3))
            w.add("SD_IMG_7_2", drawn_image(4))
            for f in range(4):
                w.add(f"v_ball_f{f:03d}", drawn_image(f))
        rows = []
        for k in range(3):
            ann = {
                "annotation": {
                    "captions": [f"A coloured circle number {k}."],
                    "boxes": [["circle", [10, 16, 30, 30]]],
                }
            }
            rows.append(
                InstructionRow(
                    f"LA_INS_{k}a",
                    "LA",
                    f"What colour is circle {k}?",
                    f"It is colour {k}.",
                    [f"LA_IMG_{k}"],
                    source_id=f"coco-{k}",
                    extra=ann,
                )
            )
            rows.append(
                InstructionRow(
                    f"LA_INS_{k}b",
                    "LA",
                    f"Where is circle {k}?",
                    "Near the top.",
                    [f"LA_IMG_{k}"],
                    source_id=f"coco-{k}",
                )
            )
        rows.append(
            InstructionRow(
                "LA_INS_0a_zh",
                "LA",
                "圆是什么颜色?",
                "红色。",
                ["LA_IMG_0"],
                lang="zh",
                parent_id="LA_INS_0a",
                source_id="coco-0",
            )
        )
        rows.append(
            InstructionRow(
                "SD_INS_0",
                "SD",
                "What changed between the images?",
                "The circle moved right.",
                ["SD_IMG_7_1", "SD_IMG_7_2"],
                source_id="7",
                extra={"annotation": {"sentences": ["the circle moved right"]}},
            )
        )
        rows.append(
            InstructionRow(
                "DC_INS_0",
                "DC",
                "What does the ball do?",
                "It rolls to the right.",
                [f"v_ball_f{f:03d}" for f in range(4)],
                source_id="v_ball",
                extra={"annotation": {"timestamps": [[0, 2]], "sentences": ["A ball rolls."]}},
            )
        )
        with c.transaction():
            c.add_instructions(rows, gen)
        c.quarantine(
            "generate",
            "no 'Question:' line in the reply",
            source="captions.json",
            record_id="coco-1",
            raw="I cannot see the picture. <script>alert(1)</script>",
            run_id=gen,
        )
        c.quarantine(
            "generate",
            "reply cut off at max_tokens",
            source="train.json",
            record_id="9",
            raw="Q: wh",
            run_id=gen,
        )
        c.finish_run(
            gen,
            summary={
                "pairs": len(rows),
                "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
                "cost_usd": 0.0123,
                "req_per_s": 4.5,
            },
        )

        gen2 = c.start_run("generate --task LA", {"model": "openai/gpt-4o-mini"})
        with c.transaction():
            c.add_instructions(
                [
                    InstructionRow(
                        "LA_INS_9", "LA", "Is there a circle?", "Yes.", ["LA_IMG_2"], source_id="coco-9"
                    )
                ],
                gen2,
            )
        c.finish_run(gen2, summary={"pairs": 1})

        ret = c.start_run("retrieve --policy image", {"k": 2})
        c.add_context_sets(
            [
                ("LA_INS_0a", 0, "LA_INS_1a", 0.91),
                ("LA_INS_0a", 1, "LA_INS_2a", 0.85),
                ("SD_INS_0", 0, "LA_INS_9", 0.40),
            ],
            "image-knn",
            ret,
        )
        c.finish_run(ret, summary={"queries": 2})
        return BuiltCorpus(root, gen, gen2, ret, {"DC": 1, "LA": 4, "SD": 1})
    finally:
        c.close()


def write_training_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    log = [{"step": s, "loss": 3.0 / (1 + 0.3 * s), "learning_rate": 1e-4} for s in range(1, 21)]
    (root / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    im = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(im).line([(0, 10), (100, 70), (200, 90)], fill=(30, 90, 200), width=3)
    im.save(root / "loss.png")
    with open(root / "eval_samples.jsonl", "w") as f:
        f.write(
            json.dumps(
                {
                    "image_ids": ["LA_IMG_0"],
                    "instruction": "What colour is it?",
                    "prediction": "red red",
                    "reference": "It is red.",
                }
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {"image_id": "missing_img", "instruction": "Describe.", "prediction": "a", "reference": "b"}
            )
            + "\n"
        )
    return root


@pytest.fixture
def corpus(tmp_path) -> BuiltCorpus:
    return build_corpus(tmp_path / "corpus")


@pytest.fixture
def train_dir(tmp_path) -> Path:
    return write_training_dir(tmp_path / "train-out")
