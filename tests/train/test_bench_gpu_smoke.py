"""The GPU training benchmark runs its whole code path on CPU with toy shapes (``--tiny``), so the
script a lent GPU will run cannot rot unnoticed on machines without one."""

from __future__ import annotations

import json
import subprocess
import sys

from .helpers import REPO, train_env


def test_bench_train_gpu_tiny_runs_every_measurement():
    proc = subprocess.run(
        [sys.executable, "bench/bench_train_gpu.py", "--tiny"],
        cwd=REPO,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    result = json.loads(out[out.index("{\n") :])
    for mode in ("no_checkpointing", "checkpointing"):
        rows = result[mode]["all"]
        assert [r["batch"] for r in rows] == [1, 2, 4]
        assert all(r["samples_per_s"] > 0 for r in rows)
    assert result["ratio_vs_otter_normalised"] > 0
