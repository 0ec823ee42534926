"""The GPU training benchmark runs its whole code path on CPU with toy shapes (``--tiny``), so the
script a lent GPU will run cannot rot unnoticed on machines without one."""

from __future__ import annotations

import json

from .helpers import run_python


def test_bench_train_gpu_tiny_runs_every_measurement():
    out = run_python("bench/bench_train_gpu.py", "--tiny").stdout
    result = json.loads(out[out.index("{\n") :])
    for mode in ("no_checkpointing", "checkpointing"):
        rows = result[mode]["all"]
        assert [r["batch"] for r in rows] == [1, 2, 4]
        assert all(r["samples_per_s"] > 0 for r in rows)
    assert result["ratio_vs_otter_normalised"] > 0
