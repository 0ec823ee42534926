"""``syphus train`` argument handling and training-config errors."""

from __future__ import annotations

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
