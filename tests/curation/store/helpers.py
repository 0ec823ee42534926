"""Small MIMIC-IT-format files drawn and written by the tests themselves."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw


def jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    im = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 17) % 256))
    d = ImageDraw.Draw(im)
    d.ellipse((seed % 20, 5, 30 + seed % 20, 35), fill=(255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (seed % 256, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def write_mimicit(
    root: Path,
    task: str = "LA",
    n_images: int = 10,
    n_ins: int = 20,
    *,
    urlsafe_every: int = 0,
    index_as_column: bool = False,
    images_json: bool = False,
) -> dict[str, Path]:
    """Write {task}_instructions.json, {task}_train.json and the images (parquet or JSON)."""
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"{task}_IMG_{i:06d}" for i in range(n_images)]
    raw = {iid: jpeg(i) if i % 5 else png(i) for i, iid in enumerate(ids)}
    b64 = {}
    for i, (iid, b) in enumerate(raw.items()):
        if urlsafe_every and i % urlsafe_every == 0:
            b64[iid] = base64.urlsafe_b64encode(b).decode().rstrip("=")
        else:
            b64[iid] = base64.b64encode(b).decode()
    data = {
        f"{task}_INS_{i:05d}": {
            "instruction": f"What is in image {i}? ünïcödé 图片",
            "answer": f"Answer {i}.",
            "image_ids": [ids[i % n_images]] + ([ids[(i + 1) % n_images]] if i % 3 == 0 else []),
            "rel_ins_ids": [f"{task}_INS_{(i + 1) % n_ins:05d}", f"{task}_INS_{(i + 2) % n_ins:05d}"],
        }
        for i in range(n_ins)
    }
    files = {"instructions": root / f"{task}_instructions.json", "train": root / f"{task}_train.json"}
    files["instructions"].write_text(
        json.dumps(
            {"meta": {"version": "0.0.1", "time": "2023-06-01", "author": "test"}, "data": data},
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    files["train"].write_text(json.dumps({k: [f"{task}_INS_{(int(k[-5:]) + 5) % n_ins:05d}"] for k in data}))
    if images_json:
        files["images"] = root / f"{task}_images.json"
        files["images"].write_text(json.dumps(b64))
    else:
        files["images"] = root / f"{task}.parquet"
        df = pd.DataFrame({"base64": list(b64.values())}, index=pd.Index(list(b64), name=None))
        if index_as_column:
            df = df.reset_index().rename(columns={"index": "id"})
            df.to_parquet(files["images"], index=False)
        else:
            df.to_parquet(files["images"])
    files["_raw"] = raw  # type: ignore[assignment]
    return files


def run_syphus(*args) -> tuple[int, str, str]:
    """Run the CLI in this process, as a user would (one-line errors, exit codes), and return
    (exit code, stdout, stderr); faster than a subprocess for the many small calls of a test."""
    import contextlib

    from syphus.cli import main, ui

    out, err = io.StringIO(), io.StringIO()
    rc = 0
    widths = ui.out.width, ui.console.width
    ui.out.width = ui.console.width = 400  # summary rows on one line each, whatever the terminal
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        finally:
            ui.out.width, ui.console.width = widths
    return rc, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    """The single 'error:' line a failed command printed (and no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def summary_value(out: str, label: str) -> str:
    """The value beside ``label`` in a summary table the CLI printed."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) >= 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no summary row '{label}' in:\n{out}")
