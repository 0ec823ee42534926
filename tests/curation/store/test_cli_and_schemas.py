"""The CLI surface and the schema contracts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from schemas.errors import SyphusError
from schemas.mimicit import InstructionRecord, MimicitFile, task_of_id
from schemas.mix import load_mix
from tests.curation.store.helpers import write_mimicit

SYPHUS = [sys.executable, "-m", "syphus.cli"]


def test_help_lists_commands_without_importing_torch():
    code = (
        "import sys; from syphus.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['--help']); print(r.output); "
        "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH'); "
        "print('LITELLM' if 'litellm' in sys.modules else 'NO_LITELLM')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for cmd in ("import", "export", "stats"):
        assert cmd in out
    assert "NO_TORCH" in out and "NO_LITELLM" in out


def test_stats_and_export_through_the_cli(tmp_path):
    files = write_mimicit(tmp_path / "in")
    c = str(tmp_path / "c")
    subprocess.run(
        [*SYPHUS, "import", "mimicit", str(files["instructions"]), "-c", c, "-i", str(files["images"])],
        check=True,
        capture_output=True,
    )
    out = subprocess.run([*SYPHUS, "stats", "-c", c], check=True, capture_output=True, text=True).stdout
    assert "LA" in out and "20" in out and "missing image references" in out
    subprocess.run(
        [*SYPHUS, "export", "mimicit", "-c", c, "-o", str(tmp_path / "x")], check=True, capture_output=True
    )
    assert (tmp_path / "x" / "LA_instructions.json").exists()
    bad = subprocess.run(
        [*SYPHUS, "export", "mimicit", "-c", c, "-o", str(tmp_path / "y"), "--task", "ZZ"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")][0].startswith("error: --task ZZ")


def test_instruction_record_and_file():
    rec = InstructionRecord.model_validate({"instruction": "q", "answer": "a", "image_ids": None})
    assert rec.image_ids == [] and rec.rel_ins_ids == []
    f = MimicitFile.model_validate(
        {"meta": {"version": "1"}, "data": {"LA_INS_00001": {"instruction": "q", "answer": "a"}}}
    )
    assert f.data["LA_INS_00001"].answer == "a"
    assert task_of_id("LACR_T2T_INS_00001") == "LACR_T2T" and task_of_id("x") is None


def test_mix_yaml_in_otters_format(tmp_path):
    p = tmp_path / "mix.yaml"
    p.write_text(
        textwrap.dedent("""
        IMAGE_TEXT:
          LADD:
            mimicit_path: json/LA/LADD_instructions.json
            images_path: Parquets/LA.parquet
            num_samples: -1
        IMAGE_TEXT_IN_CONTEXT:
          LACR:
            mimicit_path: json/LA/LACR_instructions.json
            images_path: Parquets/LA.parquet
            train_config_path: json/LA/LACR_train.json
            num_samples: 5000
        TEXT_ONLY:
          LIMA:
            mimicit_path: json/LIMA_instructions.json
        VIDEO_TEXT:
          OURS:
            shards_path: shards/
            tasks: [DC]
    """)
    )
    mix = load_mix(p)
    names = [(g, n) for g, n, _ in mix.datasets()]
    assert names == [
        ("IMAGE_TEXT", "LADD"),
        ("TEXT_ONLY", "LIMA"),
        ("IMAGE_TEXT_IN_CONTEXT", "LACR"),
        ("VIDEO_TEXT", "OURS"),
    ]
    assert mix.IMAGE_TEXT["LADD"].mimicit_path == str(tmp_path / "json/LA/LADD_instructions.json")
    assert mix.IMAGE_TEXT_IN_CONTEXT["LACR"].num_samples == 5000


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("FOO:\n  x:\n    mimicit_path: a\n", "unknown group 'FOO'"),
        ("IMAGE_TEXT:\n  x:\n    images_path: a\n", "exactly one of mimicit_path or shards_path"),
        ("IMAGE_TEXT:\n  x:\n    mimicit_path: a\n    num_sample: 3\n", "IMAGE_TEXT.x.num_sample"),
        ("IMAGE_TEXT: [\n", "line 2, column 1: malformed YAML"),
    ],
)
def test_bad_mix_yaml(tmp_path, text, pattern):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    with pytest.raises(SyphusError, match=pattern):
        load_mix(p)
