"""Each task reads its public annotation format, renders messages, parses replies, and names
file, record and field when an annotation is malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.errors import SyphusError
from syphus.tasks.base import ResponseParseError
from syphus.tasks.registry import get_task, task_names

GOOD_REPLY = (
    "Here are the pairs:\n"
    "Question: What happens in the scene?\nAnswer: A person does something visible.\n"
    "Question: Where does it happen?\nAnswer: In the place shown."
)
GARBAGE = "Lorem ipsum dolor sit amet, this reply has no pairs in it at all."


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def coco_files(d: Path) -> list[Path]:
    images = [
        {"id": 397133, "file_name": "000000397133.jpg", "width": 640, "height": 427},
        {"id": 397134, "file_name": "000000397134.jpg", "width": 640, "height": 480},
    ]
    caps = [
        {"id": 1, "image_id": 397133, "caption": "A man slicing bread in a kitchen."},
        {"id": 2, "image_id": 397133, "caption": "A cook with a knife at the counter."},
        {"id": 3, "image_id": 397134, "caption": "A woman cutting vegetables on a board."},
    ]
    inst = [
        {
            "id": 11,
            "image_id": 397133,
            "category_id": 1,
            "bbox": [64.0, 42.7, 320.0, 384.3],
            "area": 1,
            "iscrowd": 0,
        },
        {
            "id": 12,
            "image_id": 397133,
            "category_id": 49,
            "bbox": [320.0, 213.5, 64.0, 42.7],
            "area": 1,
            "iscrowd": 0,
        },
        {
            "id": 13,
            "image_id": 397134,
            "category_id": 1,
            "bbox": [10.0, 20.0, 200.0, 400.0],
            "area": 1,
            "iscrowd": 0,
        },
        {
            "id": 14,
            "image_id": 397134,
            "category_id": 49,
            "bbox": [300.0, 300.0, 50.0, 20.0],
            "area": 1,
            "iscrowd": 0,
        },
    ]
    cats = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 49, "name": "knife", "supercategory": "kitchen"},
    ]
    return [
        write(d / "captions_val2017.json", {"info": {}, "images": images, "annotations": caps}),
        write(
            d / "instances_val2017.json",
            {"info": {}, "images": images, "annotations": inst, "categories": cats},
        ),
    ]


def sd_files(d: Path) -> list[Path]:
    return [
        write(
            d / "train.json", [{"img_id": "57", "sentences": ["the white car is gone", "a man is walking"]}]
        )
    ]


def sn_files(d: Path) -> list[Path]:
    rec = {"scene_id": "scene0000_00", "object_id": "5", "object_name": "bookshelf", "ann_id": "0"}
    return [
        write(
            d / "ScanRefer_filtered_val.json",
            [
                {**rec, "description": "a tall bookshelf next to the door.", "token": []},
                {**rec, "object_id": "7", "object_name": "sofa", "description": "a red sofa facing the tv."},
            ],
        )
    ]


def dc_files(d: Path) -> list[Path]:
    return [
        write(
            d / "val_1.json",
            {
                "v_abc123": {
                    "duration": 60.5,
                    "timestamps": [[0.0, 20.25], [20.25, 58.0]],
                    "sentences": ["A man pumps up a tyre.", " He rides the bike away."],
                }
            },
        )
    ]


def tvc_files(d: Path) -> list[Path]:
    vid = "friends_s01e03_seg02_clip_19"
    return [
        write_jsonl(
            d / "tvc_val_release.jsonl",
            [
                {
                    "vid_name": vid,
                    "clip_id": 1,
                    "ts": [30.0, 40.0],
                    "duration": 61.4,
                    "descs": [{"desc": "Monica hands Phoebe a cup.", "type": "v", "desc_id": 2}],
                },
                {
                    "vid_name": vid,
                    "clip_id": 1,
                    "ts": [16.48, 33.87],
                    "duration": 61.4,
                    "descs": [{"desc": "Phoebe and Monica talk on the couch.", "type": "vt", "desc_id": 1}],
                },
            ],
        ),
        write_jsonl(
            d / "tvqa_preprocessed_subtitles.jsonl",
            [
                {
                    "vid_name": vid,
                    "sub": [{"text": "(Phoebe:) Thanks for the coffee!", "start": 31.0, "end": 33.0}],
                }
            ],
        ),
    ]


def vst_files(d: Path) -> list[Path]:
    ann = {
        "story_id": "30355",
        "album_id": "72157",
        "setting": "",
        "worker_id": "W",
        "tier": "story-in-sequence",
    }
    return [
        write(
            d / "val.story-in-sequence.json",
            {
                "images": [
                    {"id": "111", "title": "the beach", "tags": "sea sand", "text": ""},
                    {"id": "222", "title": "", "tags": ""},
                ],
                "albums": [{"id": "72157", "title": "Summer holiday", "description": "a week at the coast"}],
                "type": "story_in_sequence",
                "annotations": [
                    [
                        {
                            **ann,
                            "photo_flickr_id": "222",
                            "worker_arranged_photo_order": 1,
                            "text": "we swam until dark .",
                            "original_text": "We swam until dark.",
                            "storylet_id": "2",
                        }
                    ],
                    [
                        {
                            **ann,
                            "photo_flickr_id": "111",
                            "worker_arranged_photo_order": 0,
                            "text": "we arrived at the beach .",
                            "original_text": "We arrived at the beach.",
                            "storylet_id": "1",
                        }
                    ],
                ],
            },
        )
    ]


def e4d_files(d: Path) -> list[Path]:
    narrs = [
        {"timestamp_sec": t, "timestamp_frame": int(t * 30), "narration_text": x, "annotation_uid": "u"}
        for t, x in [
            (1.0, "#C C picks up the keys"),
            (5.0, "#C C opens the door"),
            (9.5, "#O man X waves at C"),
            (12.0, "#C C puts the keys in the bag"),
            (70.0, "#C C sits down"),
        ]
    ]
    return [
        write(
            d / "narration.json",
            {
                "vid-1": {
                    "status": "complete",
                    "narration_pass_1": {
                        "narrations": narrs,
                        "summaries": [
                            {"summary_text": "#summary C leaves the house", "start_sec": 0.0, "end_sec": 20.0}
                        ],
                    },
                }
            },
        )
    ]


# name -> (files builder, options, facts the rendered query must contain, image ids of the first annotation)
CASES = {
    "LACONV": (
        coco_files,
        {},
        ["A man slicing bread", "knife: [0.500, 0.500, 0.600, 0.600]", "person: [0.100, 0.100"],
        ["000000397133"],  # the file stem, as `import images` names it
    ),
    "LACR": (
        coco_files,
        {"image_id_pattern": "LA_IMG_{image_id:012d}"},
        ["A cook with a knife"],
        ["LA_IMG_000000397133"],
    ),
    "CGD": (
        coco_files,
        {},
        ["Image 1", "Image 2", "A woman cutting vegetables", "A man slicing bread"],
        ["000000397133", "000000397134"],
    ),
    "SD": (sd_files, {}, ["The white car is gone.", "A man is walking."], ["57", "57_2"]),
    "SN": (
        sn_files,
        {"frames": 2},
        ["bookshelf: a tall bookshelf next to the door.", "sofa: a red sofa"],
        ["SN_IMG_scene0000_00_0", "SN_IMG_scene0000_00_1"],
    ),
    "DC": (
        dc_files,
        {"frames": 3},
        ["Video length: 60.5", "0.0 - 20.2: A man pumps up a tyre.", "He rides the bike away."],
        ["DC_IMG_v_abc123_0", "DC_IMG_v_abc123_1", "DC_IMG_v_abc123_2"],
    ),
    "TVC": (
        tvc_files,
        {"frames": 1},
        ["TV show: Friends", "16.5 - 33.9: Phoebe and Monica talk", "(Phoebe:) Thanks for the coffee!"],
        ["TVC_IMG_friends_s01e03_seg02_clip_19_0"],
    ),
    "VST": (
        vst_files,
        {},
        [
            "Album: Summer holiday",
            '1. title "the beach"; tags: sea, sand. Story: We arrived at the beach.',
            "2. Story: We swam until dark.",
        ],
        ["111", "222"],
    ),
    "E4D": (
        e4d_files,
        {"min_narrations": 3, "frames": 2},
        ["Summary: C leaves the house.", "1.0: C picks up the keys.", "Man X waves at C."],
        ["E4D_IMG_vid-1_30", "E4D_IMG_vid-1_285"],
    ),
}


def test_registry_knows_every_task():
    assert {"LA", "LACONV", "LADD", "LACR", "SD", "CGD", "SN", "DC", "TVC", "VST", "E4D", "translate"} <= set(
        task_names()
    )
    with pytest.raises(SyphusError, match="unknown task 'NOPE'.*built-in tasks"):
        get_task("NOPE")
    with pytest.raises(SyphusError, match="task SD options: field 'colour'"):
        get_task("SD", colour="red")
    assert get_task("sd").name == "SD"  # case-insensitive


@pytest.mark.parametrize("name", sorted(CASES))
def test_task_reads_renders_and_parses(name, tmp_path):
    build, options, facts, image_ids = CASES[name]
    task = get_task(name, **options)
    anns = list(task.read(build(tmp_path)))
    assert anns
    ann = anns[0]
    assert ann.image_ids == image_ids
    msgs = task.messages(ann)
    roles = [m["role"] for m in msgs]
    assert roles[0] == "system" and roles[-1] == "user"
    assert roles[1:5] == ["user", "assistant", "user", "assistant"]  # >= 2 in-context turns
    for fact in facts:
        assert fact in msgs[-1]["content"], (fact, msgs[-1]["content"])
    pairs = task.parse(GOOD_REPLY, ann)
    assert [p.instruction for p in pairs] == ["What happens in the scene?", "Where does it happen?"]
    with pytest.raises(ResponseParseError, match="no question/answer pairs"):
        task.parse(GARBAGE, ann)


def test_tvc_orders_moments_and_names_bbt(tmp_path):
    from syphus.tasks.tvc import show_of

    task = get_task("TVC")
    query = task.render_query(next(iter(task.read(tvc_files(tmp_path)))))
    assert query.index("Phoebe and Monica talk") < query.index("Monica hands Phoebe a cup")
    assert show_of("s05e02_seg02_clip_00") == "The Big Bang Theory"


def test_la_emits_three_kinds_and_parses_a_description(tmp_path):
    task = get_task("LA")
    anns = list(task.read(coco_files(tmp_path)))
    assert [a.id for a in anns[:3]] == ["397133:conversation", "397133:detail", "397133:reasoning"]
    assert [a.extra["task"] for a in anns[:3]] == ["LACONV", "LADD", "LACR"]
    detail = anns[1]
    assert "Write one detailed description" in task.messages(detail)[0]["content"]
    text = (
        "The image shows a man standing at a kitchen counter as he slices a loaf of bread with a large knife. "
        "He holds the knife in his right hand near the centre of the picture."
    )
    [pair] = task.parse(text, detail)
    assert pair.answer == text and pair.instruction in task.prompts["detail"].instructions
    assert task.parse(text, detail)[0].instruction == pair.instruction  # deterministic choice
    with pytest.raises(ResponseParseError, match="fewer than 15"):
        task.parse("A man with bread.", detail)
    with pytest.raises(ResponseParseError, match="got question/answer labels"):
        task.parse(GOOD_REPLY, detail)
    only = get_task("LA", kinds=["reasoning"])
    assert [a.id for a in only.read(coco_files(tmp_path))] == ["397133", "397134"]


def test_image_id_pattern_is_configurable(tmp_path):
    task = get_task("LACONV", image_id_pattern="coco/{stem}")
    assert next(iter(task.read(coco_files(tmp_path)))).image_ids == ["coco/000000397133"]
    with pytest.raises(SyphusError, match="image_id_pattern 'x{nope}' cannot be filled.*available fields"):
        next(iter(get_task("SD", image_id_pattern="x{nope}").read(sd_files(tmp_path))))


def test_e4d_windows_and_thresholds(tmp_path):
    task = get_task("E4D", min_narrations=1, window_sec=60)
    anns = list(task.read(e4d_files(tmp_path)))
    assert [a.id for a in anns] == ["vid-1_0", "vid-1_60"]
    assert list(get_task("E4D", min_narrations=5).read(e4d_files(tmp_path))) == []


# (task, builder, how to break the file, regex the error must match: file, record, field)
BAD = [
    (
        "LACONV",
        coco_files,
        lambda fs: _edit(fs[0], lambda d: d["annotations"][1].pop("caption")),
        r"captions_val2017\.json: annotations\[1\]: field 'caption': Field required",
    ),
    (
        "LACONV",
        coco_files,
        lambda fs: _edit(fs[1], lambda d: d["annotations"][2].update(bbox=[1, 2, 3])),
        r"instances_val2017\.json: annotations\[2\]: field 'bbox'",
    ),
    (
        "LACONV",
        coco_files,
        lambda fs: _edit(fs[1], lambda d: d["annotations"][0].update(category_id=999)),
        r"instances_val2017\.json: annotations\[0\] \(id 11\): field 'category_id': 999",
    ),
    (
        "SD",
        sd_files,
        lambda fs: _edit(fs[0], lambda d: d[0].pop("sentences")),
        r"train\.json: record 0: field 'sentences'",
    ),
    (
        "SN",
        sn_files,
        lambda fs: _edit(fs[0], lambda d: d[1].update(description=" ")),
        r"ScanRefer_filtered_val\.json: record 1: field 'description': Value error, must not be empty",
    ),
    (
        "DC",
        dc_files,
        lambda fs: _edit(fs[0], lambda d: d["v_abc123"]["sentences"].pop()),
        r"val_1\.json: video 'v_abc123': .*2 timestamps but 1 sentences",
    ),
    (
        "TVC",
        tvc_files,
        lambda fs: fs[0].write_text('{"vid_name": "x", "ts": [1, 2], "descs": [{"desc": " "}]}\n'),
        r"tvc_val_release\.jsonl: line 1: field 'descs.0.desc'",
    ),
    (
        "TVC",
        tvc_files,
        lambda fs: fs[0].write_text('{"vid_name": "x", \n'),
        r"tvc_val_release\.jsonl: line 1: malformed JSON",
    ),
    (
        "VST",
        vst_files,
        lambda fs: _edit(fs[0], lambda d: d["annotations"][1][0].pop("worker_arranged_photo_order")),
        r"val\.story-in-sequence\.json: annotations\[1\]: field 'worker_arranged_photo_order'",
    ),
    (
        "E4D",
        e4d_files,
        lambda fs: _edit(
            fs[0], lambda d: d["vid-1"]["narration_pass_1"]["narrations"][3].pop("timestamp_sec")
        ),
        r"narration\.json: video 'vid-1': field 'narration_pass_1\.narrations\.3\.timestamp_sec'",
    ),
]


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("name, build, breaker, pattern", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_field_error_names_file_record_field(name, build, breaker, pattern, tmp_path):
    files = build(tmp_path)
    breaker(files)
    with pytest.raises(SyphusError, match=pattern):
        list(get_task(name).read(files))


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(SyphusError, match="annotation file not found"):
        list(get_task("SD").read([tmp_path / "absent.json"]))
    with pytest.raises(SyphusError, match=r"expected a list of \{img_id, sentences\} records"):
        list(get_task("SD").read([write(tmp_path / "x.json", {"img_id": "1"})]))
    (tmp_path / "b.json").write_text(
        '{"v_1": {"duration": 3,\n "timestamps": [[0, 1]],, "sentences": ["x"]}}'
    )
    with pytest.raises(SyphusError, match=r"b\.json: malformed JSON at line 2"):
        list(get_task("DC").read([tmp_path / "b.json"]))
    (tmp_path / "c.json").write_text("[]")
    with pytest.raises(SyphusError, match=r"c\.json: expected an object keyed by video id, found a list"):
        list(get_task("DC").read([tmp_path / "c.json"]))
    caps = coco_files(tmp_path)[1:]  # instances only
    with pytest.raises(SyphusError, match="captions_\\*.json"):
        list(get_task("LA").read(caps))


def test_cgd_pairs_similar_images_each_once(tmp_path):
    # id: (category set with box areas); the largest box is the image's main subject
    spec = {
        1: [("person", 100), ("knife", 10)],
        2: [("person", 90), ("knife", 5), ("cup", 5)],
        3: [("dog", 50)],
        4: [("dog", 60), ("couch", 40)],
        5: [("cat", 30)],
        6: [("person", 100), ("knife", 10)],
    }
    names = sorted({n for objs in spec.values() for n, _ in objs})
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 100, "height": 100} for i in spec]
    caps = [{"id": i, "image_id": i, "caption": f"Picture number {i}."} for i in spec]
    inst = [
        {"id": 100 * i + k, "image_id": i, "category_id": cat_id[n], "bbox": [0, 0, a, 1], "iscrowd": 0}
        for i, objs in spec.items()
        for k, (n, a) in enumerate(objs)
    ]
    files = [
        write(tmp_path / "captions_x.json", {"images": images, "annotations": caps}),
        write(
            tmp_path / "instances_x.json",
            {
                "images": images,
                "annotations": inst,
                "categories": [{"id": v, "name": k} for k, v in cat_id.items()],
            },
        ),
    ]
    ids = [a.id for a in get_task("CGD").read(files)]
    assert ids == ["1-6", "3-4"]  # 1 and 6 share the exact set; 2 is left alone (its best match is taken)
    assert [a.id for a in get_task("CGD", min_jaccard=0.9).read(files)] == ["1-6"]


def test_streamed_json_matches_whole_file_reading(tmp_path, monkeypatch):
    from syphus.tasks import readers

    monkeypatch.setattr(readers._JsonStream, "CHUNK", 37)  # force many refills mid-value
    videos = {
        f"v_{i}": {
            "duration": 10.0 + i,
            "timestamps": [[0, 1.25], [1.25, 9.5]],
            "sentences": [f"Event {i} a.", "Then b."],
        }
        for i in range(40)
    }
    f = write(tmp_path / "train.json", videos)
    anns = list(get_task("DC", frames=1).read([f]))
    assert [a.id for a in anns] == list(videos)
    assert anns[39].data.duration == 49.0 and anns[39].data.events[1].end == 9.5
    f.write_text(f.read_text()[:-40])
    with pytest.raises(SyphusError, match=r"train\.json: (malformed JSON|line 1: malformed JSON)"):
        list(get_task("DC").read([f]))
