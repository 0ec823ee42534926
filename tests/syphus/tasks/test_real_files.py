"""Every reader on files as their projects distribute them (tests/data/real/, see each SOURCE.md):
the library reads and counts the records, and the CLI (`generate --dry-run`, `import mimicit`,
`mix`, `export`, `report`) does the same from the command line."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from syphus.tasks.base import Annotation
from syphus.tasks.registry import get_task
from tests.paths import REAL_DATA as REAL

SD_VAL = REAL / "spot_the_diff" / "val.json"
COCO = [REAL / "coco" / "captions_val2017.json", REAL / "coco" / "instances_val2017.json"]
ANET = REAL / "activitynet_captions" / "val_1.json"
ANET_TRAIN = REAL / "activitynet_captions" / "train.json"
TVC_SAMPLE = REAL / "tvc" / "sample_val_predictions.jsonl"
TVC_RELEASE = REAL / "tvc" / "tvc_val_release.jsonl"
TVQA_SUBS = REAL / "tvc" / "tvqa_preprocessed_subtitles.jsonl"
SCANREFER = REAL / "scanrefer" / "ScanRefer_filtered_val.json"
VIST = REAL / "vist" / "val.story-in-sequence.json"
EGO4D = REAL / "ego4d" / "narration.json"
MIMICIT = REAL / "mimicit"
OTTER_MIX = REAL / "otter_mix" / "Demo_Data.yaml"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    # a wide terminal, so that rich does not cut table cells
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "syphus.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def table(text: str) -> dict[str, str]:
    """The rows of a two-column rich table printed by the CLI, as {label: value}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def dry_run(task: str, files: list[Path], tmp_path: Path, *options: str) -> dict[str, str]:
    args = ["generate", "--task", task, "--corpus", tmp_path / "corpus", "--dry-run", "--no-progress"]
    for f in files:
        args += ["--annotations", f]
    for o in options:
        args += ["--task-option", o]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "corpus").exists()  # a dry run writes nothing
    return table(r.stdout)


def read(task: str, files: list[Path], **options) -> list[Annotation]:
    """The annotations a reader yields (without the notes it gives about skipped records)."""
    return [a for a in get_task(task, **options).read(files) if isinstance(a, Annotation)]


# -- Spot-the-Diff --------------------------------------------------------------------------


def _sd_pairs() -> dict[str, list[str]]:
    """img_id -> every annotator's non-empty sentences, straight from the JSON."""
    out: dict[str, list[str]] = {}
    for rec in json.loads(SD_VAL.read_text(encoding="utf-8")):
        sents = [" ".join(s.split()) for s in rec["sentences"] if s.strip()]
        if sents:
            out.setdefault(rec["img_id"], []).extend(sents)
    return out


def test_sd_slice_is_what_its_source_says():
    recs = json.loads(SD_VAL.read_text(encoding="utf-8"))
    ids = Counter(r["img_id"] for r in recs)
    empty = [r["img_id"] for r in recs if not any(s.strip() for s in r["sentences"])]
    assert (len(recs), len(ids), empty) == (346, 265, ["8069", "13520"])
    assert sum(n > 1 for n in ids.values()) == 73 and len(_sd_pairs()) == 264


def test_sd_reader_gives_one_annotation_per_pair_with_every_annotators_sentences():
    pairs = _sd_pairs()
    # the image ids Otter's convert-it gives Spot-the-Diff pairs (mimic-it/convert-it/datasets/change.py)
    anns = read("SD", [SD_VAL], image_id_pattern="SD_IMG_{img_id:0>5}_{n}")
    assert sorted(a.id for a in anns) == sorted(pairs)  # one per pair; "8069" has no sentence at all
    by_id = {a.id: a for a in anns}
    for img_id in ("9024", "13520", "5406"):  # described three times, once + once empty, once
        assert set(by_id[img_id].data.sentences) == set(pairs[img_id])
    assert by_id["5406"].image_ids == ["SD_IMG_05406_1", "SD_IMG_05406_2"]


def test_sd_generate_dry_run_accounts_for_every_record_of_the_real_file(tmp_path):
    args = ["generate", "--task", "SD", "--annotations", SD_VAL, "--corpus", tmp_path / "c", "--dry-run"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    # 346 records: 264 pairs; "8069" has only [""] (skipped, named); the other 81 records repeat
    # a pair. Four pairs share the prompt "there is more people" and two pairs each share two
    # other prompts, so 259 distinct requests.
    assert (rows["records read"], rows["annotations"], rows["requests"]) == ("346", "264", "259")
    assert int(rows["skipped"]) + int(rows["merged records"]) + int(rows["annotations"]) == 346
    assert "record 43" in r.stderr and "8069" in r.stderr


# -- COCO: LA and CGD -----------------------------------------------------------------------


def test_la_reads_real_coco_captions_and_instances():
    anns = read("LADD", COCO, image_id_pattern="LA_IMG_{image_id:012d}")  # MIMIC-IT's LA naming
    assert len(anns) == 24
    first = anns[0]
    assert (first.id, first.image_ids) == ("397133", ["LA_IMG_000000397133"])
    assert len(first.data.captions) == 5
    assert first.data.objects and all(0 <= v <= 1 for o in first.data.objects for v in o.box)
    captions = json.loads(COCO[0].read_text(encoding="utf-8"))["annotations"]
    assert sum(len(a.data.captions) for a in anns) == len(captions) == 120


def test_la_and_cgd_dry_run_on_real_coco(tmp_path):
    assert dry_run("LA", COCO, tmp_path)["requests"] == "72"  # 24 images x 3 kinds
    assert dry_run("LACR", COCO, tmp_path, "image_id_pattern={stem}")["requests"] == "24"
    assert dry_run("CGD", COCO, tmp_path)["requests"] == str(len(read("CGD", COCO)))


def test_cgd_pairs_real_coco_images_once_each():
    anns = read("CGD", COCO)
    assert len(anns) == 2
    used = [i for a in anns for i in a.image_ids]
    assert len(used) == len(set(used)) == 4
    assert all(a.data.shared_categories for a in anns)


# -- ActivityNet Captions: DC ---------------------------------------------------------------


def test_dc_reads_real_val_1_with_padded_sentences_and_integer_timestamps():
    anns = read("DC", [ANET])
    assert [a.id for a in anns] == ["v_uqiMw7tQ1Cc", "v_bXdq2zI1Ms0"]
    events = anns[1].data.events
    assert [(e.start, e.end) for e in events] == [(0, 10.23), (10.6, 39.84), (38.01, 73.1)]
    # the official sentences start with spaces; the prompt must not
    assert all(e.text == e.text.strip() for a in anns for e in a.data.events)
    assert anns[0].data.events[1].text.startswith("The coach helps")
    assert len(anns[0].image_ids) == 8


def test_dc_reads_real_train_json_whose_two_reversed_events_used_to_stop_the_file(tmp_path):
    anns = {a.id: a for a in read("DC", [ANET_TRAIN])}
    assert len(anns) == 5
    events = anns["v_0bosp4-pyTM"].data.events
    assert len(events) == 10  # every sentence kept
    assert all(e.start <= e.end for a in anns.values() for e in a.data.events)
    assert (60.71, 61.29) in [(e.start, e.end) for e in events]  # given as [61.29, 60.71]
    assert dry_run("DC", [ANET_TRAIN, ANET], tmp_path)["requests"] == "7"


def test_dc_generate_export_and_report_on_real_val_1(tmp_path, llm_server):
    corpus = tmp_path / "c"
    # the videos' frames, as a user would import them (export leaves out pairs without images)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for v in ("v_uqiMw7tQ1Cc", "v_bXdq2zI1Ms0"):
        for f in range(8):
            Image.new("RGB", (32, 24), (30 * f, 90, 160)).save(frames_dir / f"DC_IMG_{v}_{f}.png")
    r = cli("import", "images", frames_dir, "--corpus", corpus)
    assert r.returncode == 0, r.stderr
    r = cli("generate", "--task", "DC", "--annotations", ANET, "--corpus", corpus, "--no-progress",
            "--api-base", llm_server, "--model", "test-model", "--task-option", "image_id_pattern=DC_IMG_{video_id}_{frame}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = table(r.stdout)
    assert (s["annotations"], s["requests"], s["done"], s["pairs"]) == ("2", "2", "2", "4")

    r = cli("export", "mimicit", "--corpus", corpus, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "DC_instructions.json").read_text(encoding="utf-8"))
    assert len(doc["data"]) == 4
    frames = {tuple(rec["image_ids"]) for rec in doc["data"].values()}
    assert frames == {tuple(f"DC_IMG_{v}_{f}" for f in range(8)) for v in ("v_uqiMw7tQ1Cc", "v_bXdq2zI1Ms0")}

    r = cli("report", "--corpus", corpus, "--out", tmp_path / "report.html")
    assert r.returncode == 0, r.stderr
    assert "samples shown: 2 (DC 2); pairs: 4" in " ".join((r.stdout + r.stderr).split())
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "v_uqiMw7tQ1Cc" in html and "v_bXdq2zI1Ms0" in html


# -- TVCaption + TVQA subtitles: TVC --------------------------------------------------------


def test_tvc_reads_the_projects_own_sample_lines_without_duration_type_or_desc_id():
    anns = read("TVC", [TVC_SAMPLE])
    lines = [json.loads(x) for x in TVC_SAMPLE.read_text(encoding="utf-8").splitlines()]
    clips = Counter(x["vid_name"] for x in lines)
    assert len(anns) == len(clips) == 97
    for a in anns:
        assert len(a.data.moments) == clips[a.id]
        assert [m.start for m in a.data.moments] == sorted(m.start for m in a.data.moments)
    shows = Counter(a.data.show for a in anns)
    assert set(shows) <= {"Friends", "The Big Bang Theory", "Castle", "Grey's Anatomy", "House M.D.",
                          "How I Met Your Mother"}  # fmt: skip


def test_tvc_release_with_tvqa_subtitles_in_either_order(tmp_path):
    anns = read("TVC", [TVQA_SUBS, TVC_RELEASE])
    assert len(anns) == 30
    with_subs = {a.id: a.data.subtitles for a in anns if a.data.subtitles}
    assert sorted(with_subs) == sorted(
        ["friends_s01e03_seg02_clip_19", "friends_s04e21_seg02_clip_18", "castle_s06e12_seg02_clip_22"]
    )
    first = next(a for a in anns if a.id == "friends_s01e03_seg02_clip_19")
    assert first.data.duration == 61.46 and first.data.moments[0].text.startswith("Phoebe puts")
    assert dry_run("TVC", [TVC_RELEASE, TVQA_SUBS], tmp_path)["requests"] == "30"
    assert dry_run("TVC", [TVC_SAMPLE], tmp_path)["requests"] == "97"


# -- ScanRefer: SN --------------------------------------------------------------------------


def test_sn_groups_scanrefer_records_by_scene_and_object(tmp_path):
    anns = read("SN", [SCANREFER])
    assert [a.id for a in anns] == ["scene0011_00", "scene0015_00"]
    objects = anns[0].data.objects
    assert [o.object_id for o in objects] == ["0", "5", "22", "37"]  # numeric order, not text order
    assert len(objects[0].descriptions) == 2  # the exact duplicate description counted once
    assert dry_run("SN", [SCANREFER], tmp_path)["requests"] == "2"


# -- VIST story-in-sequence: VST ------------------------------------------------------------


def test_vst_orders_each_story_by_the_workers_photo_order(tmp_path):
    anns = read("VST", [VIST], image_id_pattern="VST_IMG_{photo_id}")  # MIMIC-IT's VST naming
    assert [a.id for a in anns] == ["45530", "45531"]
    assert anns[0].image_ids == [
        f"VST_IMG_{p}" for p in ("8605942", "8605855", "8605354", "8605170", "8605117")
    ]
    # the second story's storylets are listed out of order in the file
    assert anns[1].image_ids == [
        f"VST_IMG_{p}" for p in ("8605855", "8605942", "8605001", "8605354", "8605170")
    ]
    second = anns[1].data.photos
    assert (
        second[0].sentence == "Mary loved the spinning cups!"
    )  # original_text, not the [female] placeholder
    assert (second[2].title, second[2].tags) == ("", [])
    assert dry_run("VST", [VIST], tmp_path)["requests"] == "2"


# -- Ego4D narrations: E4D ------------------------------------------------------------------


def test_e4d_reads_narration_json_with_a_redacted_video_and_two_passes(tmp_path):
    anns = read("E4D", [EGO4D], image_id_pattern="E4D_IMG_{video_uid}_{frame}")
    # video 1 minute 0 (7 narrations) and video 2 minute 0 (5); minute 1 of video 1 has 2 (< 4);
    # the redacted video has no pass
    assert [a.id for a in anns] == [
        "000786a7-3f9d-4fe6-bfb3-045b368f7d44_0",
        "002ad105-bd9a-4858-953e-54e88dc7587e_0",
    ]
    assert anns[0].data.summary.startswith("C makes a drink of milk")
    assert all("#" not in n.text for a in anns for n in a.data.narrations)
    assert anns[0].image_ids[0] == "E4D_IMG_000786a7-3f9d-4fe6-bfb3-045b368f7d44_63"  # timestamp_frame
    assert dry_run("E4D", [EGO4D], tmp_path)["requests"] == "2"
    assert dry_run("E4D", [EGO4D], tmp_path, "narration_pass=2", "min_narrations=2")["requests"] == "1"


# -- MIMIC-IT files and Otter's mix YAML ----------------------------------------------------


def _given_images() -> dict[str, bytes]:
    given = json.loads((MIMICIT / "SD.json").read_text(encoding="utf-8"))
    return {iid: base64.b64decode(b64) for iid, b64 in given.items()}


def test_import_mimicit_legacy_images_json_keeps_the_original_bytes_for_shards(tmp_path):
    from curation.store import Corpus

    corpus = tmp_path / "c"
    r = cli("import", "mimicit", MIMICIT / "SD_instructions.json", "--corpus", corpus,
            "--images", MIMICIT / "SD.json", "--train", MIMICIT / "SD_train.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = table(r.stdout)
    assert (s["instructions added"], s["images added"].split()[0]) == ("5", "4")
    with Corpus(corpus) as c:
        assert {iid: c.get_image(iid) for iid in _given_images()} == _given_images()
    # training shards: every pair with both of its images, none skipped
    r = cli("export", "shards", "--corpus", corpus, "--out", tmp_path / "shards")
    assert r.returncode == 0, r.stderr
    s = table(r.stdout)
    assert (s["pairs"], s["images"], s["skipped (missing images)"]) == ("5", "4", "0")


def test_import_mimicit_parquet_then_export_and_report(tmp_path):
    import pandas as pd

    corpus, out = tmp_path / "c", tmp_path / "out"
    args = ["import", "mimicit", MIMICIT / "SD_instructions.json", "--corpus", corpus,
            "--images", MIMICIT / "SD.parquet", "--train", MIMICIT / "SD_train.json"]  # fmt: skip
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    s = table(r.stdout)
    assert (s["instructions added"], s["images added"].split()[0]) == ("5", "4")
    assert table(cli(*args).stdout)["instructions already present"] == "5"  # a rerun adds nothing

    r = cli("export", "mimicit", "--corpus", corpus, "--out", out)
    assert r.returncode == 0, r.stderr
    src = json.loads((MIMICIT / "SD_instructions.json").read_text(encoding="utf-8"))["data"]
    got = json.loads((out / "SD_instructions.json").read_text(encoding="utf-8"))["data"]
    assert got.keys() == src.keys()
    for k, rec in src.items():
        assert {f: got[k][f] for f in ("instruction", "answer", "image_ids")} == {
            f: rec[f] for f in ("instruction", "answer", "image_ids")
        }
        assert set(got[k]["rel_ins_ids"]) == set(rec["rel_ins_ids"])
    # Otter reads images with pandas and urlsafe base64: the bytes are the ones we were given
    df = pd.read_parquet(out / "SD.parquet")
    for iid, data in _given_images().items():
        assert base64.urlsafe_b64decode(df.loc[iid]["base64"]) == data

    r = cli("report", "--corpus", corpus, "--out", tmp_path / "report.html")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Where is the blue truck in the second image?" in html and "data:image" in html


def test_mix_resolves_otters_demo_data_yaml_unchanged(tmp_path):
    import yaml

    mix = tmp_path / OTTER_MIX.name
    shutil.copyfile(OTTER_MIX, mix)
    raw = yaml.safe_load(mix.read_text(encoding="utf-8"))
    for datasets in raw.values():
        for ds in datasets.values():  # the tree the YAML names, relative to its folder
            for key, fixture in (("mimicit_path", "SD_instructions.json"), ("images_path", "SD.parquet")):
                p = tmp_path / ds[key]
                p.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(MIMICIT / fixture, p)
    r = cli("mix", mix, "--out", tmp_path / "plan.json")
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    names = [d["name"] for d in plan["datasets"]]
    assert names == list(raw["IMAGE_TEXT"])  # file order; the commented-out datasets are not there
    assert len(names) == 11 and "M3IT_VQA" not in names and "LIMA" not in names
    want = {n: (5 if ds["num_samples"] == -1 else ds["num_samples"]) for n, ds in raw["IMAGE_TEXT"].items()}
    assert {d["name"]: d["num_samples"] for d in plan["datasets"]} == want
    assert plan["total"] == 2 * 5 + 9 * 20000


def test_mix_accepts_the_task_description_key_otters_loader_reads(tmp_path):
    # Otter's pipeline/mimicit_utils/mimicit_dataset.py reads mimicit_path, images_path,
    # train_config_path, num_samples and task_description from each dataset of the YAML
    for name in ("SD_instructions.json", "SD.parquet", "SD_train.json"):
        shutil.copyfile(MIMICIT / name, tmp_path / name)
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        "IMAGE_TEXT_IN_CONTEXT:\n"
        "  SD:\n"
        "    mimicit_path: SD_instructions.json\n"
        "    images_path: SD.parquet\n"
        "    train_config_path: SD_train.json\n"
        "    num_samples: 3\n"
        '    task_description: "Spot the difference between two surveillance frames."\n',
        encoding="utf-8",
    )
    r = cli("mix", mix, "--out", tmp_path / "plan.json")
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    assert [(d["name"], d["num_samples"]) for d in plan["datasets"]] == [("SD", 3)]


@pytest.fixture
def llm_server():
    from syphus.testing.openai_server import OpenAIServer, ServerConfig

    srv = OpenAIServer(ServerConfig()).start()
    yield srv.base_url
    srv.stop()
