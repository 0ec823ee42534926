"""One reader per file: ``import mimicit``, ``mix`` and the trainer accept and refuse the same
MIMIC-IT files and shard folders, with the same one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.errors import SyphusError
from schemas.mix import load_mix
from trainer.data import MixStream, StreamOptions

from .helpers import draw, row, run_cli, tiny_processing, write_mimicit, write_shards


def _trainer_error(mix_path: Path) -> str:
    tok, special, ip = tiny_processing()
    with pytest.raises(SyphusError) as e:
        MixStream(
            load_mix(mix_path), tokenizer=tok, special=special, image_processor=ip, options=StreamOptions()
        )
    return str(e.value)


def _last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_a_bad_mimicit_record_is_refused_alike_by_import_mix_and_the_trainer(tmp_path, capsys):
    records = {
        "LA_INS_000": {
            "instruction": "Colour?",
            "answer": "red",
            "image_ids": ["LA_IMG_0"],
            "rel_ins_ids": [],
        },
        "LA_INS_001": {"instruction": "Colour?", "answer": 7, "image_ids": ["LA_IMG_1"], "rel_ins_ids": []},
    }
    ins, par, _ = write_mimicit(tmp_path, "LA", records, {"LA_IMG_0": draw(), "LA_IMG_1": draw()})
    (tmp_path / "mix.yaml").write_text(f"IMAGE_TEXT:\n  LA: {{mimicit_path: {ins}, images_path: {par}}}\n")

    code, _, import_err = run_cli(
        ["import", "mimicit", str(ins), "-c", str(tmp_path / "c"), "-i", str(par)], capsys
    )
    assert code == 1
    code, _, mix_err = run_cli(["mix", str(tmp_path / "mix.yaml")], capsys)
    assert code == 1
    train_err = _trainer_error(tmp_path / "mix.yaml")

    # the same one-line message from all three (the CLI prefixes "error: ")
    messages = {_last_line(import_err), _last_line(mix_err), f"error: {train_err}"}
    assert len(messages) == 1, messages
    assert f"{ins}: record 'LA_INS_001': field 'answer'" in messages.pop()
    assert not (tmp_path / "mix.plan.json").exists()


def test_a_shard_folder_missing_a_listed_file_is_refused_alike_by_mix_and_the_trainer(tmp_path, capsys):
    rows = [row(f"S_INS_{i}", "Colour?", "red", [f"img{i}"]) for i in range(3)]
    root = write_shards(tmp_path / "shards", rows, {f"img{i}": draw() for i in range(3)})
    (root / json.loads((root / "manifest.json").read_text())["shards"][0]["images"]).unlink()
    (tmp_path / "mix.yaml").write_text(f"IMAGE_TEXT:\n  S: {{shards_path: {root}}}\n")

    code, _, mix_err = run_cli(["mix", str(tmp_path / "mix.yaml")], capsys)
    assert code == 1
    train_err = _trainer_error(tmp_path / "mix.yaml")
    assert _last_line(mix_err).endswith(train_err)  # mix adds which dataset of the YAML
    assert f"{root / 'manifest.json'}: lists 'images-00000.parquet'" in train_err and "\n" not in train_err
