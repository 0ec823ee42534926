"""Test data for the trainer: shards and MIMIC-IT files written directly, and PIL-drawn images."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# The one generator of drawn shapes (the demo's task too), re-exported for the tests here.
from curation.shapes import COLOURS, QUESTIONS, draw, shapes_questions  # noqa: F401
from schemas.shards import ShardFiles, ShardManifest
from tests.paths import REPO


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``syphus ARGV`` in this process: (exit code, stdout, stderr)."""
    from syphus.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def run_python(*args: str, timeout: float = 600):
    """``python ARGS`` from the repo root in ``train_env()``; fails the test on a non-zero exit,
    showing the end of stderr. Returns the CompletedProcess (text)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def train_env() -> dict:
    """Environment for a training subprocess: DeepSpeed on CPU, one thread, the repo importable."""
    import os

    return {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def start_training(cmd: list[str]):
    """A training command as its own process session (so one killpg stops all it started), with
    stderr piped for the test's assertions."""
    import subprocess

    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=train_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


# The exporter's own schemas, so these test shards cannot drift from what it writes.
from curation.shards_export import IMAGES_SCHEMA  # noqa: E402
from curation.shards_export import INSTRUCTION_SCHEMA as PART_SCHEMA  # noqa: E402


def row(
    id: str,
    instruction: str,
    answer: str,
    image_ids: list[str],
    *,
    task: str = "SYN",
    lang: str = "en",
    media: str = "image",
    context: list[dict] | None = None,
) -> dict:
    return {
        "id": id,
        "task": task,
        "lang": lang,
        "media": media if image_ids else "none",
        "instruction": instruction,
        "answer": answer,
        "image_ids": image_ids,
        "context": context or [],
    }


def write_shards(root: Path, rows: list[dict], images: dict[str, bytes], rows_per_part: int = 1000) -> Path:
    """A shard directory in the ``schemas/shards.py`` format (what ``syphus export shards`` writes)."""
    root.mkdir(parents=True, exist_ok=True)
    parts = []
    for p, start in enumerate(range(0, len(rows), rows_per_part)):
        chunk = rows[start : start + rows_per_part]
        need = sorted(
            {i for r in chunk for i in r["image_ids"]}
            | {i for r in chunk for c in r["context"] for i in c["image_ids"]}
        )
        need = [i for i in need if i in images]
        ins, img = f"part-{p:05d}.parquet", f"images-{p:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, schema=PART_SCHEMA), root / ins, row_group_size=64)
        table = pa.table({"image_id": need, "bytes": [images[i] for i in need]}, schema=IMAGES_SCHEMA)
        pq.write_table(table, root / img, row_group_size=64, compression="none")
        parts.append(ShardFiles(instructions=ins, images=img, rows=len(chunk), images_rows=len(need)))
    manifest = ShardManifest(created_at="2026-01-01T00:00:00+00:00", rows=len(rows), shards=parts)
    (root / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return root


def write_mimicit(
    root: Path, name: str, records: dict[str, dict], images: dict[str, bytes], train: dict | None = None
):
    """Original MIMIC-IT files: instructions JSON, a pandas-style images parquet, optional train JSON."""
    root.mkdir(parents=True, exist_ok=True)
    ins = root / f"{name}_instructions.json"
    ins.write_text(json.dumps({"meta": {"version": "0.0.1"}, "data": records}))
    import pandas as pd

    df = pd.DataFrame({"base64": [base64.b64encode(b).decode() for b in images.values()]}, index=list(images))
    par = root / f"{name}.parquet"
    df.to_parquet(par)
    tr = None
    if train is not None:
        tr = root / f"{name}_train.json"
        tr.write_text(json.dumps(train))
    return ins, par, tr


def tiny_processing(image_size: int = 32):
    """The tiny tokenizer with Otter's special tokens, their ids, and an image processor."""
    from trainer.model.language import add_special_tokens, build_tiny_tokenizer
    from trainer.model.vision import OtterImageProcessor
    from trainer.prompting import SpecialTokens

    tok = build_tiny_tokenizer()
    ids = add_special_tokens(tok)
    special = SpecialTokens(
        media_id=ids["media_token_id"],
        endofchunk_id=ids["endofchunk_token_id"],
        answer_id=ids["answer_token_id"],
        pad_id=ids["pad_token_id"],
        bos_id=tok.bos_token_id,
    )
    return tok, special, OtterImageProcessor(image_size=image_size)


def shapes_vqa(n: int, seed: int, prefix: str = "V", blank: bool = False):
    """Synthetic visual QA as shard rows: (rows, images) with one shape per 32x32 image, drawn by
    ``curation.shapes`` (chance: 1/4 colour, 1/3 shape, 1/2 position). ``blank`` keeps the
    questions and answers but draws empty canvases: the control that shows the model reads the image.
    """
    qs = shapes_questions(n, seed, prefix=prefix, blank=blank)
    rows = [row(q.id, q.question, q.answer, [q.image_id], task="SHAPES") for q in qs]
    return rows, {q.image_id: q.image for q in qs}


def mode_vqa(n: int, seed: int, prefix: str = "M", shots: int = 2):
    """A task defined only by its in-context examples: every sample asks "What is this?", and
    whether the answer is the shape's colour or its shape is shown only by the ``shots``
    examples before it (each with its own image). Without them the best one can do is guess
    which of the two is wanted."""
    import random

    rng = random.Random(seed)
    rows, images = [], {}

    def one(tag: str, mode: str):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(QUESTIONS["shape"][1])
        image_id = f"{prefix}{tag}"
        images[image_id] = draw(shape, colour, rng.choice(["left", "right"]))
        return image_id, colour if mode == "colour" else shape

    for i in range(n):
        mode = rng.choice(["colour", "shape"])
        context = []
        for k in range(shots):
            image_id, answer = one(f"c{i:05d}_{k}", mode)
            context.append(
                {
                    "id": f"{prefix}_CTX_{i:05d}_{k}",
                    "instruction": "What is this?",
                    "answer": answer,
                    "image_ids": [image_id],
                }
            )
        image_id, answer = one(f"q{i:05d}", mode)
        rows.append(
            row(f"{prefix}_INS_{i:05d}", "What is this?", answer, [image_id], task="MODE", context=context)
        )
    return rows, images
