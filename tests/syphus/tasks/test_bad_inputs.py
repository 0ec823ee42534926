"""Bad annotation files through `syphus generate --dry-run`: one line naming the file, the record
and the field, nothing written; repeated records counted, not folded in silently."""

from __future__ import annotations

import pytest

from syphus.cli import main

# One small valid file per task, in the dataset's own format; "Marker" sits in a text field.
GOOD = {
    "DC": (
        "val_1.json",
        '{"v_1": {"duration": 10.0, "timestamps": [[0, 5]], "sentences": ["A man runs Marker."]}}',
    ),
    "SD": ("val.json", '[{"img_id": "1", "sentences": ["the car is gone Marker"]}]'),
    "TVC": (
        "tvc_val_release.jsonl",
        '{"vid_name": "friends_s01e01_seg01_clip_00", "ts": [0.0, 5.0], "duration": 10.0, '
        '"descs": [{"desc": "Ross waves Marker."}]}\n',
    ),
    "E4D": (
        "narration.json",
        '{"vid-1": {"narration_pass_1": {"narrations": ['
        '{"timestamp_sec": 1.0, "narration_text": "#C C opens the door Marker"}]}}}',
    ),
    "SN": (
        "ScanRefer_filtered_val.json",
        '[{"scene_id": "scene0000_00", "object_id": "5", "object_name": "chair", "description": "a chair Marker."}]',
    ),
    "LA": (
        "captions_val2017.json",
        '{"images": [{"id": 1, "file_name": "000000000001.jpg"}], '
        '"annotations": [{"id": 1, "image_id": 1, "caption": "A cat Marker."}]}',
    ),
}
OPTIONS = {"E4D": ["--task-option", "min_narrations=1"]}


def _generate(tmp_path, task: str, text: str | bytes, capsys) -> tuple[int, str, str]:
    name = GOOD[task][0]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    corpus = tmp_path / "c"
    with pytest.raises(SystemExit) as e:
        main(["generate", "--task", task, "--annotations", str(path), "--corpus", str(corpus), "--dry-run",
              *OPTIONS.get(task, [])])  # fmt: skip
        raise SystemExit(0)
    out = capsys.readouterr()
    assert not corpus.exists()  # a dry run writes nothing, an error neither
    return e.value.code or 0, out.out, out.err


@pytest.mark.parametrize("task", sorted(GOOD))
def test_good_file_reads(task, tmp_path, capsys):
    rc, out, _ = _generate(tmp_path, task, GOOD[task][1], capsys)
    assert rc == 0 and "requests" in out


@pytest.mark.parametrize("task", ["DC", "SD", "TVC", "E4D", "SN", "LA"])
def test_non_utf8_file_is_a_one_line_error_naming_it(task, tmp_path, capsys):
    rc, _, err = _generate(tmp_path, task, GOOD[task][1].encode().replace(b"Marker", b"caf\xe9"), capsys)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{GOOD[task][0]}" in err and "not UTF-8" in err


BAD_VALUES = [
    ("E4D", '"timestamp_sec": 1.0', '"timestamp_sec": NaN',
     r"narration.json: video 'vid-1': field 'narration_pass_1.narrations.0.timestamp_sec': .*finite"),
    ("TVC", '"ts": [0.0, 5.0]', '"ts": [NaN, 5.0]', r"tvc_val_release.jsonl: line 1: field 'ts.0': .*finite"),
    ("TVC", '"duration": 10.0', '"duration": Infinity', r"line 1: field 'duration': .*finite"),
    ("SN", '"object_id": "5"', '"object_id": NaN', r"ScanRefer_filtered_val.json: record 0: field 'object_id': .*nan"),
    ("SD", '"img_id": "1"', '"img_id": -Infinity', r"val.json: record 0: field 'img_id': .*-inf"),
    ("DC", '"duration": 10.0', '"duration": NaN', r"val_1.json: video 'v_1': field 'duration'"),
    ("LA", '"caption": "A cat Marker."', '"caption": 123', r"annotations\[0\]: field 'caption': .*valid string"),
]  # fmt: skip


@pytest.mark.parametrize(("task", "old", "new", "message"), BAD_VALUES)
def test_nan_inf_and_numbers_for_text_are_refused(task, old, new, message, tmp_path, capsys):
    import re

    text = GOOD[task][1]
    assert old in text
    rc, _, err = _generate(tmp_path, task, text.replace(old, new), capsys)
    assert rc == 1 and err.count("\n") == 1 and re.search(message, err), err


def _twice(task: str) -> str:
    """The same record twice, as the file's own format repeats one."""
    text = GOOD[task][1]
    if task in ("SD", "SN"):
        return text[:-1] + ", " + text[1:]
    if task == "TVC":
        return text * 2
    if task == "LA":
        rec = '{"id": 1, "image_id": 1, "caption": "A cat Marker."}'
        return text.replace(rec, f"{rec}, {rec}")
    return text[:-1] + ", " + text[1:]  # DC, E4D: the same key twice in one object


@pytest.mark.parametrize(
    ("task", "reason", "annotations"),
    [
        ("SD", "exact duplicate record", 1),
        ("SN", "exact duplicate record", 1),
        ("TVC", "exact duplicate line", 1),
        ("DC", "exact duplicate annotation", 1),
        ("E4D", "exact duplicate annotation", 1),
        ("LA", "exact duplicate caption record", 3),  # one image, three kinds of pairs
    ],
)
def test_repeated_records_are_counted(task, reason, annotations, tmp_path, capsys):
    rc, out, err = _generate(tmp_path, task, _twice(task), capsys)
    assert rc == 0 and f"merged 1: {reason} (first: " in err
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.splitlines()
        if line.count("│") >= 3
    }
    read, merged, anns = rows["records read"], rows["merged records"], rows["annotations"]
    assert (read, merged, anns) == (str(annotations + 1), "1", str(annotations))


def test_tvc_lines_without_descriptions_are_skipped_and_counted(tmp_path, capsys):
    """The public test release has no ``descs``: its lines are skipped with a count, the val
    lines beside them still generate, and a file of nothing else says why it gave nothing."""
    val = tmp_path / GOOD["TVC"][0]
    val.write_text(GOOD["TVC"][1])
    test = tmp_path / "tvc_test_public_release.jsonl"
    test.write_text(
        '{"vid_name": "castle_s01e01_seg01_clip_01", "duration": 60.0, "ts": [1.0, 5.0], "clip_id": 2}\n'
        '{"vid_name": "castle_s01e01_seg01_clip_02", "duration": 60.0, "ts": [2.0, 6.0], "clip_id": 3, "descs": []}\n'
    )
    corpus = tmp_path / "c"
    argv = ["generate", "--task", "TVC", "--corpus", str(corpus), "--dry-run"]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--annotations", str(val), "--annotations", str(test)])
        raise SystemExit(0)
    out = capsys.readouterr()
    assert (e.value.code or 0) == 0, out.err
    assert f"skipped 2: no descriptions (e.g. a test-release line) (first: {test}: line 1" in out.err
    rows = {
        ln.split("│")[1].strip(): ln.split("│")[2].strip()
        for ln in out.out.splitlines()
        if ln.count("│") >= 3
    }
    assert (rows["records read"], rows["skipped"], rows["annotations"]) == ("3", "2", "1")
    with pytest.raises(SystemExit) as e:
        main([*argv, "--annotations", str(test)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert e.value.code == 1 and len(err) == 1
    assert f"{test}: no annotations found for task TVC (skipped 2: no descriptions" in err[0]
    assert not corpus.exists()
