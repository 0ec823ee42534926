"""Store benchmark: random image reads by id, peak memory, and import throughput.

Builds an LA-like corpus (20k JPEGs of about 60 KB, 100k instructions) as an Otter-format
base64 parquet, imports it, and measures in the same run against the way the original Otter
trainer loads images: the whole parquet into a pandas DataFrame of base64 strings, then
``.loc[id]`` and a base64 decode per sample.

    python bench/bench_store.py [--images 20000] [--instructions 100000] [--reads 10000]

Figures go to bench/results/store.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / "bench" / "work" / "store"
RESULTS = ROOT / "bench" / "results" / "store.json"


def make_jpegs(n: int, target_kb: int = 60):
    """Photo-like JPEGs: smooth gradients + texture noise, each distinct, about target_kb."""
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = 360, 480
    yy, xx = np.mgrid[0:h, 0:w]
    bases = []
    for k in range(16):
        a, b, c = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack(
            [
                128 + 100 * np.sin(xx / (40 + 7 * k) + a),
                128 + 100 * np.cos(yy / (30 + 5 * k) + b),
                128 + 100 * np.sin((xx + yy) / (50 + 3 * k) + c),
            ],
            -1,
        )
        bases.append(img)
    noise = rng.normal(0, 14, size=(h, w, 3))
    for i in range(n):
        img = bases[i % 16] + np.roll(noise, shift=(i * 7) % h, axis=0)
        img[(i * 13) % (h - 8) : (i * 13) % (h - 8) + 8, (i * 29) % (w - 8) : (i * 29) % (w - 8) + 8] = (
            i % 255
        )
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        yield f"LA_IMG_{i:012d}", buf.getvalue()


def build_inputs(n_images: int, n_ins: int) -> tuple[Path, Path, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    WORK.mkdir(parents=True, exist_ok=True)
    pq_path = WORK / f"LA_{n_images}.parquet"
    ins_path = WORK / f"LA_{n_images}_{n_ins}_instructions.json"
    meta_path = WORK / f"LA_{n_images}.bytes"
    if not pq_path.exists():
        print(f"drawing {n_images} JPEGs ...", flush=True)
        ids: list[str] = []
        b64: list[str] = []
        total = 0
        tmp = pq_path.with_suffix(".partial")
        import pandas as pd

        # pandas metadata so that pd.read_parquet gives an id index, like Otter's files
        schema = pa.Schema.from_pandas(pd.DataFrame({"base64": ["x"]}, index=pd.Index(["i"], name="id")))
        writer = pq.ParquetWriter(tmp, schema)
        for iid, data in make_jpegs(n_images):
            ids.append(iid)
            b64.append(base64.b64encode(data).decode())
            total += len(data)
            if len(ids) == 1000:
                writer.write_table(pa.table({"base64": b64, "id": ids}).cast(schema))
                ids, b64 = [], []
        if ids:
            writer.write_table(pa.table({"base64": b64, "id": ids}).cast(schema))
        writer.close()
        tmp.rename(pq_path)
        meta_path.write_text(str(total))
    if not ins_path.exists():
        data = {
            f"LA_INS_{i:08d}": {
                "instruction": f"What is happening in this picture? ({i})",
                "answer": "A person is riding a bicycle along a road next to a row of parked cars. " * 3,
                "image_ids": [f"LA_IMG_{i % n_images:012d}"],
                "rel_ins_ids": [f"LA_INS_{(i + 1) % n_ins:08d}"],
            }
            for i in range(n_ins)
        }
        ins_path.write_text(json.dumps({"meta": {"version": "bench"}, "data": data}))
    return pq_path, ins_path, int(meta_path.read_text())


READER = r"""
import base64, json, random, sys, time
mode, path, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
t0 = time.perf_counter()
if mode == "baseline":
    import pandas as pd
    df = pd.read_parquet(path)
    ids = list(df.index)
    def get(i):
        return base64.b64decode(df.loc[i]["base64"])
else:
    from curation.store import Corpus
    c = Corpus(path, read_only=True)
    c.load_image_index()
    ids = list(c._index)
    get = c.get_image
setup = time.perf_counter() - t0
rng = random.Random(seed)
sample = [rng.choice(ids) for _ in range(n)]
t0 = time.perf_counter()
nbytes = 0
for i in sample:
    nbytes += len(get(i))
dt = time.perf_counter() - t0
# VmHWM (not ru_maxrss, which a child inherits from its parent's fork) is this process's peak.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"setup_s": setup, "reads": n, "seconds": dt, "per_s": n / dt, "bytes": nbytes,
                  "peak_rss_mb": hwm / 1024}))
"""


def run_reader(mode: str, path: Path, n: int, seed: int = 1) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", READER, mode, str(path), str(n), str(seed), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--instructions", type=int, default=100_000)
    ap.add_argument("--reads", type=int, default=10_000)
    args = ap.parse_args()

    from curation.mimicit_io import import_mimicit
    from curation.store import Corpus

    pq_path, ins_path, raw_bytes = build_inputs(args.images, args.instructions)
    print(
        f"input: {args.images} images, {raw_bytes / 1e6:.0f} MB of JPEG ({raw_bytes / args.images / 1e3:.0f} KB each), "
        f"parquet {pq_path.stat().st_size / 1e6:.0f} MB",
        flush=True,
    )

    corpus_dir = WORK / f"corpus_{args.images}"
    if corpus_dir.exists():
        import shutil

        shutil.rmtree(corpus_dir)
    t0 = time.perf_counter()
    with Corpus(corpus_dir) as c:
        rep = import_mimicit(c, ins_path, images=[pq_path])
    t_import = time.perf_counter() - t0
    import_mb_s = rep.image_bytes / 1e6 / t_import
    print(
        f"import: {t_import:.1f} s, {import_mb_s:.1f} MB/s of image bytes, {rep.instructions_added} instructions",
        flush=True,
    )

    ours = [run_reader("ours", corpus_dir, args.reads, seed) for seed in (1, 2, 3)]
    base = [run_reader("baseline", pq_path, args.reads, seed) for seed in (1, 2, 3)]
    med = lambda xs, k: float(np.median([x[k] for x in xs]))  # noqa: E731
    res = {
        "images": args.images,
        "instructions": args.instructions,
        "mean_image_kb": raw_bytes / args.images / 1e3,
        "reads_per_run": args.reads,
        "ours_reads_per_s": med(ours, "per_s"),
        "baseline_reads_per_s": med(base, "per_s"),
        "read_speed_ratio": med(ours, "per_s") / med(base, "per_s"),
        "ours_peak_rss_mb": med(ours, "peak_rss_mb"),
        "baseline_peak_rss_mb": med(base, "peak_rss_mb"),
        "rss_ratio": med(ours, "peak_rss_mb") / med(base, "peak_rss_mb"),
        "ours_setup_s": med(ours, "setup_s"),
        "baseline_setup_s": med(base, "setup_s"),
        "import_seconds": t_import,
        "import_mb_per_s": import_mb_s,
        "goals": {
            "reads_per_s>=1000": med(ours, "per_s") >= 1000,
            "rss_ratio<=0.25": med(ours, "peak_rss_mb") / med(base, "peak_rss_mb") <= 0.25,
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
