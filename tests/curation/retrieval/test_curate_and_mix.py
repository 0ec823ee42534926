"""Curation flags (reversible) and dataset-mix resolution."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.curate import CurateConfig, curate, detect_language, unflag
from curation.mix import plan_mix
from curation.store import InstructionRow
from schemas.errors import SyphusError
from syphus.cli import main
from tests.curation.retrieval.conftest import draw, make_corpus


def test_language_detection():
    assert detect_language("What colour is the car in the picture?") == "en"
    assert detect_language("¿De qué color es el coche en la imagen?") == "es"
    assert detect_language("Quelle est la couleur de la voiture dans l'image ?") == "fr"
    assert detect_language("Welche Farbe hat das Auto auf dem Bild?") == "de"
    assert detect_language("图片中的汽车是什么颜色？") == "zh"
    assert detect_language("写真の車は何色ですか？") == "ja"
    assert detect_language("사진 속 자동차는 무슨 색인가요?") == "ko"
    assert detect_language("ok") is None


@pytest.fixture
def messy_corpus(tmp_path):
    imgs = {"i1": draw("red", "circle"), "i2": draw("blue", "square")}
    rows = [
        InstructionRow("a1", "T", "What colour is the circle?", "The circle is red.", ["i1"]),
        InstructionRow(
            "a2", "T", "What colour is the circle?", "the circle is RED!", ["i1"]
        ),  # exact dup of a1
        InstructionRow(
            "a3", "T", "What is the colour of the circle?", "Red, I think.", ["i1"]
        ),  # near dup of a1
        InstructionRow(
            "a4", "T", "What colour is the circle?", "The circle is red.", ["i2"]
        ),  # other image: kept
        InstructionRow("a5", "T", "Describe the square.", "As an AI language model, I cannot see.", ["i2"]),
        InstructionRow("a6", "T", "Describe the square in detail please.", "", ["i2"]),  # too short
        InstructionRow(
            "a7", "T", "¿De qué color es el cuadrado en la imagen?", "El cuadrado es azul.", ["i2"], lang="en"
        ),  # labelled English, written in Spanish
        InstructionRow(
            "a8",
            "T",
            "¿De qué color es el cuadrado en la imagen?",
            "Es azul y está en el centro.",
            ["i2"],
            lang="es",
        ),
    ]
    c = make_corpus(tmp_path / "c", imgs, rows)
    yield c
    c.close()


def test_curate_flags_and_unflags(messy_corpus):
    c = messy_corpus
    dry = curate(c, CurateConfig(near_dup=0.85, dry_run=True))
    assert dry.run_id is None and c.con.execute("SELECT count(*) FROM instruction_flags").fetchone()[0] == 0
    res = curate(c, CurateConfig(near_dup=0.85))
    flags = {
        (i, f) for i, f in c.con.execute("SELECT ins_id, flag FROM instruction_flags WHERE active").fetchall()
    }
    assert ("a2", "dup_exact") in flags
    assert ("a3", "dup_near") in flags
    assert ("a5", "banned") in flags
    assert ("a6", "too_short") in flags
    assert ("a7", "wrong_lang") in flags
    assert not any(i in ("a1", "a4", "a8") for i, _ in flags)
    assert res.counts["dup_exact"] == 1 and res.counts["banned"] == 1
    active = {r[0] for r in c.con.execute("SELECT id FROM active_instructions").fetchall()}
    assert active == {"a1", "a4", "a8"}
    # a rerun flags the same records (keep-first in id order), nothing more
    curate(c, CurateConfig(near_dup=0.85))
    assert c.con.execute("SELECT count(*) FROM instruction_flags WHERE active").fetchone()[0] == len(flags)
    # reversible: deactivate one kind, then one run's flags
    assert unflag(c, flag="banned") == 1
    assert "a5" in {r[0] for r in c.con.execute("SELECT id FROM active_instructions").fetchall()}
    assert unflag(c) == len(flags) - 1
    assert c.con.execute("SELECT count(*) FROM active_instructions").fetchone()[0] == 8
    assert c.con.execute("SELECT count(*) FROM instructions").fetchone()[0] == 8


def _mimicit(path, n, prefix="LA"):
    data = {
        f"{prefix}_INS_{i:05d}": {
            "instruction": f"q{i}",
            "answer": f"a{i}",
            "image_ids": [],
            "rel_ins_ids": [],
        }
        for i in range(n)
    }
    path.write_text(json.dumps({"meta": {}, "data": data}))


def _shards(folder, tasks):
    folder.mkdir()
    t = pa.table({"id": [f"r{i}" for i in range(len(tasks))], "task": tasks, "lang": ["en"] * len(tasks)})
    pq.write_table(t, folder / "part-00000.parquet")
    pq.write_table(
        pa.table({"image_id": pa.array([], pa.string()), "bytes": pa.array([], pa.binary())}),
        folder / "images-00000.parquet",
    )
    man = {
        "created_at": "2026-01-01T00:00:00",
        "rows": len(tasks),
        "tasks": {},
        "langs": {"en": len(tasks)},
        "shards": [
            {
                "instructions": "part-00000.parquet",
                "images": "images-00000.parquet",
                "rows": len(tasks),
                "images_rows": 0,
            }
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(man))


def test_mix_resolution_numbers(tmp_path):
    _mimicit(tmp_path / "LA.json", 10)
    _mimicit(tmp_path / "SD.json", 40, "SD")
    _mimicit(tmp_path / "LIMA.json", 7, "LIMA")
    _shards(tmp_path / "ours", ["CGD"] * 6 + ["SD"] * 4)
    (tmp_path / "mix.yaml").write_text(
        "IMAGE_TEXT:\n"
        "  LA: {mimicit_path: LA.json, num_samples: 25}\n"
        "  SD: {mimicit_path: SD.json, num_samples: 4}\n"
        "  OURS: {shards_path: ours, tasks: [CGD], num_samples: -1}\n"
        "TEXT_ONLY:\n"
        "  LIMA: {mimicit_path: LIMA.json}\n"
    )
    plan = plan_mix(tmp_path / "mix.yaml", seed=3, out=tmp_path / "plan.json")
    by = {e.name: e for e in plan.datasets}
    assert (by["LA"].available, by["LA"].num_samples, by["LA"].full_passes, len(by["LA"].extra)) == (
        10,
        25,
        2,
        5,
    )
    assert len(set(by["LA"].extra)) == 5
    assert (by["SD"].available, by["SD"].num_samples, by["SD"].full_passes, len(by["SD"].extra)) == (
        40,
        4,
        0,
        4,
    )
    assert all(e.startswith("SD_INS_") for e in by["SD"].extra)
    assert (by["OURS"].available, by["OURS"].num_samples, by["OURS"].full_passes) == (6, 6, 1)
    assert (by["LIMA"].num_samples, by["LIMA"].full_passes) == (7, 1)
    assert plan.groups == {"IMAGE_TEXT": 35, "TEXT_ONLY": 7} and plan.total == 42
    assert by["LA"].share_of_group == pytest.approx(25 / 35, abs=1e-5)
    assert by["LIMA"].share_of_total == pytest.approx(7 / 42, abs=1e-5)
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["total"] == 42 and written["datasets"][0]["extra"] == by["LA"].extra
    # seeded: same seed, same draw; another seed, another draw
    assert plan_mix(tmp_path / "mix.yaml", seed=3).datasets[1].extra == by["SD"].extra
    assert plan_mix(tmp_path / "mix.yaml", seed=4).datasets[1].extra != by["SD"].extra


def test_mix_missing_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  LA: {mimicit_path: nope.json}\n")
    with pytest.raises(SyphusError, match=r"IMAGE_TEXT\.LA: mimicit_path .*nope.json not found"):
        plan_mix(tmp_path / "mix.yaml", out=tmp_path / "plan.json")
    assert not (tmp_path / "plan.json").exists()
    with pytest.raises(SystemExit) as e:
        main(["mix", str(tmp_path / "mix.yaml")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_cli_curate_retrieve_and_mix(messy_corpus, tmp_path, capsys):
    path = str(messy_corpus.path)
    messy_corpus.close()
    main(["curate", path, "--near-dup", "0.85"])
    out = capsys.readouterr().out
    assert "dup_exact" in out and "--unflag-run" in out
    main(["retrieve", path, "--policy", "t2t", "--k", "1"])
    out = capsys.readouterr().out
    assert "3 queries" in out
    main(["retrieve", "--corpus", path, "--policy", "t2t", "--k", "1"])  # --corpus, as generate takes it
    assert "3 queries" in capsys.readouterr().out
    for argv, message in [
        (["retrieve", "--policy", "t2t"], "no corpus given"),
        (["curate", path, "--corpus", str(tmp_path / "other")], "two corpora given"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    _mimicit(tmp_path / "LA.json", 3)
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  LA: {mimicit_path: LA.json, num_samples: 5}\n")
    main(["mix", str(tmp_path / "mix.yaml")])
    assert (tmp_path / "mix.plan.json").exists()
    assert "LA" in capsys.readouterr().out
