"""Where the docs promise skip-and-count instead of an error, a bad record exits 0 and the
summary counts it; nothing else of the input is lost."""

from __future__ import annotations

import json

import pytest

from tests.curation.store.helpers import jpeg, run_syphus, summary_value
from tests.e2e.sweep.conftest import REAL
from tests.e2e.sweep.test_import import _image_file_cases


@pytest.mark.parametrize(("kind", "name", "data"), [pytest.param(*c, id=c[0]) for c in _image_file_cases()])
def test_import_images_skip_bad_counts_each_bad_file(kind, name, data, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "fine.jpg").write_bytes(jpeg(7))
    (folder / name).write_bytes(data)
    rc, out, err = run_syphus("import", "images", folder, "-c", tmp_path / "c", "--skip-bad")
    assert rc == 0, err
    assert summary_value(out, "skipped: bad image").startswith("1 (e.g. ") and name in out
    assert summary_value(out, "images added").startswith("1")


def test_generate_counts_blank_and_descriptionless_records(tmp_path):
    """Spot-the-Diff's blank records and TVC's test-release lines: skipped with a count."""
    sd = json.loads((REAL / "spot_the_diff" / "val.json").read_text())
    sd.append({"img_id": "999999", "sentences": [""]})
    (tmp_path / "val.json").write_text(json.dumps(sd))
    tvc = tmp_path / "tvc_test_public_release.jsonl"
    tvc.write_text(
        '{"vid_name": "castle_s01e01_seg02_clip_00", "duration": 60.0, "ts": [1.0, 5.0], "clip_id": 9}\n'
    )
    for task, files in (
        ("SD", [tmp_path / "val.json"]),
        ("TVC", [REAL / "tvc" / "tvc_val_release.jsonl", tvc]),
    ):
        argv = ["generate", "--task", task, "--corpus", tmp_path / "c", "--dry-run", "--no-progress"]
        for f in files:
            argv += ["--annotations", f]
        rc, out, err = run_syphus(*argv)
        assert rc == 0, err
        assert int(summary_value(out, "skipped")) >= 1 and "skipped " in err
        assert not (tmp_path / "c").exists()


def test_import_mimicit_counts_train_entries_without_their_pair(tmp_path):
    src = REAL / "mimicit"
    train = json.loads((src / "SD_train.json").read_text())
    train["SD_INS_09999"] = ["SD_INS_00001"]
    (tmp_path / "SD_train.json").write_text(json.dumps(train))
    rc, out, err = run_syphus(
        "import", "mimicit", src / "SD_instructions.json", "-c", tmp_path / "c", "-i", src / "SD.parquet",
        "--train", tmp_path / "SD_train.json",
    )  # fmt: skip
    assert rc == 0, err
    assert summary_value(out, "skipped: train entry without its pair").startswith("1 (e.g. ")
    assert summary_value(out, "instructions added") == "5"
