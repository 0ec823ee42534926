"""Bad files given to ``syphus import images`` and ``syphus import mimicit``: each is one error
line naming the file, no traceback, and the corpus exactly as it was."""

from __future__ import annotations

import base64
import io
import json
import pickle

import pytest

from tests.curation.store.helpers import jpeg
from tests.e2e.sweep.bad import pixel_bomb, png
from tests.e2e.sweep.conftest import REAL, cases, refused

SRC = REAL / "mimicit"


def new_ids(text: str) -> str:
    """The real SD slice renamed to a task the corpus lacks, so that any row that got in shows."""
    return text.replace("SD_INS_", "XD_INS_")


def instructions_text() -> str:
    return new_ids((SRC / "SD_instructions.json").read_text())


def _ins_cases():
    good = instructions_text()
    data = json.loads(good)
    yield "truncated", good[: len(good) // 2].encode()
    yield "empty", b""
    yield "png", png()
    yield "list", json.dumps([data]).encode()
    yield "non-utf8", good.replace("blue truck", "caf\xe9", 1).encode("latin-1")
    d = json.loads(good)
    del d["data"]
    yield "no data", json.dumps(d).encode()
    d = json.loads(good)
    del d["data"]["XD_INS_00001"]["answer"]
    yield "missing answer", json.dumps(d).encode()
    yield "NaN answer", good.replace('"It is sitting at the stop sign."', "NaN").encode()
    yield (
        "number instruction",
        good.replace('"Where is the blue truck in the second image?"', "1e999").encode(),
    )
    d = json.loads(good)
    d["data"]["../XD_INS_00009"] = d["data"]["XD_INS_00001"]
    yield "dotdot id", json.dumps(d).encode()
    d = json.loads(good)
    d["data"]["XD/INS_00009"] = d["data"]["XD_INS_00001"]
    yield "slash id", json.dumps(d).encode()
    d = json.loads(good)
    d["data"]["XD_INS_00001"]["image_ids"] = ["../SD_IMG_05406_1"]
    yield "slash image id", json.dumps(d).encode()
    d = json.loads(good)
    d["data"]["XD_INS_" + "9" * 10_000_000] = d["data"]["XD_INS_00001"]
    yield "huge id", json.dumps(d).encode()
    yield "duplicate id", good.replace('"XD_INS_00002": {', '"XD_INS_00001": {', 1).encode()
    d = json.loads(good)
    d["data"]["XD_INS_00001"]["rel_ins_ids"] = ["../XD_INS_00002"]
    yield "dotdot related id", json.dumps(d).encode()


@pytest.mark.parametrize(("kind", "data"), cases(_ins_cases()))
def test_bad_instructions_file(kind, data, corpus, inputs):
    f = inputs / "XD_instructions.json"
    f.write_bytes(data)
    refused(corpus, f.name, "import", "mimicit", f, "-c", corpus, "-i", SRC / "SD.parquet")


def _train_cases():
    good = new_ids((SRC / "SD_train.json").read_text())
    yield "truncated", good[: len(good) // 2].encode()
    yield "empty", b""
    yield "png", png()
    yield "list", json.dumps(list(json.loads(good))).encode()
    yield "non-utf8", good.replace('"XD_INS_00005"', '"caf\xe9"', 1).encode("latin-1")
    yield "NaN entry", good.replace('"XD_INS_00005"', "NaN", 1).encode()
    yield "ids not a list", good.replace('[\n        "XD_INS_00004"\n    ]', '"XD_INS_00004"').encode()
    yield "dotdot id", good.replace('"XD_INS_00004"', '"../XD_INS_00004"').encode()
    yield "slash key", good.replace('"XD_INS_00005": [', '"a/b": [').encode()


@pytest.mark.parametrize(("kind", "data"), cases(_train_cases()))
def test_bad_train_file(kind, data, corpus, inputs):
    ins = inputs / "XD_instructions.json"
    ins.write_text(instructions_text())
    f = inputs / "XD_train.json"
    f.write_bytes(data)
    refused(corpus, f.name, "import", "mimicit", ins, "-c", corpus, "-i", SRC / "SD.parquet", "--train", f)


def _parquet(ids: list[str], values: list, column: str = "base64", compression: str = "snappy") -> bytes:
    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame({column: values}, index=ids).to_parquet(buf, compression=compression)
    return buf.getvalue()


def _images_parquet_cases():
    good = (SRC / "SD.parquet").read_bytes()
    ok = base64.b64encode(jpeg(5)).decode()
    yield "truncated", good[: len(good) // 2]
    yield "empty", b""
    yield "json", (SRC / "SD.json").read_bytes()
    yield "no base64 column", _parquet(["XD_IMG_1"], [ok], column="image")
    yield "not base64", _parquet(["XD_IMG_1"], ["%%% not base64 %%%"])
    yield "not an image", _parquet(["XD_IMG_1"], [base64.b64encode(b"hello").decode()])
    yield "truncated image", _parquet(["XD_IMG_1"], [base64.b64encode(jpeg(5, (300, 200))[:700]).decode()])
    yield "pixel bomb", _parquet(["XD_IMG_1"], [base64.b64encode(pixel_bomb()).decode()])
    yield "null base64", _parquet(["XD_IMG_1"], [None])
    yield "parquet bomb", _parquet(["XD_IMG_1"], ["A" * 50_000_000], compression="zstd")


@pytest.mark.parametrize(("kind", "data"), cases(_images_parquet_cases()))
def test_bad_images_parquet(kind, data, corpus, inputs):
    ins = inputs / "XD_instructions.json"
    ins.write_text(instructions_text())
    f = inputs / "XD.parquet"
    f.write_bytes(data)
    line = refused(corpus, f.name, "import", "mimicit", ins, "-c", corpus, "-i", f)
    if "bomb" in kind:  # refused from the header or metadata, before anything is inflated
        assert "decompression bomb" in line


def _images_json_cases():
    good = (SRC / "SD.json").read_text()
    images = json.loads(good)
    yield "truncated", good[: len(good) // 2].encode()
    yield "empty", b""
    yield "png", png()
    yield "list", json.dumps(list(images.values())).encode()
    yield "non-utf8", (good[:-1] + ', "caf\xe9": "AAAA"}').encode("latin-1")
    yield "NaN value", (good[:-1] + ', "XD_IMG_1": NaN}').encode()
    yield "number value", (good[:-1] + ', "XD_IMG_1": 5}').encode()
    yield "pixel bomb", json.dumps({"XD_IMG_1": base64.b64encode(pixel_bomb()).decode()}).encode()
    yield "huge string", json.dumps({"XD_IMG_1": "A" * 10_000_001}).encode()


@pytest.mark.parametrize(("kind", "data"), cases(_images_json_cases()))
def test_bad_images_json(kind, data, corpus, inputs):
    ins = inputs / "XD_instructions.json"
    ins.write_text(instructions_text())
    f = inputs / "XD.json"
    f.write_bytes(data)
    refused(corpus, f.name, "import", "mimicit", ins, "-c", corpus, "-i", f)


def _image_file_cases():
    whole = jpeg(3, (300, 200))
    yield "empty", "e.jpg", b""
    yield "text", "notes.jpg", b"just some text\n"
    yield "truncated jpeg", "t.jpg", whole[: len(whole) // 2]
    yield "truncated png", "t.png", png((300, 200))[:-40]
    yield "pixel bomb", "b.png", pixel_bomb()
    yield "pickle", "w.png", pickle.dumps({"a": 1})


@pytest.mark.parametrize(("kind", "name", "data"), cases(_image_file_cases()))
def test_bad_image_file(kind, name, data, corpus, inputs):
    folder = inputs / "photos"
    folder.mkdir()
    (folder / "fine.jpg").write_bytes(jpeg(7))
    (folder / name).write_bytes(data)
    refused(corpus, name, "import", "images", folder, "-c", corpus)
