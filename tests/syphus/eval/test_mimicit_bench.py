"""`syphus shapes` (the demo's drawn-shapes task) and the `mimicit` benchmark that scores a model on
held-out MIMIC-IT pairs by exact match, through the CLI."""

from __future__ import annotations

import io
import json

import duckdb
import pytest
from PIL import Image

from curation.shapes import QUESTIONS, chance_accuracy, held_out_scene, shapes_questions
from syphus.eval.benchmarks import get_benchmark
from syphus.eval.mimicit import normalise_answer
from tests.trainer.train.helpers import run_cli


@pytest.fixture
def shapes(tmp_path, capsys):
    folder = tmp_path / "shapes"
    code, out, err = run_cli(
        ["shapes", str(folder), "--train", "60", "--heldout", "20", "--seed", "1"], capsys
    )
    assert code == 0, err
    assert "train: 60 questions" in out and "held out: 20 questions" in out
    return folder


def _pixels(data: bytes) -> set:
    return {c for _, c in Image.open(io.BytesIO(data)).convert("RGB").getcolors(1 << 16)}


def test_shapes_writes_importable_splits_that_share_no_scene(shapes, tmp_path, capsys):
    bench = get_benchmark("mimicit")
    held = list(bench.read(shapes / "heldout"))
    blank = list(bench.read(shapes / "heldout-blank" / "SHAPES_instructions.json"))
    train = list(bench.read(shapes / "train"))
    assert (len(train), len(held)) == (60, 20)
    # the held-out images are never drawn for training; the blank copy asks the same on white canvases
    assert not {s.images[0] for s in held} & {s.images[0] for s in train}
    assert [(s.id, s.question, s.target, s.category) for s in blank] == [
        (s.id, s.question, s.target, s.category) for s in held
    ]
    assert all(_pixels(s.images[0]) == {(255, 255, 255)} for s in blank)
    assert all(len(_pixels(s.images[0])) > 1 for s in held)
    assert {s.category for s in held} <= set(QUESTIONS)
    assert all(s.target in QUESTIONS[s.category][1] for s in held + train)
    assert (shapes / "heldout" / f"{held[0].meta['image_ids'][0]}.png").read_bytes() == held[0].images[0]

    corpus = tmp_path / "c"
    code, _, err = run_cli(
        ["import", "mimicit", str(shapes / "train" / "SHAPES_instructions.json"), "--corpus", str(corpus),
         "--images", str(shapes / "train" / "SHAPES.parquet")], capsys,
    )  # fmt: skip
    assert code == 0, err
    db = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    assert db.execute("select task, count(*) from instructions group by task").fetchall() == [("SHAPES", 60)]
    db.close()

    # the same command again rewrites its own files; a folder it did not write is refused
    again = run_cli(["shapes", str(shapes), "--train", "60", "--heldout", "20", "--seed", "1"], capsys)
    assert again[0] == 0
    assert [s.images for s in bench.read(shapes / "heldout")] == [s.images for s in held]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = run_cli(["shapes", str(other)], capsys)
    assert code == 1 and "was not written by 'syphus shapes'" in err and len(err.strip().splitlines()) == 1
    assert (other / "notes.txt").read_text() == "keep me"


def test_the_split_is_a_fixed_fifth_of_the_scenes():
    train = shapes_questions(400, 0, jitter=2, split="train")
    held = shapes_questions(100, 1, jitter=2, split="heldout")
    assert not any(held_out_scene(q.scene) for q in train) and all(held_out_scene(q.scene) for q in held)
    assert not {q.scene for q in train} & {q.scene for q in held}
    assert 0.3 < chance_accuracy() < 0.4


def test_exact_match_after_normalising(shapes):
    bench = get_benchmark("mimicit")
    samples = list(bench.read(shapes / "heldout", limit=4))
    t = [s.target for s in samples]
    preds = {
        samples[0].id: f"  {t[0].upper()}.",  # case, spaces and a full stop: right
        samples[1].id: f"the {t[1]}",  # an article: right
        samples[2].id: f"{t[2]}dish",  # another word: wrong
        # samples[3] has no prediction: not scored, and a note says so
    }
    r = bench.score(samples, preds)
    got = {v.sample_id: (v.parsed, v.correct) for v in r.verdicts}
    assert got[samples[0].id] == (t[0], 1.0) and got[samples[1].id] == (t[1], 1.0)
    assert got[samples[2].id] == (f"{t[2]}dish", 0.0) and samples[3].id not in got
    overall = r.metric("accuracy")
    assert (overall.value, overall.n) == (pytest.approx(2 / 3), 3)
    assert overall.ci95[0] < overall.value < overall.ci95[1]
    assert any("1 of 4 samples had no prediction" in n for n in r.notes)
    assert normalise_answer("An Apple!") == "apple" and normalise_answer("") == ""


def test_layout_errors_name_the_file(shapes, tmp_path, capsys):
    bench = get_benchmark("mimicit")
    both = tmp_path / "two"
    both.mkdir()
    for name in ("A", "B"):
        (both / f"{name}_instructions.json").write_text('{"data": {}}')
    with pytest.raises(Exception, match=r"expected exactly one \*_instructions.json .*A_instructions.json"):
        list(bench.read(both))
    lone = tmp_path / "lone"
    lone.mkdir()
    ins = lone / "SHAPES_instructions.json"
    ins.write_text((shapes / "heldout" / "SHAPES_instructions.json").read_text())
    with pytest.raises(Exception, match="its images parquet SHAPES.parquet is not beside it"):
        list(bench.read(ins))
    doc = json.loads(ins.read_text())
    first = next(iter(doc["data"]))
    doc["data"][first]["image_ids"] = ["NOT_THERE"]
    ins.write_text(json.dumps(doc))
    (lone / "SHAPES.parquet").write_bytes((shapes / "heldout" / "SHAPES.parquet").read_bytes())
    with pytest.raises(Exception, match=f"record '{first}': image 'NOT_THERE' is not in the images parquet"):
        list(bench.read(ins))
    code, _, err = run_cli(
        ["eval", "--model", "x", "--bench", "mimicit", "--data", str(ins), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 1 and "NOT_THERE" in err and len(err.strip().splitlines()) == 1


def test_a_saved_otter_through_syphus_eval(shapes, otter_dir, tmp_path, capsys):
    out = tmp_path / "results"
    code, stdout, err = run_cli(
        ["eval", "--model", str(otter_dir), "--bench", "mimicit", "--data",
         str(shapes / "heldout" / "SHAPES_instructions.json"), "--out", str(out), "--no-progress"], capsys,
    )  # fmt: skip
    assert code == 0, err
    (folder,) = [p for p in out.iterdir() if p.is_dir() and p.name != "images"]
    saved = json.loads((folder / "mimicit.json").read_text())
    assert saved["bench"] == "mimicit" and len(saved["verdicts"]) == 20
    assert {m["category"] for m in saved["metrics"]} == {None, *QUESTIONS}
    assert "mimicit" in stdout and "accuracy" in stdout
