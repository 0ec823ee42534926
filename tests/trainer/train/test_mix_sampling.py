"""The mix as it trains: one sampler for ``syphus mix`` and the trainer, Otter's ``num_samples``,
Otter's older ``{id: base64}`` images JSON, and the stop on a dataset that loses its samples."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from schemas.errors import SyphusError
from schemas.mix import load_mix
from trainer.data import MixStream, StreamOptions

from .helpers import REPO, draw, row, run_cli, tiny_processing, train_env, write_mimicit, write_shards


@pytest.fixture(scope="module")
def proc():
    return tiny_processing()


def _stream(mix_path: Path, proc, seed: int) -> MixStream:
    tok, special, ip = proc
    return MixStream(
        load_mix(mix_path),
        tokenizer=tok,
        special=special,
        image_processor=ip,
        options=StreamOptions(seed=seed),
    )


def _la(root: Path, n: int, name: str = "LA", train: dict | None = None):
    images = {f"{name}_IMG_{i}": draw("circle", "red" if i % 2 else "blue") for i in range(n)}
    records = {
        f"{name}_INS_{i:03d}": {
            "instruction": "What colour?",
            "answer": "red" if i % 2 else "blue",
            "image_ids": [f"{name}_IMG_{i}"],
            "rel_ins_ids": [],
        }
        for i in range(n)
    }
    write_mimicit(root, name, records, images, train=train)
    return images, records


def _shards(root: Path, n: int, tasks: list[str]) -> list[str]:
    images = {f"img{i}": draw() for i in range(n)}
    rows = [
        row(f"S_INS_{i:03d}", "Colour?", "red", [f"img{i}"], task=tasks[i % len(tasks)]) for i in range(n)
    ]
    write_shards(root, rows, images, rows_per_part=7)
    return [r["id"] for r in rows]


def test_syphus_mix_plan_is_exactly_what_the_trainer_draws(tmp_path, capsys, proc):
    _, records = _la(tmp_path, 30)
    # A train config offers a subset (Otter samples from its keys), one id unknown to the instructions.
    train_ids = [*sorted(records)[:19], "LA_INS_999"]
    (tmp_path / "LA_train.json").write_text(json.dumps({k: [] for k in train_ids}))
    shard_ids = _shards(tmp_path / "ours", 23, ["CGD", "SD"])
    (tmp_path / "mix.yaml").write_text(
        "IMAGE_TEXT:\n"
        "  LA: {mimicit_path: LA_instructions.json, images_path: LA.parquet,"
        " train_config_path: LA_train.json, num_samples: 7}\n"
        "  UP: {shards_path: ours, tasks: [CGD], num_samples: 27}\n"
        "  DOWN: {shards_path: ours, num_samples: 9}\n"
    )
    code, out, err = run_cli(
        ["mix", str(tmp_path / "mix.yaml"), "--seed", "7", "--out", str(tmp_path / "plan.json")], capsys
    )
    assert code == 0, err
    assert "IMAGE_TEXT.LA: 1 of 20 ids" in out and "not in the instructions file" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["datasets"][0]["unknown"] == 1
    cgd = [i for k, i in enumerate(shard_ids) if k % 2 == 0]
    offered = {"LA": train_ids, "UP": cgd, "DOWN": shard_ids}
    planned: Counter = Counter()
    for e in plan["datasets"]:
        assert e["available"] == len(offered[e["name"]])
        planned.update(offered[e["name"]] * e["full_passes"] + e["extra"])
    assert [(e["name"], e["full_passes"], len(e["extra"])) for e in plan["datasets"]] == [
        ("LA", 0, 7),
        ("UP", 2, 3),
        ("DOWN", 0, 9),
    ]
    assert set(plan["datasets"][0]["extra"]) <= set(train_ids)

    stream = _stream(tmp_path / "mix.yaml", proc, seed=7)
    for epoch in (0, 1):  # the sample is drawn once; epochs only reorder it
        assert Counter(r.id for r in stream.epoch_records(epoch)) == planned
    # another seed draws other records, in the plan and in training alike
    other = Counter(r.id for r in _stream(tmp_path / "mix.yaml", proc, seed=8).epoch_records(0))
    assert other != planned and sum(other.values()) == sum(planned.values())
    # without --seed the plan uses the training config's default seed
    run_cli(["mix", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / "default.json")], capsys)
    default = json.loads((tmp_path / "default.json").read_text())
    assert default["seed"] == 42


def test_num_samples_zero_means_all_records_as_in_otter(tmp_path, capsys, proc):
    _la(tmp_path, 5)
    _la(tmp_path, 4, name="SD")
    _shards(tmp_path / "ours", 6, ["CGD"])
    (tmp_path / "mix.yaml").write_text(
        "IMAGE_TEXT:\n"
        "  LA: {mimicit_path: LA_instructions.json, images_path: LA.parquet, num_samples: 0}\n"
        "  SD: {mimicit_path: SD_instructions.json, images_path: SD.parquet, num_samples: -1}\n"
        "  OURS: {shards_path: ours, num_samples: 0}\n"
    )
    code, out, err = run_cli(["mix", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / "p.json")], capsys)
    assert code == 0, err
    plan = json.loads((tmp_path / "p.json").read_text())
    assert [(e["num_samples"], e["full_passes"], e["extra"]) for e in plan["datasets"]] == [
        (5, 1, []),
        (4, 1, []),
        (6, 1, []),
    ]
    assert plan["total"] == 15 and "total 15" in out
    stream = _stream(tmp_path / "mix.yaml", proc, seed=42)
    assert stream.epoch_size == 15
    assert len(set(r.id for r in stream.epoch_records(0))) == 15
    (tmp_path / "bad.yaml").write_text(
        "TEXT_ONLY:\n  LA: {mimicit_path: LA_instructions.json, num_samples: -2}\n"
    )
    code, _, err = run_cli(["mix", str(tmp_path / "bad.yaml")], capsys)
    assert code == 1 and "num_samples" in err and "-1 / 0 for all" in err


def _legacy_images_json(path: Path, images: dict[str, bytes], *, garbage: bool = False) -> None:
    """Otter's older images file: one JSON object {id: base64}, URL-safe alphabet, pretty-printed,
    with JSON's optional '\\/' escape in one value (as some encoders write '/')."""
    values = {
        k: base64.urlsafe_b64encode(b"not an image" if garbage else v).decode() for k, v in images.items()
    }
    text = json.dumps(values, indent=2)
    first = next(iter(values))
    escaped = base64.b64encode(images[first]).decode().replace("/", "\\/")
    text = text.replace(json.dumps(values[first]), f'"{escaped}"', 1)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # with a byte order mark, as Windows tools write


def test_legacy_images_json_is_indexed_in_place(tmp_path, proc):
    images, _ = _la(tmp_path, 6)
    _legacy_images_json(tmp_path / "LA_images.json", images)
    (tmp_path / "mix.yaml").write_text(
        "IMAGE_TEXT:\n  LA: {mimicit_path: LA_instructions.json, images_path: LA_images.json}\n"
    )
    stream = _stream(tmp_path / "mix.yaml", proc, seed=1)
    batch = stream.make_batch(0, list(stream.epoch_records(0)))
    assert batch.skipped == {} and batch.n_samples == 6 and batch.vision_x.shape[:2] == (6, 1)
    # the pixels are those of the parquet copy of the same images
    (tmp_path / "pq.yaml").write_text(
        "IMAGE_TEXT:\n  LA: {mimicit_path: LA_instructions.json, images_path: LA.parquet}\n"
    )
    ref = _stream(tmp_path / "pq.yaml", proc, seed=1)
    assert (ref.make_batch(0, list(ref.epoch_records(0))).vision_x == batch.vision_x).all()

    cases = {
        "": "empty file",
        '{"LA_IMG_0": "aGk=",\n "LA_IMG_1": 12}': "line 2: image 'LA_IMG_1': value is not a base64 string",
        '{"LA_IMG_0": "aGk=",\n\n "LA_IMG_1": "aGk': "line 3: file ends inside a string",
        '["aGk="]': "not an images parquet or an images JSON object",
        ' {\n "a" "aGk="}': "line 2: expected ':' after image id 'a'",
        '{"a": "aGk="} {}': "text after the closing '}'",
    }
    for text, message in cases.items():
        (tmp_path / "LA_images.json").write_text(text)
        with pytest.raises(SyphusError, match=message) as e:
            _stream(tmp_path / "mix.yaml", proc, seed=1)
        assert "LA_images.json" in str(e.value) and "\n" not in str(e.value)


def _train_cli(tmp_path: Path, out: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "syphus.cli", "train", "--cpu"]
        + [
            "--mix",
            str(tmp_path / "mix.yaml"),
            "--config",
            str(tmp_path / "train.yaml"),
            "--out",
            str(tmp_path / out),
        ],
        cwd=REPO,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_train_reads_legacy_images_json_and_stops_when_a_dataset_loses_its_samples(tmp_path):
    images, _ = _la(tmp_path, 8)
    _legacy_images_json(tmp_path / "LA_images.json", images)
    (tmp_path / "mix.yaml").write_text(
        "IMAGE_TEXT:\n  LA: {mimicit_path: LA_instructions.json, images_path: LA_images.json}\n"
    )
    (tmp_path / "train.yaml").write_text(
        "model: {name: tiny}\nbatch_size: 4\nmax_steps: 2\nzero_stage: 0\ntorch_threads: 1\n"
    )
    ok = _train_cli(tmp_path, "ok")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["skipped"] == {}

    # Every image unreadable: the run stops with the dataset and the reason, and exports nothing.
    _legacy_images_json(tmp_path / "LA_images.json", images, garbage=True)
    bad = _train_cli(tmp_path, "bad")
    assert bad.returncode != 0
    lines = [ln for ln in (bad.stdout + bad.stderr).splitlines() if ln.startswith("error: mix dataset")]
    assert lines, bad.stderr[-3000:]
    assert (
        "IMAGE_TEXT.LA" in lines[0]
        and "corrupt_image" in lines[0]
        and "max_skipped_fraction 0.05" in lines[0]
    )
    assert not (tmp_path / "bad" / "model").exists()


def test_skip_guard_allows_a_small_share_and_stops_above_it(tmp_path, proc):
    from trainer.data import SkipGuard

    def stream_with(bad: int) -> MixStream:
        images = {f"i{k}": (b"broken" if k < bad else draw()) for k in range(40)}
        rows = [row(f"R{k:02d}", "Colour?", "red", [f"i{k}"]) for k in range(40)]
        write_shards(tmp_path / f"s{bad}", rows, images)
        (tmp_path / "mix.yaml").write_text(f"IMAGE_TEXT:\n  syn: {{shards_path: s{bad}}}\n")
        return _stream(tmp_path / "mix.yaml", proc, seed=3)

    s = stream_with(2)  # 5 %: allowed
    guard = SkipGuard(s.datasets, 0.05)
    records = list(s.epoch_records(0))
    for k in range(0, 40, 4):
        guard.add(s.make_batch(k, records[k : k + 4]))
    guard.finish()
    s = stream_with(3)  # 7.5 %: stops at the third skip, before the epoch ends
    guard = SkipGuard(s.datasets, 0.05)
    records = list(s.epoch_records(0))
    with pytest.raises(SyphusError, match=r"IMAGE_TEXT\.syn: 3 of \d+ samples skipped \(corrupt_image 3\)"):
        for k in range(0, 40, 4):
            guard.add(s.make_batch(k, records[k : k + 4]))
    # a short run is judged on what it drew
    guard = SkipGuard(s.datasets, 0.05)
    bad_first = sorted(records, key=lambda r: r.id)[:4]
    guard.epoch_share["IMAGE_TEXT.syn"] = 1000
    guard.add(s.make_batch(0, bad_first))
    with pytest.raises(SyphusError, match="3 of 4 samples skipped"):
        guard.finish()


def test_otters_url_safe_base64_parquet_decodes(tmp_path, proc):
    """Otter reads its image parquets with base64.urlsafe_b64decode; such files must not turn
    into 'corrupt_image' skips here."""
    import pandas as pd

    images, _ = _la(tmp_path, 6)
    encoded = {k: base64.urlsafe_b64encode(v).decode() for k, v in images.items()}
    assert any(("-" in v or "_" in v) for v in encoded.values())
    pd.DataFrame({"base64": list(encoded.values())}, index=list(encoded)).to_parquet(tmp_path / "LA.parquet")
    (tmp_path / "mix.yaml").write_text(
        "IMAGE_TEXT:\n  LA: {mimicit_path: LA_instructions.json, images_path: LA.parquet}\n"
    )
    stream = _stream(tmp_path / "mix.yaml", proc, seed=1)
    batch = stream.make_batch(0, list(stream.epoch_records(0)))
    assert batch.skipped == {} and batch.n_samples == 6
