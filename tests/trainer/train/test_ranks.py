"""Two CPU ranks through ``syphus train --cpu --num-gpus 2`` at ZeRO-2 and ZeRO-3.

Every rank takes its own micro-batches of one global order, so two ranks of batch 2 train on
exactly the samples one process of batch 4 trains on: the loss curve and the final model
match a one-process reference run, through a kill -9 of the whole process group and a rerun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainer.net import free_port

from .helpers import REPO, run_python, shapes_vqa, start_training, train_env, write_shards

pytestmark = pytest.mark.slow

STEPS = 8
CONFIG = """model: {{name: tiny}}
batch_size: {batch}
max_steps: 8
lr: 2.0e-3
warmup_steps: 2
zero_stage: {zero}
save_every: 2
log_every: 1
torch_threads: 1
seed: 7
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Shards, a mix and one plain process trained with batch 4 (the global batch of 2 x 2)."""
    root = tmp_path_factory.mktemp("ranks")
    rows, images = shapes_vqa(48, seed=5)
    write_shards(root / "shards", rows, images)
    (root / "mix.yaml").write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    (root / "one.yaml").write_text(CONFIG.format(batch=4, zero=0))
    mix, cfg, out = root / "mix.yaml", root / "one.yaml", root / "one"
    run_python("-m", "trainer.train", "--mix", str(mix), "--config", str(cfg), "--out", str(out))
    return root


def _two_ranks(root: Path, zero: int) -> tuple[list[str], Path]:
    cfg = root / f"two_z{zero}.yaml"
    cfg.write_text(CONFIG.format(batch=2, zero=zero))
    out = root / f"two_z{zero}"
    cmd = [sys.executable, "-m", "syphus.cli", "train", "--mix", str(root / "mix.yaml"), "--config", str(cfg)]
    return [*cmd, "--out", str(out), "--cpu", "--num-gpus", "2"], out


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _matches_one_process(root: Path, out: Path) -> None:
    from trainer.model.modeling_otter import OtterForConditionalGeneration

    one, two = _metrics(root / "one"), _metrics(out)
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))  # once each: nothing duplicated
    for a, b in zip(one, two, strict=True):
        # step 1 is the same 4 samples through the same weights: only the split differs
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), (a["step"], a["loss"], b["loss"])
    assert two[-1]["loss"] < two[0]["loss"]
    ref = OtterForConditionalGeneration.from_pretrained(root / "one" / "model").state_dict()
    got = OtterForConditionalGeneration.from_pretrained(out / "model").state_dict()
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.allclose(got[k], ref[k], atol=1e-5), k


def test_two_cpu_ranks_at_zero2_train_like_one_process(reference):
    cmd, out = _two_ranks(reference, zero=2)
    proc = subprocess.run(cmd, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _matches_one_process(reference, out)
    assert "training on CPU with 2 process(es)" in proc.stderr


def test_two_cpu_ranks_at_zero3_resume_after_the_group_is_killed(reference):
    cmd, out = _two_ranks(reference, zero=3)
    run = start_training(cmd)
    try:
        latest = out / "checkpoints" / "latest"
        deadline = time.time() + 400
        while not latest.is_file() and run.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run finished (or failed) before it could be killed"
        os.killpg(run.pid, signal.SIGKILL)  # syphus train, the launchers and both ranks
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        run.stderr.close()
    assert _metrics(out)[-1]["step"] < STEPS
    proc = subprocess.run(cmd, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _matches_one_process(reference, out)


def test_exported_model_is_what_each_rank_holds(reference, tmp_path):
    """At ZeRO-2 every rank's full copy, at ZeRO-3 every rank's own slice, equals the export."""
    script = Path(__file__).with_name("rank_weights.py")
    run_python(
        *("-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_addr", "127.0.0.1", "--master_port", str(free_port())),
        *(str(script), str(reference / "mix.yaml"), str(tmp_path)),
    )
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["world"] == 2
        for stage in ("zero2", "zero3"):
            r = report[stage]
            assert r["trainable"] > 0 and not r["missing"], (rank, stage, r)
            assert r["differ"] == [], (rank, stage, r["differ"])
