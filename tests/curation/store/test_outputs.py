"""Commands that write (export shards, export mimicit, report, mix) never replace or overwrite
what they did not write, never write into the corpus, and never let data choose a path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.store import Corpus
from tests.curation.store.helpers import one_error_line, png, run_syphus, summary_value, write_mimicit
from tests.curation.store.test_mimicit_io import snapshot


@pytest.fixture
def corpus(tmp_path) -> Path:
    files = write_mimicit(tmp_path / "in", n_images=6, n_ins=8)
    c = tmp_path / "corpus"
    rc, _, err = run_syphus(
        "import", "mimicit", files["instructions"], "-c", c, "-i", files["images"], "--train", files["train"]
    )
    assert rc == 0, err
    return c


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_shards_replaces_only_a_folder_it_wrote(corpus, tmp_path):
    out = tmp_path / "shards"
    assert run_syphus("export", "shards", "-c", corpus, "-o", out)[0] == 0
    user_old = tmp_path / "shards.old"  # a user's folder that the old swap deleted
    user_old.mkdir()
    (user_old / "keep.txt").write_text("mine")
    rc, _, err = run_syphus("export", "shards", "-c", corpus, "-o", out, "--rows-per-part", "3")
    assert rc == 0, err
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 3
    assert (user_old / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "in", "shards", "shards.old"]

    # a shard folder the user added a file to is theirs now
    (out / "notes.md").write_text("my notes")
    rc, _, err = run_syphus("export", "shards", "-c", corpus, "-o", out)
    assert rc == 1 and "notes.md" in one_error_line(err) and (out / "notes.md").exists()

    user = tmp_path / "photos"
    user.mkdir()
    (user / "a.jpg").write_bytes(b"holiday")
    a_file = tmp_path / "paper.pdf"
    a_file.write_bytes(b"%PDF")
    before = snapshot(corpus)
    for target, words in [
        (user, "not a shard folder"),
        (a_file, "not a folder"),
        (corpus, "inside the corpus"),
        (corpus / "shards", "inside the corpus"),
        (tmp_path, "holds the corpus"),
    ]:
        rc, _, err = run_syphus("export", "shards", "-c", corpus, "-o", target)
        line = one_error_line(err)
        assert rc == 1 and str(target) in line and words in line, line
    assert (user / "a.jpg").read_bytes() == b"holiday" and a_file.read_bytes() == b"%PDF"
    assert snapshot(corpus) == before and (corpus / "corpus.duckdb").exists()


def test_export_shards_rejects_bad_numbers(corpus, tmp_path):
    for opt, value, words in [
        ("--rows-per-part", "0", "--rows-per-part: must be at least 1"),
        ("--max-context", "-1", "--max-context: must be 0 or more"),
    ]:
        rc, _, err = run_syphus("export", "shards", "-c", corpus, "-o", tmp_path / "s", opt, value)
        assert rc == 1 and words in one_error_line(err)
    assert not (tmp_path / "s").exists()


def test_export_mimicit_never_overwrites_files_it_did_not_write(corpus, tmp_path):
    # exporting into the folder that holds the user's original files must not replace them
    original = _tree(tmp_path / "in")
    rc, _, err = run_syphus("export", "mimicit", "-c", corpus, "-o", tmp_path / "in")
    assert rc == 1 and "LA_instructions.json" in one_error_line(err)
    assert _tree(tmp_path / "in") == original
    for target in (corpus, corpus / "images"):  # a parquet in images/ would be deleted as an orphan
        rc, _, err = run_syphus("export", "mimicit", "-c", corpus, "-o", target)
        assert rc == 1 and "inside the corpus" in one_error_line(err)
    out = tmp_path / "mimicit"
    for _ in range(2):  # its own earlier export is replaced
        rc, _, err = run_syphus("export", "mimicit", "-c", corpus, "-o", out)
        assert rc == 0, err
    assert {p.name for p in out.iterdir()} == {
        "LA_instructions.json",
        "LA_train.json",
        "LA.parquet",
        "syphus-export.json",
    }


def test_report_and_mix_plan_replace_only_their_own_files(corpus, tmp_path):
    mine = tmp_path / "thesis.html"
    mine.write_text("<html>my thesis</html>")
    rc, _, err = run_syphus("report", "--corpus", corpus, "--out", mine)
    assert rc == 1 and "not a report syphus wrote" in one_error_line(err)
    assert mine.read_text() == "<html>my thesis</html>"
    rc, _, err = run_syphus("report", "--corpus", corpus, "--out", corpus / "corpus.duckdb")
    assert rc == 1 and "inside the corpus" in one_error_line(err)
    report = tmp_path / "report.html"
    for _ in range(2):
        rc, _, err = run_syphus("report", "--corpus", corpus, "--out", report)
        assert rc == 0, err

    mix = tmp_path / "mix.yaml"
    ins = tmp_path / "in" / "LA_instructions.json"
    mix.write_text(f"IMAGE_TEXT:\n  la:\n    mimicit_path: {ins}\n    num_samples: 4\n")
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    rc, _, err = run_syphus("mix", mix, "--out", notes)
    assert rc == 1 and "not a sampling plan syphus wrote" in one_error_line(err)
    assert notes.read_text() == '{"mine": true}'
    for _ in range(2):
        rc, _, err = run_syphus("mix", mix)
        assert rc == 0, err


def _write_instructions(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {}, "data": data}), encoding="utf-8")
    return path


def test_ids_and_task_names_that_could_leave_the_output_folder_are_refused(corpus, tmp_path):
    before = snapshot(corpus)
    rec = {"instruction": "q", "answer": "a", "image_ids": ["LA_IMG_000001"]}
    for ins_id in ("../PWN_INS_00001", "/tmp/PWN_INS_00001", ".hidden_INS_1", "a\\b_INS_1"):
        f = _write_instructions(tmp_path / "evil" / "x_instructions.json", {ins_id: rec})
        rc, _, err = run_syphus("import", "mimicit", f, "-c", corpus)
        assert rc == 1 and "not a valid name" in one_error_line(err), err
        rc, out, err = run_syphus("import", "mimicit", f, "-c", corpus, "--skip-bad")
        assert rc == 0 and "invalid id or task" in out, out + err
    f = _write_instructions(tmp_path / "ok" / "x_instructions.json", {"X_INS_1": rec})
    rc, _, err = run_syphus("import", "mimicit", f, "-c", corpus, "--task", "../up")
    assert rc == 1 and "--task '../up'" in one_error_line(err)
    rc, _, err = run_syphus("export", "mimicit", "-c", corpus, "-o", tmp_path / "x", "--merge", "../up")
    assert rc == 1 and "--merge name '../up'" in one_error_line(err)
    with Corpus(corpus) as c:  # skipped records were quarantined, nothing else changed
        assert c.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 4
    assert snapshot(corpus) == before

    # a corpus written before names were checked: export still stays inside --out
    with Corpus(corpus) as c:
        c.con.execute("UPDATE instructions SET task = '../PWN'")
    rc, _, err = run_syphus("export", "mimicit", "-c", corpus, "-o", tmp_path / "out")
    assert rc == 1 and "'../PWN_instructions.json'" in one_error_line(err)
    assert not list(tmp_path.glob("PWN*")) and not (tmp_path / "out").exists()


def test_unknown_in_context_ids_at_import_are_counted_and_resolve_later(tmp_path):
    files = write_mimicit(tmp_path / "in", n_images=4, n_ins=6)
    doc = json.loads(files["instructions"].read_text(encoding="utf-8"))
    doc["data"]["LA_INS_00002"]["rel_ins_ids"].append("LB_INS_00001")
    files["instructions"].write_text(json.dumps(doc), encoding="utf-8")
    c = tmp_path / "c"
    rc, out, err = run_syphus("import", "mimicit", files["instructions"], "-c", c, "-i", files["images"])
    assert rc == 0, err
    assert summary_value(out, "context links to pairs not in the corpus (kept)").startswith(
        "1 (e.g. 'LB_INS_00001'"
    )
    assert summary_value(run_syphus("stats", "-c", c)[1], "missing in-context references") == "1"
    rc, out, err = run_syphus("export", "shards", "-c", c, "-o", tmp_path / "s")
    assert rc == 0 and summary_value(out, "in-context examples left out (pair or its images missing)") == "1"
    # the file that holds the pair arrives later: the link resolves, nothing was lost
    other = write_mimicit(tmp_path / "lb", task="LB", n_images=2, n_ins=2)
    assert run_syphus("import", "mimicit", other["instructions"], "-c", c, "-i", other["images"])[0] == 0
    assert summary_value(run_syphus("stats", "-c", c)[1], "missing in-context references") == "0"

    train = json.loads(files["train"].read_text())
    train["NOT_A_PAIR"] = ["LA_INS_00001"]
    files["train"].write_text(json.dumps(train))
    c2 = tmp_path / "c2"
    args = ("import", "mimicit", files["instructions"], "-c", c2, "-i", files["images"], "--train")
    rc, out, err = run_syphus(*args, files["train"])
    assert rc == 0, err
    assert summary_value(out, "skipped: train entry without its pair").startswith("1 (e.g. ")
    wrong = tmp_path / "other_train.json"
    wrong.write_text(json.dumps({"X_INS_1": ["X_INS_2"], "X_INS_2": []}))
    rc, _, err = run_syphus(*args, wrong)
    assert rc == 1 and "none of its 2 entries names an instruction" in one_error_line(err)


def _otter_contract(folder: Path) -> dict[str, int]:
    """What the original Otter loader needs of each exported file set, checked file by file:
    every train key and in-context id is an instruction of the same file, and every image id
    of those instructions is in the same file's images parquet. Returns links per file."""
    import pandas as pd

    links = {}
    for ins_file in sorted(folder.glob("*_instructions.json")):
        name = ins_file.name.removesuffix("_instructions.json")
        data = json.loads(ins_file.read_text(encoding="utf-8"))["data"]
        train = json.loads((folder / f"{name}_train.json").read_text())
        images = pd.read_parquet(folder / f"{name}.parquet")
        assert set(train) <= set(data), name
        n = 0
        for ins_id, rec in data.items():
            for rel in rec["rel_ins_ids"] + train.get(ins_id, []):
                assert rel in data, (name, ins_id, rel)
                n += 1
            for image_id in rec["image_ids"]:
                assert isinstance(images.loc[image_id]["base64"], str), (name, image_id)
        links[name] = n
    return links


def test_mimicit_export_of_a_multi_task_corpus_satisfies_otters_loader(tmp_path):
    la = write_mimicit(tmp_path / "la", task="LA", n_images=5, n_ins=6)
    sd = write_mimicit(tmp_path / "sd", task="SD", n_images=4, n_ins=5)
    # SD pairs take LA pairs as in-context examples (as a corpus-wide retrieval does)
    doc = json.loads(sd["instructions"].read_text(encoding="utf-8"))
    for k, rec in enumerate(doc["data"].values()):
        rec["rel_ins_ids"] = [f"LA_INS_{k:05d}", rec["rel_ins_ids"][0]]
    sd["instructions"].write_text(json.dumps(doc), encoding="utf-8")
    c = tmp_path / "c"
    for f in (la, sd):
        rc, _, err = run_syphus("import", "mimicit", f["instructions"], "-c", c, "-i", f["images"])
        assert rc == 0, err

    rc, out, err = run_syphus("export", "mimicit", "-c", c, "-o", tmp_path / "split")
    assert rc == 0, err
    dropped = summary_value(out, "in-context ids dropped: in another task's file")
    assert dropped.startswith("5 (keep them with --merge NAME")
    links = _otter_contract(tmp_path / "split")
    assert set(links) == {"LA", "SD"}
    assert links["SD"] == 5 * 2  # rel_ins_ids (1 left each) + the train entries that repeat them

    rc, out, err = run_syphus("export", "mimicit", "-c", c, "-o", tmp_path / "merged", "--merge", "ALL")
    assert rc == 0, err
    assert _otter_contract(tmp_path / "merged") == {"ALL": 6 * 2 * 2 + 5 * 2 * 2}

    # a merged file imports back with each pair's own task
    m = tmp_path / "merged"
    rc, _, err = run_syphus(
        "import", "mimicit", m / "ALL_instructions.json", "-c", tmp_path / "c2", "-i", m / "ALL.parquet"
    )
    assert rc == 0, err
    with Corpus(tmp_path / "c2") as cc:
        assert cc.con.execute("SELECT task, count(*) FROM instructions GROUP BY 1 ORDER BY 1").fetchall() == [
            ("LA", 6),
            ("SD", 5),
        ]


def test_a_corpus_never_deletes_files_it_did_not_write(corpus, tmp_path):
    # a folder with an images/ of someone else's parquet files is not taken for a corpus
    download = tmp_path / "download"
    (download / "images").mkdir(parents=True)
    (download / "images" / "LA.parquet").write_bytes(b"their images")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(png(1))
    rc, _, err = run_syphus("import", "images", photos, "-c", download)
    assert rc == 1 and "not a corpus" in one_error_line(err)
    assert (download / "images" / "LA.parquet").read_bytes() == b"their images"
    assert not (download / "corpus.duckdb").exists()
    # in a real corpus, only files named like its shards are ever cleaned up
    (corpus / "images" / "notes.parquet").write_bytes(b"mine")
    assert run_syphus("stats", "-c", corpus)[0] == 0
    assert run_syphus("import", "images", photos, "-c", corpus)[0] == 0
    assert (corpus / "images" / "notes.parquet").read_bytes() == b"mine"


def test_mimicit_export_leaves_out_pairs_whose_images_are_missing(tmp_path):
    la = write_mimicit(tmp_path / "la", task="LA", n_images=5, n_ins=6)
    c = tmp_path / "c"
    assert run_syphus("import", "mimicit", la["instructions"], "-c", c, "-i", la["images"])[0] == 0
    with Corpus(c) as cc:  # as after 'generate' for annotations whose images were never imported
        cc.con.execute("DELETE FROM images WHERE id = 'LA_IMG_000004'")
    rc, out, err = run_syphus("export", "mimicit", "-c", c, "-o", tmp_path / "out")
    assert rc == 0, err
    assert summary_value(out, "pairs skipped (missing images)") == "2"
    assert summary_value(out, "in-context ids dropped: pair not exported") == "3"
    _otter_contract(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "LA_instructions.json").read_text(encoding="utf-8"))["data"]
    assert sorted(data) == [f"LA_INS_{k:05d}" for k in (0, 1, 2, 5)]
