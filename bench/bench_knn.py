"""All-items kNN benchmark: the size-chosen approximate index vs exact Flat search.

Data: a clustered, low-intrinsic-dimension Gaussian mixture that looks like real embeddings
(1000 clusters with Zipf-like sizes; inside a cluster points vary along a random 16-d subspace
with decaying variances, plus small isotropic noise (sd 0.005 per dim); rows L2-normalised), not isotropic noise.

Baseline: exact Flat search (faiss.knn, BLAS) of a seeded subsample of queries against all
items, scaled to all items. Both run in this process with the same thread count.

    python bench/bench_knn.py [--n 200000] [--dim 512] [--k 8] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse on a busy box

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.index import _exact_rows, all_items_knn, recall_at_k, set_threads  # noqa: E402


def clustered_vectors(n: int, d: int, seed: int = 0, clusters: int = 1000, intrinsic: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, clusters + 1) ** 0.7
    lab = rng.choice(clusters, n, p=w / w.sum())
    x = np.empty((n, d), np.float32)
    scales = (0.5 / np.arange(1, intrinsic + 1) ** 0.5).astype(np.float32)
    for c in range(clusters):
        idx = np.flatnonzero(lab == c)
        if len(idx) == 0:
            continue
        basis = np.linalg.qr(rng.standard_normal((d, intrinsic)))[0].T.astype(np.float32)
        z = rng.standard_normal((len(idx), intrinsic)).astype(np.float32) * scales
        x[idx] = centers[c] + z @ basis + 0.005 * rng.standard_normal((len(idx), d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def run(n: int, d: int, k: int, threads: int, exact_queries: int, seed: int = 0) -> dict:
    set_threads(threads)
    import torch  # noqa: F401  (the cell join multiplies in torch; `syphus retrieve` has it loaded

    # for embedding already, so its one-time import is not charged to the search)
    x = clustered_vectors(n, d, seed)
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(n, min(n, exact_queries), replace=False))
    t0 = time.perf_counter()
    exact = _exact_rows(x, rows, k)
    exact_s = (time.perf_counter() - t0) * n / len(rows)
    t0 = time.perf_counter()
    _, nbr, rep = all_items_knn(
        x, k, kind="auto", threads=threads, seed=seed, target_recall=0.95, recall_sample=500
    )
    approx_s = time.perf_counter() - t0
    rec = recall_at_k(nbr[rows], exact, k)
    return {
        "n": n,
        "dim": d,
        "k": k,
        "threads": threads,
        "index": rep.kind,
        "params": rep.params,
        "exact_flat_s_scaled": round(exact_s, 2),
        "exact_queries_measured": len(rows),
        "approx_total_s": round(approx_s, 2),
        "approx_build_s": rep.build_s,
        "approx_search_s": rep.search_s,
        "speedup": round(exact_s / approx_s, 1),
        "recall_at_k": round(rec, 4),
        "recall_at_k_reported_by_run": round(rep.recall_at_k, 4) if rep.recall_at_k is not None else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[200_000], help="item counts to run")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact-queries", type=int, default=2000, help="queries timed for the exact baseline")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "knn.json"))
    a = ap.parse_args()
    results = []
    for n in a.n:
        r = run(n, a.dim, a.k, a.threads, a.exact_queries)
        print(json.dumps(r), flush=True)
        results.append(r)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "all-items kNN", "results": results}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
