"""Embedding throughput: the whole path vs the model alone, same model and batch size.

Whole path: read each image's bytes from the corpus shards (one pread), decode the JPEG and
resize/crop in DataLoader worker processes, encode in the main process (curation.embed.pipeline).
Baseline: the same model on the same images already decoded and preprocessed to tensors in
memory. Both are timed in this process, alternating, and the medians compared.

Images: 640x480 JPEGs (COCO-like size) drawn with PIL: random shapes over a noise texture,
so decoding costs what a photo costs.

    python bench/bench_embed.py [--images 384] [--batch-size 32] [--workers 1 2] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402

from curation.embed.models import load_embedder  # noqa: E402
from curation.embed.pipeline import ImageBytesDataset, image_batches  # noqa: E402
from curation.store import Corpus  # noqa: E402


def drawn_jpeg(rng: np.random.Generator) -> bytes:
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    im = Image.fromarray(noise).resize((640, 480), Image.BILINEAR)
    base = Image.new("RGB", (640, 480), tuple(int(c) for c in rng.integers(0, 256, 3)))
    im = Image.blend(base, im, 0.35)
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, 560)), int(rng.integers(0, 400))
        box = [x0, y0, x0 + int(rng.integers(30, 200)), y0 + int(rng.integers(30, 200))]
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=col)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="effnet:lite0")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "embed.json"))
    a = ap.parse_args()
    import torch

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        c = Corpus(Path(tmp) / "corpus")
        run = c.start_run("bench")
        with c.image_writer(run) as w:
            for i in range(a.images):
                w.add(f"img{i}", drawn_jpeg(rng))
        c.finish_run(run)
        items = c.image_items()
        emb = load_embedder(a.model)
        # pre-decoded tensors for the model-only baseline (decoded once, outside the timing)
        ds = ImageBytesDataset(items, emb.image_decoder())
        tensors = [ds[i][1] for i in range(len(ds))]
        batches = [torch.stack(tensors[s : s + a.batch_size]) for s in range(0, len(tensors), a.batch_size)]
        emb.encode_images(batches[0])  # warm-up

        def model_only() -> float:
            t0 = time.perf_counter()
            for b in batches:
                emb.encode_images(b)
            return len(tensors) / (time.perf_counter() - t0)

        def whole(workers: int) -> float:
            t0 = time.perf_counter()
            n = sum(len(k) for k, _ in image_batches(emb, items, batch_size=a.batch_size, workers=workers))
            return n / (time.perf_counter() - t0)

        base, full = [], {w: [] for w in a.workers}
        for _ in range(a.repeats):
            base.append(model_only())
            for w in a.workers:
                full[w].append(whole(w))
        c.close()
    mb = statistics.median(base)
    res = {
        "model": emb.name,
        "images": a.images,
        "image_size": "640x480 JPEG q90",
        "batch_size": a.batch_size,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "repeats": a.repeats,
        "model_only_img_per_s": round(mb, 2),
        "whole_path": {
            str(w): {
                "img_per_s": round(statistics.median(v), 2),
                "ratio_to_model_only": round(statistics.median(v) / mb, 3),
            }
            for w, v in full.items()
        },
    }
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "embedding throughput", "results": res}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
