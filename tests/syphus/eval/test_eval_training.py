"""The ``eval:`` block of a training config: a short CPU training run scores the shapes benchmark
every 2 steps into metrics.jsonl, tensorboard and RUN/eval/step-NNNNNN/, and trains exactly as
it would without the block."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trainer.train.helpers import REPO, shapes_vqa, train_env, write_shards

pytestmark = pytest.mark.slow

CONFIG = """model: {{name: tiny}}
batch_size: 4
max_steps: 4
lr: 2.0e-3
warmup_steps: 1
zero_stage: 0
save_every: 100
torch_threads: 1
seed: 7
{extra}"""

EVAL = """eval:
  every: 2
  data: {data}
  datasets: [{{name: "tests.syphus.eval.shapes_bench:SHAPES", limit: 8}}]
  batch_size: 4
"""


def _train(tmp_path, name, extra):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CONFIG.format(extra=extra))
    out = tmp_path / name
    cmd = [sys.executable, "-m", "trainer.train", "--mix", str(tmp_path / "mix.yaml"), "--config", str(cfg)]
    proc = subprocess.run([*cmd, "--out", str(out)], env=train_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_eval_block_scores_during_training(tmp_path, bench_data):
    rows, images = shapes_vqa(24, seed=5)
    write_shards(tmp_path / "shards", rows, images)
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    run, metrics = _train(tmp_path, "with_eval", EVAL.format(data=bench_data))
    evals = [r for r in metrics if any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0.0 <= r["eval/shapes/accuracy"] <= 1.0 for r in evals)
    for step in (2, 4):
        result = json.loads((run / "eval" / f"step-{step:06d}" / "shapes.json").read_text())
        assert len(result["verdicts"]) == 8 and result["model"] == f"step {step}"
        assert (run / "eval" / f"step-{step:06d}" / "shapes.samples.jsonl").is_file()
    assert (run / "loss.png").is_file() and (run / "model" / "model.safetensors").is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run / "tensorboard"))
    tb.Reload()
    assert [e.step for e in tb.Scalars("eval/shapes/accuracy")] == [2, 4]

    # Evaluating leaves training untouched: the same losses as a run without the block.
    _, plain = _train(tmp_path, "without_eval", "")
    losses = [r["loss"] for r in metrics if "loss" in r]
    assert losses == [r["loss"] for r in plain]


def test_eval_block_with_a_wrong_benchmark_fails_before_training(tmp_path, bench_data, capsys):
    from tests.trainer.train.helpers import run_cli

    rows, images = shapes_vqa(8, seed=5)
    write_shards(tmp_path / "shards", rows, images)
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    cases = [
        ("eval:\n  every: 2\n  data: {data}\n  datasets: [{{name: popee}}]\n", "unknown benchmark 'popee'"),
        ("eval:\n  every: 2\n  data: {data}/nowhere\n  datasets: [{{name: pope}}]\n", "benchmark data folder not found"),
        ("eval:\n  every: 0\n  data: {data}\n  datasets: [{{name: pope}}]\n", "field 'eval.every'"),
    ]  # fmt: skip
    for extra, message in cases:
        cfg = tmp_path / "train.yaml"
        cfg.write_text(CONFIG.format(extra=extra.format(data=bench_data)))
        argv = [
            "train",
            "--mix",
            str(tmp_path / "mix.yaml"),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
        ]
        code, _, err = run_cli(argv, capsys)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run").exists()
