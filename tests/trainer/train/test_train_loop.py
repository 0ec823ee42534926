"""The DeepSpeed training loop on CPU: exact resume after a kill, ZeRO-3 export, the CLI launcher."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .helpers import REPO, shapes_vqa, train_env, write_shards

pytestmark = pytest.mark.slow

CONFIG = """model: {{name: tiny}}
batch_size: 4
max_steps: {steps}
lr: 2.0e-3
warmup_steps: 3
zero_stage: {zero}
save_every: {save}
torch_threads: 1
seed: 7
"""


def _setup(tmp_path: Path, name: str, steps: int, zero: int, save: int) -> tuple[Path, Path]:
    if not (tmp_path / "shards").exists():
        rows, images = shapes_vqa(48, seed=5)
        write_shards(tmp_path / "shards", rows, images)
        (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CONFIG.format(steps=steps, zero=zero, save=save))
    return tmp_path / "mix.yaml", cfg


def _train(mix: Path, cfg: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer.train", "--mix", str(mix), "--config", str(cfg), "--out", str(out)]
    return subprocess.Popen(
        cmd, env=train_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait(p: subprocess.Popen, timeout: float = 240) -> None:
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_kill_gives_the_same_loss_curve(tmp_path):
    mix, cfg = _setup(tmp_path, "z2", steps=24, zero=2, save=4)
    uncut = _train(mix, cfg, tmp_path / "uncut")
    killed = _train(mix, cfg, tmp_path / "cut")
    checkpoints = tmp_path / "cut" / "checkpoints"
    deadline = time.time() + 240
    # a checkpoint is complete once its manifest is written (it is written last)
    while (
        not list(checkpoints.glob("step*/manifest.json")) and killed.poll() is None and time.time() < deadline
    ):
        time.sleep(0.02)
    assert killed.poll() is None, "the run finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    cut_at = _metrics(tmp_path / "cut")[-1]["step"]
    assert cut_at < 24
    _wait(_train(mix, cfg, tmp_path / "cut"))
    _wait(uncut)
    a, b = _metrics(tmp_path / "uncut"), _metrics(tmp_path / "cut")
    assert [r["step"] for r in b] == list(range(1, 25))
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6, abs=1e-7), (x["step"], x["loss"], y["loss"])
        assert x["lr"] == pytest.approx(y["lr"])
    assert a[-1]["loss"] < a[0]["loss"]
    assert "loss/IMAGE_TEXT" in a[0]
    assert (tmp_path / "uncut" / "loss.png").stat().st_size > 1000
    assert list((tmp_path / "uncut" / "tensorboard").glob("events.out.tfevents.*"))


def test_cli_launcher_zero3_export_loads_and_matches_zero0(tmp_path):
    from trainer.model.modeling_otter import OtterForConditionalGeneration

    mix, cfg3 = _setup(tmp_path, "z3", steps=6, zero=3, save=100)
    _, cfg0 = _setup(tmp_path, "z0", steps=6, zero=0, save=100)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syphus.cli",
            "train",
            "--mix",
            str(mix),
            "--config",
            str(cfg3),
            "--out",
            str(tmp_path / "z3"),
            "--cpu",
        ],
        env=train_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait(_train(mix, cfg0, tmp_path / "z0"))
    log, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0, log[-3000:]
    assert "deepspeed" in log.lower()  # ran under the launcher
    z3 = OtterForConditionalGeneration.from_pretrained(tmp_path / "z3" / "model")
    z0 = OtterForConditionalGeneration.from_pretrained(tmp_path / "z0" / "model")
    assert (tmp_path / "z3" / "model" / "model.safetensors").is_file()
    s3, s0 = z3.state_dict(), z0.state_dict()
    assert s3.keys() == s0.keys()
    trained = [k for k in s0 if k.startswith("perceiver.")]
    assert trained
    for k in s0:
        assert torch.allclose(s3[k], s0[k], atol=1e-4), k
    fresh = OtterForConditionalGeneration.from_pretrained(tmp_path / "z0" / "model")
    assert fresh.config.media_token_id == z3.config.media_token_id
