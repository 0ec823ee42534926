"""Bad annotation files given to ``syphus generate`` for every built-in reader, the translate
task and a custom YAML task: one error line naming the file, nothing sent, the corpus as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.sweep.bad import png
from tests.e2e.sweep.conftest import REAL, cases, copy_real, refused

# task -> (real format folder, file, extra files passed alongside (same folder))
READERS = {
    "LA": ("coco", "captions_val2017.json", ()),
    "LA-instances": ("coco", "instances_val2017.json", ("captions_val2017.json",)),
    "CGD": ("coco", "instances_val2017.json", ("captions_val2017.json",)),
    "DC": ("activitynet_captions", "val_1.json", ()),
    "SD": ("spot_the_diff", "val.json", ()),
    "TVC": ("tvc", "tvc_val_release.jsonl", ("tvqa_preprocessed_subtitles.jsonl",)),
    "TVC-subtitles": ("tvc", "tvqa_preprocessed_subtitles.jsonl", ("tvc_val_release.jsonl",)),
    "E4D": ("ego4d", "narration.json", ()),
    "SN": ("scanrefer", "ScanRefer_filtered_val.json", ()),
    "VST": ("vist", "val.story-in-sequence.json", ()),
    "translate": ("mimicit", "SD_instructions.json", ()),
}
# generate reaches no LLM here: a closed local port, one attempt
OFFLINE = ["--api-base", "http://127.0.0.1:9/v1", "--model", "m", "--max-attempts", "1", "--no-progress"]
# documented warnings generate may print before it reads every file (docs/generate.md)
WARNINGS = ("warning:", "skipped ", "merged ")


def non_utf8(text: str) -> bytes:
    """The file with one Latin-1 byte inside the first string after its middle."""
    raw = text.encode()
    i = raw.index(b'"', len(raw) // 2) + 1
    return raw[:i] + b"caf\xe9 " + raw[i:]


def _generic(text: str, jsonl: bool):
    yield "truncated", text.encode()[: len(text.encode()) // 2 - 1]
    yield "empty", b""
    yield "png", png()
    yield "non-utf8", non_utf8(text)
    yield "huge line", b"A" * 10_000_000
    if jsonl:
        yield "list line", b"[1, 2, 3]\n" + text.encode()
        yield "NaN line", b"NaN\n" + text.encode()
    else:
        doc = json.loads(text)
        yield "wrong type", json.dumps([doc] if isinstance(doc, dict) else {"records": doc}).encode()


def _specific(task: str, doc):
    """(kind, new document): a field missing, NaN or infinity where a value belongs."""
    if task == "LA":
        d = json.loads(json.dumps(doc))
        del d["annotations"][0]["caption"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d["annotations"][0]["image_id"] = float("nan")
        yield "NaN id", d
    elif task in ("LA-instances", "CGD"):
        d = json.loads(json.dumps(doc))
        del d["annotations"][0]["bbox"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d["annotations"][0]["bbox"][0] = float("nan")
        yield "NaN box", d
    elif task == "DC":
        k = next(iter(doc))
        d = json.loads(json.dumps(doc))
        del d[k]["sentences"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d[k]["timestamps"][0][0] = float("inf")
        yield "inf timestamp", d
    elif task == "SD":
        d = json.loads(json.dumps(doc))
        del d[0]["img_id"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d[0]["img_id"] = float("nan")
        yield "NaN id", d
    elif task == "E4D":
        k = next(iter(doc))
        d = json.loads(json.dumps(doc))
        del d[k]["narration_pass_1"]["narrations"][0]["narration_text"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d[k]["narration_pass_1"]["narrations"][0]["timestamp_sec"] = float("nan")
        yield "NaN timestamp", d
    elif task == "SN":
        d = json.loads(json.dumps(doc))
        del d[0]["description"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d[0]["object_id"] = float("-inf")
        yield "inf id", d
    elif task == "VST":
        d = json.loads(json.dumps(doc))
        del d["annotations"][0][0]["text"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d["annotations"][0][0]["worker_arranged_photo_order"] = float("nan")
        yield "NaN order", d
    elif task == "translate":
        d = json.loads(json.dumps(doc))
        del d["data"]["SD_INS_00001"]["answer"]
        yield "missing field", d
        d = json.loads(json.dumps(doc))
        d["data"]["SD_INS_00001"]["answer"] = float("nan")
        yield "NaN answer", d
        d = json.loads(json.dumps(doc))
        d["data"]["../SD_INS_00009"] = d["data"]["SD_INS_00001"]
        yield "dotdot id", d
        d = json.loads(json.dumps(doc))
        d["data"]["a/SD_INS_00009"] = d["data"]["SD_INS_00001"]
        yield "slash id", d


def _jsonl_specific(task: str, text: str):
    first = json.loads(text.splitlines()[0])
    rest = "\n".join(text.splitlines()[1:]) + "\n"
    if task == "TVC":
        d = dict(first)
        del d["vid_name"]
        yield "missing field", d, rest
        d = dict(first, ts=[float("nan"), 5.0])
        yield "NaN ts", d, rest
        d = dict(first, duration=float("inf"))
        yield "inf duration", d, rest
    else:  # subtitles
        d = dict(first, sub=[{"text": "hi", "start": float("nan"), "end": 1.0}])
        yield "NaN start", d, rest
        d = dict(first, sub=[{"text": "hi"}])
        yield "missing field", d, rest


def _reader_cases():
    for task, (fmt, name, _) in READERS.items():
        text = (REAL / fmt / name).read_text(encoding="utf-8")
        jsonl = name.endswith(".jsonl")
        for kind, data in _generic(text, jsonl):
            yield f"{task}: {kind}", task, data
        if jsonl:
            for kind, d, rest in _jsonl_specific(task, text):
                yield f"{task}: {kind}", task, (json.dumps(d) + "\n" + rest).encode()
        else:
            for kind, d in _specific(task, json.loads(text)):
                yield f"{task}: {kind}", task, json.dumps(d).encode()


def _generate(corpus: Path, task: str, files: list[Path], *extra):
    argv = [
        "generate",
        "--task",
        task.split("-")[0] if task in READERS else task,
        "--corpus",
        corpus,
        *OFFLINE,
        *extra,
    ]
    for f in files:
        argv += ["--annotations", f]
    return argv


@pytest.mark.parametrize(("case", "task", "data"), cases(_reader_cases()))
def test_bad_annotation_file(case, task, data, corpus, inputs):
    fmt, name, others = READERS[task]
    bad = inputs / name
    bad.write_bytes(data)
    files = [bad] + [copy_real(fmt, o, inputs) for o in others]
    extra = ["--task-option", "lang=zh"] if task == "translate" else []
    if task == "E4D":
        extra = ["--task-option", "min_narrations=1"]
    refused(corpus, name, *_generate(corpus, task, files, *extra), warnings=WARNINGS)


CUSTOM_TASK = """\
name: RECIPE
prompt: {prompt}
format: jsonl
id_field: recipe_id
fields:
  recipe_id: str
  title: str
  steps: list
  servings: int?
image_ids: "{{% for p in photos %}}RCP_IMG_{{{{ p }}}} {{% endfor %}}"
query: |
  Recipe: {{{{ title }}}}
parse: pairs
"""
RECIPES = (
    '{"recipe_id": "r1", "title": "Soup", "steps": ["boil"], "photos": [1]}\n'
    '{"recipe_id": "r2", "title": "Tea", "steps": ["steep"], "servings": 2, "photos": [2]}\n'
)


def _custom(root: Path, yaml_text: str | bytes | None = None, records: str | bytes = RECIPES):
    from prompts import prompt_path

    task = root / "recipe.yaml"
    text = yaml_text if yaml_text is not None else CUSTOM_TASK.format(prompt=prompt_path("sd"))
    task.write_bytes(text if isinstance(text, bytes) else text.encode())
    data = root / "recipes.jsonl"
    data.write_bytes(records if isinstance(records, bytes) else records.encode())
    return task, data


def test_the_custom_task_fixture_is_valid(corpus, inputs):
    from tests.curation.store.helpers import run_syphus

    task, data = _custom(inputs)
    rc, out, err = run_syphus(
        "generate", "--task", task, "--annotations", data, "--corpus", inputs / "c", "--dry-run"
    )
    assert rc == 0 and "requests" in out, err


def _custom_task_cases():
    from prompts import prompt_path

    good = CUSTOM_TASK.format(prompt=prompt_path("sd"))
    yield "truncated", good[: len(good) // 3].encode()
    yield "empty", b""
    yield "png", png()
    yield "non-utf8", good.replace("Recipe", "R\xe9cipe").encode("latin-1")
    yield "list", b"- name: RECIPE\n"
    yield "missing field", good.replace("query: |\n  Recipe: {{ title }}\n", "").encode()
    yield "unknown type", good.replace("steps: list", "steps: tuple").encode()
    yield (
        "python tag",
        good.replace("name: RECIPE", "name: !!python/object/apply:os.system ['true']").encode(),
    )
    yield "slash name", good.replace("name: RECIPE", "name: ../RECIPE").encode()
    yield "huge yaml", b"name: " + b"A" * 10_000_000 + b"\n"


@pytest.mark.parametrize(("kind", "data"), cases(_custom_task_cases()))
def test_bad_custom_task_file(kind, data, corpus, inputs):
    task, records = _custom(inputs, data)
    refused(corpus, task.name, *_generate(corpus, str(task), [records]), warnings=WARNINGS)


def _custom_record_cases():
    yield "truncated", RECIPES[:40].encode()
    yield "empty", b""
    yield "png", png()
    yield "non-utf8", RECIPES.replace("Soup", "Soupe \xe9").encode("latin-1")
    yield "missing field", RECIPES.replace('"title": "Soup", ', "").encode()
    yield "wrong type", RECIPES.replace('"steps": ["boil"]', '"steps": "boil"').encode()
    yield "NaN", RECIPES.replace('"servings": 2', '"servings": NaN').encode()
    yield "huge line", b"A" * 10_000_000 + b"\n"


@pytest.mark.parametrize(("kind", "data"), cases(_custom_record_cases()))
def test_bad_custom_task_records(kind, data, corpus, inputs):
    task, records = _custom(inputs, records=data)
    refused(corpus, records.name, *_generate(corpus, str(task), [records]), warnings=WARNINGS)


@pytest.mark.parametrize("command", ["reparse", "preview"])
@pytest.mark.parametrize(
    ("kind", "data"),
    cases([("truncated", b'[{"img_id": "1", "sent'), ("non-utf8", b'[{"img_id": "caf\xe9"}]')]),
)
def test_other_commands_that_read_annotations(command, kind, data, corpus, inputs):
    bad = inputs / "val.json"
    bad.write_bytes(data)
    argv = [command, "--task", "SD", "--annotations", bad]
    if command == "reparse":
        argv += ["--corpus", corpus]
    else:
        argv += ["--api-base", "http://127.0.0.1:9/v1", "--model", "m"]
    refused(corpus, bad.name, *argv, warnings=WARNINGS)
