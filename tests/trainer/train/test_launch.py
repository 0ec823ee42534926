"""``syphus train`` owns its run folder and its processes: a second trainer on the same folder
is refused in one line, and a kill -9 of ``syphus train`` alone takes the ranks with it, so a
rerun resumes without two trainers writing one folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .helpers import REPO, shapes_vqa, start_training, train_env, write_shards

pytestmark = pytest.mark.slow

CONFIG = """model: {name: tiny}
batch_size: 2
max_steps: 30
lr: 2.0e-3
warmup_steps: 2
zero_stage: 0
save_every: 2
log_every: 1
torch_threads: 1
seed: 3
"""


def _cli_train(mix: Path, cfg: Path, out: Path) -> list[str]:
    cmd = ["train", "--mix", str(mix), "--config", str(cfg), "--out", str(out), "--cpu"]
    return [sys.executable, "-m", "syphus.cli", *cmd]


def _run_processes(out: Path) -> list[psutil.Process]:
    """Every process on this machine whose command line names the run folder."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if str(out) in (p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_second_trainer_refused_and_parent_kill_stops_the_ranks(tmp_path):
    rows, images = shapes_vqa(40, seed=2)
    write_shards(tmp_path / "shards", rows, images)
    mix = tmp_path / "mix.yaml"
    mix.write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    cfg = tmp_path / "train.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    cmd = _cli_train(mix, cfg, out)
    # Its own session, so that whatever this test leaves behind is stopped by one killpg.
    first = start_training(cmd)
    try:
        deadline = time.time() + 240
        while len(_steps(out)) < 2 and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert _steps(out), "training did not start in time"

        second = subprocess.run(cmd, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=120)
        err = second.stderr.strip()
        assert second.returncode != 0
        assert len(err.splitlines()) == 1, err
        holder = json.loads((out / ".lock").read_text())
        assert str(out) in err and f"pid {holder['pid']}" in err and str(first.pid) in err, err

        # kill -9 of `syphus train` alone: nothing of the run may keep training.
        ranks = [p for p in _run_processes(out) if p.pid != first.pid]
        assert any(p.pid == holder["pid"] for p in ranks)
        first.send_signal(signal.SIGKILL)
        first.wait()
        gone_by = time.time() + 10
        while _run_processes(out) and time.time() < gone_by:
            time.sleep(0.2)
        left = [" ".join(p.cmdline()[:6]) for p in _run_processes(out) if p.is_running()]
        assert not left, f"still running after the parent died: {left}"
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        first.wait()
        first.stderr.close()

    cut_at = _steps(out)[-1]
    assert cut_at < 30
    rerun = subprocess.run(cmd, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _steps(out) == list(range(1, 31))  # one line per step: one trainer wrote the folder
