"""``syphus train`` against a hostile or damaged run folder and numbers that blow up.

A planted pickle in ``OUT/checkpoints`` must never run; a corrupt checkpoint falls back to the
previous one (or is refused in one line); ``lr: .inf`` is refused before anything runs; a run
whose loss turns NaN stops with an error and writes no model.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO, run_cli, shapes_vqa, train_env, write_shards

CONFIG = """model: {name: tiny}
batch_size: 4
max_steps: 6
lr: 2.0e-3
warmup_steps: 1
zero_stage: 2
save_every: 2
torch_threads: 1
seed: 7
"""


class _Payload:
    """Unpickling this creates the marker file: the proof that a checkpoint ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _mix(tmp_path: Path) -> Path:
    rows, images = shapes_vqa(24, seed=5)
    write_shards(tmp_path / "shards", rows, images)
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    return tmp_path / "mix.yaml"


def _syphus_train(mix: Path, config: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "syphus.cli", "train", "--mix", str(mix), "--config", str(config)]
    return subprocess.run(
        [*cmd, "--out", str(out), "--cpu"],
        cwd=REPO,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]
    return [line for line in text.splitlines() if line.startswith("error:")]


def _plant(run: Path, marker: Path, with_manifest: bool) -> Path:
    """A checkpoint folder as DeepSpeed names it, holding a pickle with a code-running payload;
    optionally with a manifest whose digest matches, as a careful attacker would write."""
    tag = run / "checkpoints" / "step00000004"
    tag.mkdir(parents=True)
    planted = tag / "mp_rank_00_model_states.pt"
    planted.write_bytes(pickle.dumps({"module": _Payload(marker), "step": 4}))
    (run / "checkpoints" / "latest").write_text("step00000004")
    if with_manifest:
        digest = hashlib.sha256(planted.read_bytes()).hexdigest()
        (tag / "manifest.json").write_text(json.dumps({"step": 4, "files": {planted.name: digest}}))
    return planted


@pytest.mark.slow
@pytest.mark.parametrize("with_manifest", [False, True], ids=["bare", "with-matching-manifest"])
def test_a_planted_pickle_in_the_run_folder_never_runs(tmp_path, with_manifest):
    mix = _mix(tmp_path)
    (tmp_path / "train.yaml").write_text(CONFIG)
    marker = tmp_path / "PWNED"
    planted = _plant(tmp_path / "run", marker, with_manifest)
    proc = _syphus_train(mix, tmp_path / "train.yaml", tmp_path / "run")
    assert not marker.exists(), "the planted checkpoint ran code"
    assert proc.returncode != 0
    errors = _errors(proc)
    assert len(errors) == 1, proc.stdout + proc.stderr
    # names the file at fault: the missing manifest, or the pickle that weights-only loading refused
    assert (
        str(planted.parent / ("mp_rank_00_model_states.pt" if with_manifest else "manifest.json"))
        in errors[0]
    )
    assert planted.is_file()  # what the command did not write is left alone
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.slow
def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    mix = _mix(tmp_path)
    (tmp_path / "train.yaml").write_text(CONFIG)
    run = tmp_path / "run"
    first = _syphus_train(mix, tmp_path / "train.yaml", run)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (run / "metrics.jsonl").read_text().splitlines()
    assert sorted(p.name for p in (run / "checkpoints").glob("step*")) == ["step00000002", "step00000004"]

    # a truncated file in the newest checkpoint (a disk full, a copy cut short)
    damaged = run / "checkpoints" / "step00000004" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    again = _syphus_train(mix, tmp_path / "train.yaml", run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _errors(again) == []
    warnings = [line for line in again.stderr.splitlines() if str(damaged) in line]
    assert len(warnings) == 1 and "resuming from step00000002" in warnings[0], again.stderr[-3000:]
    # resumed exactly from step 2: steps 1-2 kept as logged, then the same losses, no step twice
    assert f"resumed from {run / 'checkpoints' / 'step00000002'}" in again.stderr
    after = (run / "metrics.jsonl").read_text().splitlines()
    assert after[:2] == before[:2]  # not recomputed (their samples/s would differ)
    assert [json.loads(x)["step"] for x in after] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(before, after, strict=True):
        assert json.loads(x)["loss"] == pytest.approx(json.loads(y)["loss"], rel=1e-6)

    # every checkpoint damaged: refused in one line naming the newest one's file, nothing deleted
    for f in (run / "checkpoints").glob("step*/*.pt"):
        f.write_bytes(b"\0" * 64)
    refused = _syphus_train(mix, tmp_path / "train.yaml", run)
    assert refused.returncode != 0
    errors = _errors(refused)
    assert len(errors) == 1 and "step00000004" in errors[0] and "no checkpoint" in errors[0], errors
    assert sorted(p.name for p in (run / "checkpoints").glob("step*")) == ["step00000002", "step00000004"]


@pytest.mark.slow
def test_a_loss_that_turns_nan_stops_the_run_and_saves_nothing(tmp_path):
    """Weights that overflow in the forward pass (finite themselves, 1e30) give a NaN loss at
    every step: the run skips max_nonfinite_steps steps, then stops with an error."""
    import torch

    from trainer.model.modeling_otter import build_otter, save_otter

    model, tok, ip = build_otter("tiny")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("perceiver."):
                p.fill_(1e30)
    save_otter(tmp_path / "huge", model, tok, ip)
    mix = _mix(tmp_path)
    config = CONFIG.replace("model: {name: tiny}", f"init_from: {tmp_path / 'huge'}")
    (tmp_path / "train.yaml").write_text(config + "max_nonfinite_steps: 2\n")
    proc = _syphus_train(mix, tmp_path / "train.yaml", tmp_path / "run")
    assert proc.returncode != 0, "a run with a NaN loss reported success"
    errors = _errors(proc)
    assert len(errors) == 1 and "step 3" in errors[0] and "max_nonfinite_steps" in errors[0], errors
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "summary.json").exists()


def test_non_finite_numbers_in_the_config_are_refused_before_training(tmp_path, capsys):
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  a:\n    shards_path: s\n")
    for line, field in [
        ("lr: .inf", "'lr'"),
        ("lr: .nan", "'lr'"),
        ("lr: 5.0", "'lr'"),
        ("epochs: .inf", "'epochs'"),
        ("betas: [0.9, .nan]", "'betas.1'"),
        ("clip_grad: .inf", "'clip_grad'"),
        ("warmup_ratio: -.inf", "'warmup_ratio'"),
        ("model: {name: tiny, dropout: .nan}", "model.dropout"),
    ]:
        config = tmp_path / "train.yaml"
        config.write_text(("max_steps: 3\n" if "epochs" not in line else "") + line + "\n")
        argv = [
            "train",
            "--mix",
            str(tmp_path / "mix.yaml"),
            "--config",
            str(config),
            "--out",
            str(tmp_path / "o"),
        ]
        code, _, err = run_cli([*argv, "--cpu"], capsys)
        assert code == 1, line
        assert str(config) in err and field in err and len(err.strip().splitlines()) == 1, (line, err)
        assert not (tmp_path / "o").exists()


def _fake_checkpoint(ckpt_dir: Path, step: int, *, manifest: bool = True, saving: bool = False) -> Path:
    """A checkpoint folder as the trainer lays it out (the file's content does not matter here)."""
    from trainer.resume import MANIFEST, SAVING, checkpoint_tag, write_manifest

    tag = ckpt_dir / checkpoint_tag(step)
    tag.mkdir(parents=True)
    f = tag / "mp_rank_00_model_states.pt"
    f.write_bytes(f"weights of step {step}".encode())
    if saving:
        (tag / SAVING).touch()
    if manifest:
        write_manifest(tag, step, [{str(f.resolve()): hashlib.sha256(f.read_bytes()).hexdigest()}])
        assert (tag / MANIFEST).is_file()
    return tag


def test_which_checkpoint_a_resume_picks(tmp_path):
    from schemas.errors import SyphusError
    from trainer.resume import newest_good_checkpoint, verify_checkpoint

    ckpt = tmp_path / "checkpoints"
    assert newest_good_checkpoint(ckpt) == (None, [])
    good = _fake_checkpoint(ckpt, 2)
    # a save cut short by a kill: ignored, and a run with nothing better starts over quietly
    _fake_checkpoint(ckpt, 6, manifest=False, saving=True)
    tag, warnings = newest_good_checkpoint(ckpt)
    assert tag == good and warnings == [f"{ckpt / 'step00000006'}: an interrupted save, ignored"]
    # a changed file: skipped with a warning naming it
    changed = _fake_checkpoint(ckpt, 4) / "mp_rank_00_model_states.pt"
    changed.write_bytes(b"something else")
    tag, warnings = newest_good_checkpoint(ckpt)
    assert tag == good and any(str(changed) in w and "resuming from step00000002" in w for w in warnings)
    # a manifest may not send the loader outside its folder; with no good checkpoint left the
    # resume is refused, naming the newest one's fault
    (good / "manifest.json").write_text(
        json.dumps({"step": 2, "files": {"../../train_config.json": "0" * 64}})
    )
    with pytest.raises(SyphusError, match="invalid file entry '../../train_config.json'"):
        verify_checkpoint(good)
    with pytest.raises(SyphusError, match=f"{changed}: does not match.*no checkpoint in {ckpt} verifies"):
        newest_good_checkpoint(ckpt)
