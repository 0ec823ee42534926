"""FAISS index choice and recall measurement against cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from curation.index import IVFJoin, VectorIndex, all_items_knn, choose_kind, recall_at_k


def test_recall_at_k_counts_overlap():
    approx = np.array([[0, 1, 2], [5, 6, -1]])
    exact = np.array([[0, 1, 3], [5, 7, 8]])
    # (2 + 1) hits out of 2 queries * 3
    assert recall_at_k(approx, exact, 3) == pytest.approx(0.5)
    assert recall_at_k(exact, exact, 3) == 1.0


def _blobs(n_clusters=40, per=50, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, d)).astype(np.float32)
    x = np.repeat(centers, per, axis=0) + 0.05 * rng.standard_normal((n_clusters * per, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_index_is_chosen_by_size():
    assert choose_kind(1000) == "flat"
    assert choose_kind(10**6) == "ivf"
    assert choose_kind(10, "hnsw") == "hnsw"


def test_exact_index_finds_itself_and_reports_full_recall():
    x = _blobs()
    sims, nbr, rep = all_items_knn(x, 5, kind="flat")
    assert rep.kind == "flat" and rep.recall_at_k == 1.0
    assert (nbr[:, 0] == np.arange(len(x))).all()


def test_ivf_recall_is_measured_against_exact_search():
    x = _blobs()
    k = 10
    sims, nbr, rep = all_items_knn(x, k, kind="ivf", recall_sample=400, target_recall=0.99, seed=3)
    assert rep.kind == "ivf" and rep.recall_sample == 200
    # recompute recall independently over every item with numpy brute force
    exact = np.argsort(-(x @ x.T), axis=1, kind="stable")[:, :k]
    true_recall = recall_at_k(nbr, exact, k)
    assert true_recall >= 0.99
    assert rep.recall_at_k == pytest.approx(true_recall, abs=0.02)


def test_ivf_join_recall_with_one_cell_is_known():
    # two far-apart clusters and 2 cells, no spill: every item's neighbours are all in its own cell,
    # so the join must be exact (recall 1.0), and its sample recall must say so
    x = _blobs(n_clusters=2, per=100, d=16, seed=1)
    join = IVFJoin(x, nlist=2, seed=0)
    rows = np.arange(0, 200, 7)
    exact = np.argsort(-(x[rows] @ x.T), axis=1, kind="stable")[:, :5]
    assert recall_at_k(join.sample_results(5, rows), exact, 5) == 1.0
    _, nbr = join.run(5)
    assert recall_at_k(nbr[rows], exact, 5) == 1.0


def test_ivf_join_margin_spill_grows_candidates_up_to_every_cell():
    x = _blobs(n_clusters=6, per=60, d=16, seed=2)
    join = IVFJoin(x, nlist=6, seed=0)
    sizes = []
    while True:
        join._candidates(0)
        sizes.append(sum(len(join._candidates(c)) for c in range(join.nlist)))
        if not join.raise_effort():
            break
    assert sizes[0] == len(x)  # margin 0: each item only in its own cell
    assert sizes == sorted(sizes)  # a wider margin never drops a candidate
    assert sizes[-1] == len(x) * min(join.nlist, join.MAX_SPILL) and join.copies == min(
        join.nlist, join.MAX_SPILL
    )


def test_nearest_centroids_bf16_and_fp32_paths_agree(monkeypatch):
    from curation.index import _nearest_centroids

    x = _blobs(n_clusters=5, per=40, d=32, seed=4)
    cents = np.stack([x[i * 40 : (i + 1) * 40].mean(0) for i in range(5)]).astype(np.float32)
    results = {}
    for flag in ("auto", "0"):  # "auto" is bf16 where the CPU has it natively, "0" forces faiss fp32
        monkeypatch.setenv("SYPHUS_KNN_BF16", flag)
        sims, ids = _nearest_centroids(x, cents, 3)
        assert sims.shape == ids.shape == (200, 3) and sims.dtype == np.float32
        results[flag] = (sims, ids)
    assert (results["auto"][1][:, 0] == results["0"][1][:, 0]).all()  # well-separated: same nearest cell
    assert np.abs(results["auto"][0] - results["0"][0]).max() < 0.02


def test_hnsw_tunes_to_target():
    x = _blobs(d=16)
    index = VectorIndex(x, kind="hnsw", threads=1)
    rows = np.arange(0, len(x), 5)
    exact = np.argsort(-(x[rows] @ x.T), axis=1, kind="stable")[:, :8]
    index.tune(8, 0.98, rows, exact)
    _, got = index.search(x[rows], 8)
    assert recall_at_k(got, exact, 8) >= 0.98 or index.params["efSearch"] >= len(x)
