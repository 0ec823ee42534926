"""Bad mix YAMLs, the files a mix names, and bad training configs, through ``syphus mix`` and
``syphus train --print-command`` (validation only: nothing trains)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.curation.store.helpers import run_syphus
from tests.e2e.sweep.bad import png
from tests.e2e.sweep.conftest import REAL, cases, refused

SRC = REAL / "mimicit"
MIX = """\
IMAGE_TEXT_IN_CONTEXT:
  SD:
    mimicit_path: SD_instructions.json
    images_path: SD.parquet
    train_config_path: SD_train.json
    num_samples: 4
IMAGE_TEXT:
  OURS:
    shards_path: shards
    num_samples: -1
"""


@pytest.fixture(scope="module")
def mix_dir(corpus, tmp_path_factory) -> Path:
    """A valid mix folder: the real-format MIMIC-IT files and shards exported from the corpus."""
    root = tmp_path_factory.mktemp("mix")
    for name in ("SD_instructions.json", "SD.parquet", "SD_train.json"):
        shutil.copy(SRC / name, root / name)
    rc, _, err = run_syphus("export", "shards", "-c", corpus, "-o", root / "shards")
    assert rc == 0, err
    (root / "mix.yaml").write_text(MIX)
    (root / "train.yaml").write_text("max_steps: 3\n")
    rc, _, err = run_syphus("mix", root / "mix.yaml", "--out", root / "plan.json")
    assert rc == 0, err
    return root


@pytest.fixture
def work(mix_dir, tmp_path) -> Path:
    """A copy of the valid mix folder for one case to break."""
    return Path(shutil.copytree(mix_dir, tmp_path / "m"))


def _mix_yaml_cases():
    yield "empty", b""
    yield "png", png()
    yield "non-utf8", MIX.replace("OURS", "OUR\xc9").encode("latin-1")
    yield "list", b"- IMAGE_TEXT\n"
    yield "malformed", MIX.replace("  SD:\n", "  SD: [\n").encode()
    yield "missing field", MIX.replace("    shards_path: shards\n", "").encode()
    yield "NaN", MIX.replace("num_samples: 4", "num_samples: .nan").encode()
    yield "inf", MIX.replace("num_samples: 4", "num_samples: .inf").encode()
    yield "wrong type", MIX.replace("num_samples: 4", "num_samples: [4]").encode()
    yield "unknown group", MIX.replace("IMAGE_TEXT:", "IMAGES:").encode()
    yield (
        "python tag",
        MIX.replace("num_samples: 4", "num_samples: !!python/object/apply:os.getpid []").encode(),
    )
    yield "huge yaml", b"IMAGE_TEXT: " + b"A" * 10_000_000 + b"\n"


@pytest.mark.parametrize(("kind", "data"), cases(_mix_yaml_cases()))
@pytest.mark.parametrize("command", ["mix", "train"])
def test_bad_mix_yaml(command, kind, data, work):
    mix = work / "mix.yaml"
    mix.write_bytes(data)
    if command == "mix":
        refused(None, mix.name, "mix", mix, "--out", work / "new-plan.json")
        assert not (work / "new-plan.json").exists()
    else:
        refused(None, mix.name, "train", "--mix", mix, "--config", work / "train.yaml", "--out", work / "run",
                "--cpu", "--print-command")  # fmt: skip
        assert not (work / "run").exists()


def _named_file_cases():
    """(kind, file the mix names, its new bytes)."""
    ins = (SRC / "SD_instructions.json").read_text()
    yield "instructions truncated", "SD_instructions.json", ins[: len(ins) // 2].encode()
    yield "instructions empty", "SD_instructions.json", b""
    yield "instructions png", "SD_instructions.json", png()
    yield "instructions list", "SD_instructions.json", json.dumps([1]).encode()
    yield (
        "instructions non-utf8",
        "SD_instructions.json",
        ins.replace("truck", "caf\xe9", 1).encode("latin-1"),
    )
    yield "train list", "SD_train.json", b'["SD_INS_00001"]'
    yield "train truncated", "SD_train.json", (SRC / "SD_train.json").read_bytes()[:50]
    yield "manifest truncated", "shards/manifest.json", b'{"rows": 5, "shards": [{"instr'
    yield "manifest png", "shards/manifest.json", png()
    yield "part truncated", "shards/part-00000.parquet", None  # cut below
    yield "part png", "shards/part-00000.parquet", png()


@pytest.mark.parametrize(("kind", "name", "data"), cases(_named_file_cases()))
def test_bad_file_named_by_the_mix(kind, name, data, work):
    f = work / name
    if data is None:
        data = f.read_bytes()[: f.stat().st_size // 2]
    f.write_bytes(data)
    refused(None, Path(name).name, "mix", work / "mix.yaml", "--out", work / "new-plan.json")
    assert not (work / "new-plan.json").exists()


def _config_cases():
    yield "png", png()
    yield "non-utf8", b"max_steps: 3\nrun_name: caf\xe9\n"
    yield "list", b"- max_steps: 3\n"
    yield "malformed", b"max_steps: [3\n"
    yield "NaN lr", b"max_steps: 3\nlr: .nan\n"
    yield "inf lr", b"max_steps: 3\nlr: .inf\n"
    yield "wrong type", b"max_steps: three\n"
    yield "unknown key", b"max_step: 3\n"
    yield "python tag", b"max_steps: !!python/object/apply:os.getpid []\n"
    yield "huge yaml", b"max_steps: " + b"9" * 10_000_000 + b"\n"


@pytest.mark.parametrize(("kind", "data"), cases(_config_cases()))
def test_bad_training_config(kind, data, work):
    config = work / "train.yaml"
    config.write_bytes(data)
    refused(None, config.name, "train", "--mix", work / "mix.yaml", "--config", config, "--out", work / "run",
            "--cpu", "--print-command")  # fmt: skip
    assert not (work / "run").exists()


def test_training_refuses_an_images_parquet_bomb(tmp_path):
    """The trainer reads a mix's MIMIC-IT images parquet itself: a column that inflates like a
    decompression bomb is refused from the file's metadata, naming it, before anything inflates."""
    import pandas as pd

    from schemas.errors import SyphusError
    from schemas.mix import load_mix
    from tests.trainer.train.helpers import tiny_processing
    from trainer.data import MixStream, StreamOptions

    for name in ("SD_instructions.json", "SD_train.json"):
        shutil.copy(SRC / name, tmp_path / name)
    ids = [f"SD_IMG_05406_{n}" for n in (1, 2)] + [f"SD_IMG_05614_{n}" for n in (1, 2)]
    pd.DataFrame({"base64": ["A" * 20_000_000] * 4}, index=ids).to_parquet(
        tmp_path / "SD.parquet", compression="zstd"
    )
    (tmp_path / "mix.yaml").write_text(MIX.split("IMAGE_TEXT:")[0])
    tok, special, ip = tiny_processing()
    with pytest.raises(SyphusError, match=r"SD\.parquet: row group 0: .*possible decompression bomb"):
        stream = MixStream(load_mix(tmp_path / "mix.yaml"), tokenizer=tok, special=special, image_processor=ip,
                           options=StreamOptions(), rank=0, world_size=1)  # fmt: skip
        next(iter(stream))
