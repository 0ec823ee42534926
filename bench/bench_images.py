"""Benchmark: generate with an image in every request vs the same run without images (issue 12).

256 requests in flight against the local OpenAI-compatible server in its own process, latency
lognormal (mean 0.5 s, sigma 0.5) as in bench_generate.py. Each request of the image run carries
one distinct ~100 KB 640x480 JPEG from the corpus (sent as stored: it fits the default longest
side of 768, so nothing is re-encoded; the client reads it, checks its sha256, base64s it into an
``image_url`` data URL). The server runs with ``--no-inspect-images`` (it does not decode the
images) so that the figures are the client's, not the test server's. The text run sends the same annotations without images. Both runs are
the whole ``generate`` call (reading annotations, planning, the request log, parsing, storing),
alternated ``--reps`` times in this process; the best of each is compared.

Reported: requests/s of each run and their ratio (target >= 0.90), client CPU seconds per request
(this process only: the server runs elsewhere) for each and the difference, and the planning time
(reading and checking every image before the first request).

Run: ``python bench/bench_images.py [--n 3000] [--reps 2]``; figures go to
``bench/results/images.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_generate import Server, zero_overhead_req_per_s  # noqa: E402

from curation.mimicit_io import import_image_files  # noqa: E402
from curation.store import Corpus  # noqa: E402
from syphus.engine.pipeline import GenerateOptions, generate  # noqa: E402
from syphus.testing.echo_task import EchoTask  # noqa: E402

IN_FLIGHT, MEAN, SIGMA = 256, 0.5, 0.5


def write_jpegs(folder: Path, n: int) -> int:
    """``n`` distinct 640x480 photo-like JPEGs of about 100 KB (a gradient under noise, each
    shifted differently). Returns the mean size in bytes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x * 255 / 640, y * 255 / 480, (x + y) * 255 / 1120], -1)
    noisy = np.clip(base + rng.normal(0, 17, base.shape), 0, 255).astype(np.uint8)
    total = 0
    for i in range(n):
        img = np.roll(noisy, (i * 7) % 480, axis=0)
        img = np.roll(img, (i * 13) % 640, axis=1)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=85)
        (folder / f"IMG_{i}.jpg").write_bytes(buf.getvalue())
        total += len(buf.getvalue())
    return total // n


def write_notes(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"n{i}", "text": f"scene {i}: a room with {i % 7} chairs",
                                "image_ids": [f"IMG_{i}"]}) + "\n")  # fmt: skip
    return path


def one_run(tmp: Path, notes: Path, corpus_src: Path, tag: str, with_images: bool) -> dict:
    """One whole generate call into a fresh copy of the corpus, against a fresh server (same seed,
    so both runs see the same latency draws)."""
    import shutil

    corpus = tmp / f"c-{tag}"
    shutil.copytree(corpus_src, corpus)
    # the server does not decode the images: this measures the client, not the test server
    srv = Server(f"lognormal:{MEAN}:{SIGMA}", tmp, "--no-inspect-images")
    try:
        opts = GenerateOptions(model="vlm", api_base=srv.base, concurrency=IN_FLIGHT, max_tokens=64,
                               timeout=60, with_images=with_images)  # fmt: skip
        cpu0, t0 = time.process_time(), time.perf_counter()
        s = generate(EchoTask(), [notes], corpus, opts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert s["done"] == s["requests"] and s["errors"] == 0, s
        stats = srv.stats()
        assert max(stats["completed"].values()) == 1
    finally:
        srv.close()
        shutil.rmtree(corpus, ignore_errors=True)
    n = s["done"]
    return {
        "requests": n,
        "wall_s": round(wall, 3),
        "req_per_s": round(n / wall, 1),
        "send_phase_req_per_s": round(s["req_per_s"], 1),
        "plan_s": round(wall - s["wall_s"], 3),
        "client_cpu_ms_per_request": round(1000 * cpu / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="requests per run")
    ap.add_argument("--reps", type=int, default=2, help="runs of each kind, alternated")
    a = ap.parse_args()
    out_path = ROOT / "bench" / "results" / "images.json"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        mean_bytes = write_jpegs(tmp / "imgs", a.n)
        corpus = tmp / "corpus"
        with Corpus(corpus) as c:
            import_image_files(c, str(tmp / "imgs"), id_pattern="{stem}", skip_bad=False)
        print(
            f"{a.n} JPEGs of ~{mean_bytes / 1000:.0f} kB imported in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        notes = write_notes(tmp / "notes.jsonl", a.n)
        runs: dict[str, list[dict]] = {"text": [], "images": []}
        for rep in range(a.reps):
            for kind in ("text", "images"):
                r = one_run(tmp, notes, corpus, f"{kind}-{rep}", kind == "images")
                runs[kind].append(r)
                print(kind, json.dumps(r), flush=True)
    best = {k: max(v, key=lambda r: r["req_per_s"]) for k, v in runs.items()}
    result = {
        "machine": {"cpus": os.cpu_count()},
        "setup": {
            "in_flight": IN_FLIGHT,
            "latency": f"lognormal mean {MEAN} s sigma {SIGMA}",
            "requests": a.n,
            "image": f"one distinct 640x480 JPEG per request, mean {mean_bytes} bytes",
            "ideal_req_per_s": round(zero_overhead_req_per_s(a.n, IN_FLIGHT, MEAN, SIGMA), 1),
        },  # fmt: skip
        "text": best["text"],
        "images": best["images"],
        "throughput_ratio": round(best["images"]["req_per_s"] / best["text"]["req_per_s"], 3),
        "target_ratio": 0.9,
        "extra_client_cpu_ms_per_request": round(
            best["images"]["client_cpu_ms_per_request"] - best["text"]["client_cpu_ms_per_request"], 3
        ),
        "all_runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "all_runs"}, indent=1))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
