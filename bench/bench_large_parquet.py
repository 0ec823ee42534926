"""Import of an images parquet whose base64 column exceeds 2 GB inside a single row group.

Arrow's 32-bit string offsets cap one array at 2 GiB, which is what breaks naive readers of
big MIMIC-IT parquets. This writes such a file (one row group, ~2.3 GB of base64), imports it
in a child process, and reports the child's peak RSS next to the file size: streaming row
batches should keep memory at a small fraction of the file.

    python bench/bench_large_parquet.py [--gb 2.3]

Figures go to bench/results/large_parquet.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "large"
RESULTS = ROOT / "bench" / "results" / "large_parquet.json"

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from curation.store import Corpus
from curation.mimicit_io import import_mimicit
t0 = time.perf_counter()
with Corpus(sys.argv[2]) as c:
    r = import_mimicit(c, Path(sys.argv[1]), images=[Path(sys.argv[4])])
dt = time.perf_counter() - t0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": dt, "images": r.images_added, "image_bytes": r.image_bytes, "peak_rss_mb": hwm / 1024}))
"""


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.3, help="Size of the base64 column in GB.")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "JPEG")
    head = buf.getvalue()
    per_image = 3 << 20  # bytes of base64 per image
    n = int(args.gb * 1e9 // per_image) + 1
    pq_path = WORK / "big.parquet"
    ins_path = WORK / "BIG_instructions.json"
    if not pq_path.exists():
        print(f"writing {n} images of {per_image / 1e6:.1f} MB base64 in ONE row group ...", flush=True)
        ids = [f"BIG_IMG_{i:06d}" for i in range(n)]
        chunks = []
        for start in range(0, n, 64):
            # A valid JPEG followed by padding (decoders ignore trailing bytes); unique per image.
            b64 = [
                base64.b64encode(head + os.urandom(per_image * 3 // 4 - len(head))).decode()
                for _ in range(min(64, n - start))
            ]
            chunks.append(pa.array(b64, pa.large_string()))
        col = pa.chunked_array(chunks)
        del chunks
        table = pa.table({"id": ids, "base64": col})
        pq.write_table(table, pq_path, row_group_size=n + 1, compression="none", use_dictionary=False)
        del table, col
    md = pq.ParquetFile(pq_path).metadata
    col_bytes = md.row_group(0).column(1).total_uncompressed_size
    ins_path.write_text(
        json.dumps(
            {
                "meta": {},
                "data": {
                    "BIG_INS_00001": {
                        "instruction": "q",
                        "answer": "a",
                        "image_ids": ["BIG_IMG_000000"],
                        "rel_ins_ids": [],
                    }
                },
            }
        )
    )
    corpus = WORK / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ins_path), str(corpus), str(ROOT), str(pq_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    child = json.loads(out.strip().splitlines()[-1])
    res = {
        "row_groups": md.num_row_groups,
        "base64_column_bytes_in_one_row_group": col_bytes,
        "file_bytes": pq_path.stat().st_size,
        "images": child["images"],
        "import_seconds": child["seconds"],
        "import_mb_per_s": child["image_bytes"] / 1e6 / child["seconds"],
        "peak_rss_mb": child["peak_rss_mb"],
        "peak_rss_over_file": child["peak_rss_mb"] * 1e6 / pq_path.stat().st_size,
        "wall_s": time.perf_counter() - t0,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    shutil.rmtree(corpus, ignore_errors=True)


if __name__ == "__main__":
    main()
