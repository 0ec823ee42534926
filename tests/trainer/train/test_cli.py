"""``syphus train`` argument handling and training-config errors."""

from __future__ import annotations

import os

import pytest

from schemas.errors import SyphusError
from schemas.train import load_train_config

from .helpers import run_cli


def test_train_config_errors_name_the_field(tmp_path, capsys):
    p = tmp_path / "t.yaml"
    p.write_text("max_steps: 10\nzero_stage: 5\n")
    with pytest.raises(SyphusError, match="zero_stage"):
        load_train_config(p)
    p.write_text("batch_size: 4\n")
    with pytest.raises(SyphusError, match="max_steps or epochs"):
        load_train_config(p)
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  a:\n    shards_path: s\n")
    p.write_text("max_steps: 3\n")
    code, out, _ = run_cli(
        [
            "train",
            "--mix",
            str(tmp_path / "mix.yaml"),
            "--config",
            str(p),
            "--out",
            str(tmp_path / "o"),
            "--cpu",
            "--print-command",
        ],
        capsys,
    )
    assert code == 0
    assert out.startswith("DS_ACCELERATOR=cpu ") and "--module trainer.train" in out and "--num_gpus 1" in out


def test_video_frames_capped_at_the_models_frame_embeddings():
    from types import SimpleNamespace

    from schemas.train import TrainConfig
    from trainer.train import frames_for

    tiny = SimpleNamespace(max_num_frames=4)
    assert frames_for(TrainConfig(max_steps=1), tiny) == 4  # the default 8 follows the model
    assert frames_for(TrainConfig(max_steps=1, resample_frames=3), tiny) == 3
    assert frames_for(TrainConfig(max_steps=1), SimpleNamespace(max_num_frames=None)) == 8
    with pytest.raises(SyphusError, match="'resample_frames': 6 frames.*at most 4"):
        frames_for(TrainConfig(max_steps=1, resample_frames=6), tiny)


def _train_args(tmp_path, *extra: str) -> list[str]:
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  a:\n    shards_path: s\n")
    (tmp_path / "t.yaml").write_text("max_steps: 3\n")
    mix, cfg = str(tmp_path / "mix.yaml"), str(tmp_path / "t.yaml")
    return ["train", "--mix", mix, "--config", cfg, "--out", str(tmp_path / "o"), *extra]


def test_cpu_ranks_asked_for_are_launched_with_their_share_of_cores(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    code, out, _ = run_cli(_train_args(tmp_path, "--cpu", "--num-gpus", "2", "--print-command"), capsys)
    assert code == 0
    assert out.startswith("DS_ACCELERATOR=cpu OMP_NUM_THREADS=4 ") and "--num_gpus 2" in out


def test_more_gpus_than_visible_is_refused(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, _, err = run_cli(_train_args(tmp_path, "--num-gpus", "2"), capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "--num-gpus 2" in err and "1 visible GPU" in err


def test_a_held_run_folder_is_refused_in_one_line(tmp_path, capsys):
    from trainer.runlock import hold_run_lock

    lock = hold_run_lock(tmp_path / "o", launcher_pid=4321)
    try:
        code, _, err = run_cli(_train_args(tmp_path, "--cpu"), capsys)
    finally:
        lock.close()
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert str(tmp_path / "o") in err and f"pid {os.getpid()}" in err and "4321" in err
    assert not (tmp_path / "o" / "train_config.json").exists()  # nothing was started


def test_out_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "o").write_text("my notes\n")
    code, _, err = run_cli(_train_args(tmp_path, "--cpu"), capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "is a file" in err, err
    assert (tmp_path / "o").read_text() == "my notes\n"
