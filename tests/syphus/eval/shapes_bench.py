"""A small benchmark of drawn shapes, in the form a user's own benchmark takes (``--bench
tests.syphus.eval.shapes_bench:SHAPES``): its files are ``questions.jsonl`` (id, question, image,
answer) beside PNGs. ``JUDGED`` scores through the judge, one request per sample, as MM-Vet does."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from syphus.eval.samples import BenchResult, Sample, Verdict
from syphus.eval.stats import proportion

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (40, 60, 230)}


def png(colour: str, where: str, size: int = 32) -> bytes:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    cx = size // 4 if where == "left" else 3 * size // 4
    r = size // 5
    ImageDraw.Draw(img).ellipse((cx - r, size // 2 - r, cx + r, size // 2 + r), fill=COLOURS[colour])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_shapes(folder: Path, n: int = 12) -> Path:
    """``n`` questions (a few with two images, one with none) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = list(COLOURS)
    with open(folder / "questions.jsonl", "w") as f:
        for i in range(n):
            colour, where = colours[i % 3], ("left", "right")[i % 2]
            images = [] if i == 5 else [f"{i}.png"] + ([f"{i}b.png"] if i % 4 == 1 else [])
            for k, name in enumerate(images):
                (folder / name).write_bytes(png(colours[(i + k) % 3], where))
            words = " and".join([" the shape"] * (1 + i % 3))
            f.write(json.dumps({"id": f"q{i}", "question": f"Is{words} {colour}?", "images": images,
                                "answer": "yes" if i % 2 else "no", "category": where}) + "\n")  # fmt: skip
    return folder


class Shapes:
    name = "shapes"
    max_new_tokens = 6
    judged = False

    def read(self, path: Path, *, split=None, limit=None):
        lines = (Path(path) / "questions.jsonl").read_text().splitlines()
        for line in lines[:limit]:
            r = json.loads(line)
            images = [(Path(path) / p).read_bytes() for p in r["images"]]
            yield Sample(self.name, r["id"], r["question"], images, r["answer"], {}, r["category"], {})

    def prompt(self, s: Sample, style=None) -> str:
        return f"{s.question} Answer yes or no." if style != "bare" else s.question

    def score(self, samples, predictions, *, judge=None) -> BenchResult:
        verdicts = []
        grades = {}
        if self.judged:
            asks = [
                (
                    s.id,
                    [
                        {
                            "role": "user",
                            "content": f"Sample {s.id}. Target: {s.target}. Prediction: {predictions[s.id]}. Grade 0 or 1.",
                        }
                    ],
                )
                for s in samples
            ]
            for (sid, _), reply in zip(asks, judge(asks), strict=True):
                grades[sid] = 1.0 if reply and "1" in reply else 0.0
        for s in samples:
            pred = predictions[s.id]
            parsed = pred.strip().lower().rstrip(".") or None
            correct = grades[s.id] if self.judged else float(parsed == s.target)
            verdicts.append(
                Verdict(s.id, pred, parsed, s.target, correct, s.category, "judge" if self.judged else "rule")
            )
        metrics = [proportion("accuracy", [v.correct for v in verdicts])]
        return BenchResult(self.name, metrics, verdicts, [])


class JudgedShapes(Shapes):
    name = "shapes_judged"
    judged = True


SHAPES = Shapes()
JUDGED = JudgedShapes()
