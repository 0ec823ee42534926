"""Proof that the trainer teaches the model to read images and in-context examples.

Three tiny Otters train at once through ``python -m trainer.train`` (DeepSpeed on CPU):
synthetic shapes VQA with real images, the same with blank images (a control that can only
learn answer priors), and a task that only its in-context examples define.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from .helpers import QUESTIONS, mode_vqa, shapes_vqa, train_env, write_shards

pytestmark = pytest.mark.slow

CONFIG = """model: {{name: tiny}}
train_lm: {train_lm}
batch_size: 16
max_steps: {steps}
lr: 2.0e-3
warmup_steps: 20
zero_stage: 0
save_every: 100000
log_every: 50
torch_threads: 1
seed: 0
"""


def _image(images: dict[str, bytes], image_id: str) -> Image.Image:
    return Image.open(io.BytesIO(images[image_id])).convert("RGB")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("learning")
    jobs = {
        "shapes": (shapes_vqa(2000, seed=0), "IMAGE_TEXT", False, 400),
        "blank": (shapes_vqa(2000, seed=0, blank=True), "IMAGE_TEXT", False, 400),
        "in_context": (mode_vqa(2000, seed=0), "IMAGE_TEXT_IN_CONTEXT", True, 300),
    }
    procs = {}
    for name, ((rows, images), group, train_lm, steps) in jobs.items():
        write_shards(root / name / "shards", rows, images)
        (root / name / "mix.yaml").write_text(f"{group}:\n  {name}:\n    shards_path: shards\n")
        (root / name / "train.yaml").write_text(CONFIG.format(train_lm=str(train_lm).lower(), steps=steps))
        cmd = [
            sys.executable,
            "-m",
            "trainer.train",
            "--mix",
            "mix.yaml",
            "--config",
            "train.yaml",
            "--out",
            "run",
        ]
        procs[name] = subprocess.Popen(
            cmd,
            cwd=root / name,
            env=train_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, p in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name}: {err[-3000:]}"
    return {name: root / name / "run" / "model" for name in jobs}


def _shapes_accuracy(model_dir: Path) -> tuple[float, dict[str, float]]:
    from trainer.chat import Chat, Question

    rows, images = shapes_vqa(300, seed=123, prefix="H")  # held out: other images, other seed
    chat = Chat.load(model_dir)
    answers = chat.ask_many(
        [Question(r["instruction"], _image(images, r["image_ids"][0])) for r in rows],
        max_new_tokens=4,
        batch_size=64,
    )
    total, right = Counter(), Counter()
    for a, r in zip(answers, rows, strict=True):
        total[r["instruction"]] += 1
        right[r["instruction"]] += a == r["answer"]
    return sum(right.values()) / len(rows), {q: right[q] / total[q] for q in total}


def test_it_reads_the_image_and_blank_images_stay_near_chance(trained):
    acc, per_question = _shapes_accuracy(trained["shapes"])
    blank, _ = _shapes_accuracy(trained["blank"])
    chance = sum(1 / len(options) for _, options in QUESTIONS.values()) / len(QUESTIONS)  # ~0.36
    print(
        f"held-out exact match: {acc:.3f} {per_question}; blank-image control: {blank:.3f} (chance {chance:.3f})"
    )
    assert acc >= 0.9
    assert blank <= chance + 0.15
    assert all(v >= 0.8 for v in per_question.values())


def test_in_context_examples_define_the_task(trained):
    from trainer.chat import Chat, ContextExample, Question

    rows, images = mode_vqa(200, seed=321, prefix="H")
    chat = Chat.load(trained["in_context"])

    def accuracy(with_context: bool) -> float:
        qs = [
            Question(
                r["instruction"],
                _image(images, r["image_ids"][0]),
                [
                    ContextExample(_image(images, c["image_ids"][0]), c["instruction"], c["answer"])
                    for c in r["context"]
                ]
                if with_context
                else [],
            )
            for r in rows
        ]
        answers = chat.ask_many(qs, max_new_tokens=4, batch_size=64)
        return sum(a == r["answer"] for a, r in zip(answers, rows, strict=True)) / len(rows)

    with_ctx, without = accuracy(True), accuracy(False)
    print(f"in-context task: {with_ctx:.3f} with its examples, {without:.3f} without")
    assert with_ctx >= 0.85
    assert with_ctx - without >= 0.25
