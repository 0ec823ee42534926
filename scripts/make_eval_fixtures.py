"""Write the benchmark fixtures under tests/data/real/<bench>/: tiny files in each benchmark's
published row schema (field names and Arrow types as the Hub parquet / VLMEvalKit TSV distribute
them), with images drawn here. The values are made up; the layout is the published one (see each
folder's SOURCE.md). Run from the repository root: python scripts/make_eval_fixtures.py
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real"

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_IMAGE = {"_type": "Image"}


def drawn(shape: str, colour: str, *, size=(48, 36), fmt="PNG", count=1) -> bytes:
    """A small picture of `count` shapes of one colour on white, encoded as distributed (PNG/JPEG)."""
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    w = size[0] // max(count, 1)
    for i in range(count):
        box = (i * w + 4, 8, i * w + w - 4, size[1] - 8)
        if shape == "circle":
            d.ellipse(box, fill=colour)
        elif shape == "triangle":
            d.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
        else:
            d.rectangle(box, fill=colour)
    buf = io.BytesIO()
    img.save(buf, fmt, quality=85) if fmt == "JPEG" else img.save(buf, fmt)
    return buf.getvalue()


def photo(name: str, side: int = 64) -> bytes:
    """A real photograph from scikit-image's bundled data, downscaled, as JPEG."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def img(data: bytes, path: str | None = None) -> dict:
    return {"bytes": data, "path": path}


def write(folder: str, relpath: str, schema: pa.Schema, features: dict, rows: list[dict]) -> None:
    """One Hub-style shard, with the `huggingface` schema metadata `datasets` writes."""
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    table = pa.Table.from_pylist(rows, schema=schema.with_metadata(meta))
    out = ROOT / folder / relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)


def v(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def mme() -> None:
    schema = pa.schema(
        [
            ("question_id", pa.string()),
            ("image", IMAGE),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("category", pa.string()),
        ]
    )
    features = {
        "question_id": v("string"),
        "image": HF_IMAGE,
        "question": v("string"),
        "answer": v("string"),
        "category": v("string"),
    }
    rows = []
    images = [
        (
            "existence/000000000001.jpg",
            "existence",
            drawn("circle", "red"),
            "Is there a red circle in this image?",
            "Is there a blue square in this image?",
        ),
        (
            "existence/000000000002.jpg",
            "existence",
            drawn("square", "blue"),
            "Is there a blue square in this image?",
            "Is there a green triangle in this image?",
        ),
        (
            "count/000000000003.jpg",
            "count",
            drawn("circle", "green", count=3, size=(72, 36)),
            "Are there three green circles in this image?",
            "Are there two green circles in this image?",
        ),
        (
            "code_reasoning/0001.png",
            "code_reasoning",
            drawn("square", "black"),
            "Does the code in the image print 4?",
            "Does the code in the image print 5?",
        ),
    ]
    for qid, cat, data, yes_q, no_q in images:
        rows.append(
            {
                "question_id": qid,
                "image": img(data),
                "question": f"{yes_q} Please answer yes or no.",
                "answer": "Yes",
                "category": cat,
            }
        )
        rows.append(
            {
                "question_id": qid,
                "image": img(data),
                "question": f"{no_q} Please answer yes or no.",
                "answer": "No",
                "category": cat,
            }
        )
    write("mme", "data/test-00000-of-00001.parquet", schema, features, rows)


def pope() -> None:
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("question_id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("image_source", pa.string()),
            ("image", IMAGE),
            ("category", pa.string()),
        ]
    )
    features = {
        k: v("string") for k in ("id", "question_id", "question", "answer", "image_source", "category")
    }
    features["image"] = HF_IMAGE
    cat_img, dog_img = photo("chelsea"), photo("astronaut")
    rows = []
    n = 0
    for cat in ("adversarial", "popular", "random"):
        for qid, (obj, ans, data, src) in enumerate(
            [
                ("cat", "yes", cat_img, "COCO_val2014_000000000042"),
                ("dog", "no", dog_img, "COCO_val2014_000000000073"),
            ],
            1,
        ):
            rows.append(
                {
                    "id": str(n),
                    "question_id": str(qid),
                    "question": f"Is there a {obj} in the image?",
                    "answer": ans,
                    "image_source": src,
                    "image": img(data),
                    "category": cat,
                }
            )
            n += 1
    write("pope", "data/test-00000-of-00001.parquet", schema, features, rows)


def scienceqa() -> None:
    names = [
        "image",
        "question",
        "choices",
        "answer",
        "hint",
        "task",
        "grade",
        "subject",
        "topic",
        "category",
        "skill",
        "lecture",
        "solution",
    ]
    types = {"image": IMAGE, "choices": pa.list_(pa.string()), "answer": pa.int8()}
    schema = pa.schema([(n, types.get(n, pa.string())) for n in names])
    features = {n: v("string") for n in names}
    features.update(
        {"image": HF_IMAGE, "choices": {"feature": v("string"), "_type": "Sequence"}, "answer": v("int8")}
    )
    base = {
        "task": "closed choice",
        "grade": "grade4",
        "topic": "physics",
        "category": "Colors",
        "skill": "Identify colors",
        "lecture": "",
        "solution": "",
    }
    test = [
        {
            "image": img(drawn("circle", "red")),
            "question": "Which color is the shape?",
            "choices": ["blue", "red"],
            "answer": 1,
            "hint": "",
            "subject": "natural science",
            **base,
        },
        {
            "image": img(drawn("square", "blue")),
            "question": "Which shape is shown?",
            "choices": ["circle", "square", "triangle"],
            "answer": 1,
            "hint": "The figure shows one shape.",
            "subject": "natural science",
            **base,
        },
        {
            "image": img(drawn("triangle", "green")),
            "question": "Which word names the shape?",
            "choices": ["triangle", "circle", "square", "oval"],
            "answer": 0,
            "hint": "",
            "subject": "language science",
            **base,
        },
        {
            "image": img(photo("coffee")),
            "question": "What is in the cup?",
            "choices": ["tea", "coffee"],
            "answer": 1,
            "hint": "",
            "subject": "social science",
            **base,
        },
    ]
    write("scienceqa_img", "ScienceQA-IMG/test-00000-of-00001.parquet", schema, features, test)
    write("scienceqa_img", "ScienceQA-IMG/validation-00000-of-00001.parquet", schema, features, test[:1])


def seedbench() -> None:
    names = [
        "answer",
        "choice_a",
        "choice_b",
        "choice_c",
        "choice_d",
        "data_id",
        "data_type",
        "question",
        "question_id",
        "question_type_id",
        "image",
    ]
    types = {"question_type_id": pa.int64(), "image": pa.list_(IMAGE)}
    schema = pa.schema([(n, types.get(n, pa.string())) for n in names])
    features = {n: v("string") for n in names}
    features.update({"question_type_id": v("int64"), "image": {"feature": HF_IMAGE, "_type": "Sequence"}})
    rows = [
        {
            "answer": "B",
            "choice_a": "A kitchen",
            "choice_b": "An empty white room",
            "choice_c": "A forest",
            "choice_d": "A beach",
            "data_id": "1454426_2591111986",
            "data_type": "image",
            "question": "Where could this picture have been taken?",
            "question_id": "101669",
            "question_type_id": 1,
            "image": [img(drawn("circle", "red"))],
        },
        {
            "answer": "C",
            "choice_a": "One",
            "choice_b": "Two",
            "choice_c": "Three",
            "choice_d": "Four",
            "data_id": "4184637_1893474401",
            "data_type": "image",
            "question": "How many circles are there?",
            "question_id": "101670",
            "question_type_id": 5,
            "image": [img(drawn("circle", "green", count=3, size=(72, 36)))],
        },
        {
            "answer": "A",
            "choice_a": "A cat",
            "choice_b": "A dog",
            "choice_c": "A bird",
            "choice_d": "A fish",
            "data_id": "chelsea",
            "data_type": "image",
            "question": "What animal is shown?",
            "question_id": "101671",
            "question_type_id": 2,
            "image": [img(photo("chelsea"))],
        },
        {
            "answer": "D",
            "choice_a": "Stirring",
            "choice_b": "Cutting",
            "choice_c": "Pouring",
            "choice_d": "Moving right",
            "data_id": "v_clip_0001.mp4",
            "data_type": "video",
            "question": "What does the square do?",
            "question_id": "v1",
            "question_type_id": 10,
            "image": [
                img(drawn("square", "blue", size=(48, 36))),
                img(drawn("square", "blue", size=(48, 36), count=1)),
            ],
        },
    ]
    write("seedbench", "data/test-00000-of-00001.parquet", schema, features, rows)


MMBENCH_NAMES = [
    "index",
    "question",
    "hint",
    "answer",
    "A",
    "B",
    "C",
    "D",
    "category",
    "image",
    "source",
    "L2-category",
    "comment",
    "split",
]


def mmbench_rows() -> list[dict]:
    """Two questions, each once per rotation of its options, indexed i + k*1e6 as distributed."""
    red = drawn("circle", "red")
    blue = drawn("square", "blue")
    q0 = ["red", "blue", "green", "yellow"]
    rows = []
    for k in range(4):  # question 0: 4 options, so 4 rotations
        opts = q0[k:] + q0[:k]
        rows.append(
            {
                "index": k * 1_000_000,
                "question": "What color is the circle?",
                "hint": None,
                "answer": "ABCD"[opts.index("red")],
                "A": opts[0],
                "B": opts[1],
                "C": opts[2],
                "D": opts[3],
                "category": "attribute_recognition",
                "image": red,
                "source": "synthetic",
                "L2-category": "finegrained_perception (instance-level)",
                "comment": None,
                "split": "dev",
            }
        )
    for k, opts in enumerate((["circle", "square"], ["square", "circle"])):  # question 1: 2 options
        rows.append(
            {
                "index": 1 + k * 1_000_000,
                "question": "Which shape is shown?",
                "hint": "The picture shows one shape.",
                "answer": "ABCD"[opts.index("square")],
                "A": opts[0],
                "B": opts[1],
                "C": None,
                "D": None,
                "category": "image_topic",
                "image": blue,
                "source": "synthetic",
                "L2-category": "coarse_perception",
                "comment": None,
                "split": "dev",
            }
        )
    return rows


def mmbench() -> None:
    types = {"index": pa.int64(), "image": IMAGE}
    schema = pa.schema([(n, types.get(n, pa.string())) for n in MMBENCH_NAMES])
    features = {n: v("string") for n in MMBENCH_NAMES}
    features.update({"index": v("int64"), "image": HF_IMAGE})
    rows = [{**r, "image": img(r["image"])} for r in mmbench_rows()]
    write("mmbench", "en/dev-00000-of-00001.parquet", schema, features, rows)
    # Another language's config beside it, as in lmms-lab/MMBench: the reader must pick `en`.
    write(
        "mmbench",
        "cn/dev-00000-of-00001.parquet",
        schema,
        features,
        [{**rows[0], "question": "圆是什么颜色?"}],
    )


def magnifierbench() -> None:
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("instruction", pa.string()),
            ("images", pa.list_(IMAGE)),
            ("answer", pa.string()),
        ]
    )
    features = {
        "id": v("string"),
        "instruction": v("string"),
        "images": {"feature": HF_IMAGE, "_type": "Sequence"},
        "answer": v("string"),
    }
    rows = [
        {
            "id": "magnifier_0",
            "instruction": "What color is the small dot? A. red, B. blue, C. green, D. black",
            "images": [img(drawn("circle", "red", size=(96, 72)))],
            "answer": "A",
        },
        {
            "id": "magnifier_1",
            "instruction": "What shape is in the corner? A. circle, B. triangle, C. square, D. star",
            "images": [img(drawn("square", "blue", size=(96, 72)))],
            "answer": "C",
        },
        {
            "id": "magnifier_2",
            "instruction": "How many circles are there? A. one, B. two, C. three, D. four",
            "images": [img(drawn("circle", "green", count=3, size=(96, 36)))],
            "answer": "C",
        },
    ]
    write("magnifierbench", "data/test-00000-of-00001.parquet", schema, features, rows)


def mathvista() -> None:
    md = pa.struct(
        [
            ("category", pa.string()),
            ("context", pa.string()),
            ("grade", pa.string()),
            ("img_height", pa.int64()),
            ("img_width", pa.int64()),
            ("language", pa.string()),
            ("skills", pa.list_(pa.string())),
            ("source", pa.string()),
            ("split", pa.string()),
            ("task", pa.string()),
        ]
    )
    schema = pa.schema(
        [
            ("pid", pa.string()),
            ("question", pa.string()),
            ("image", pa.string()),
            ("decoded_image", IMAGE),
            ("choices", pa.list_(pa.string())),
            ("unit", pa.string()),
            ("precision", pa.float64()),
            ("answer", pa.string()),
            ("question_type", pa.string()),
            ("answer_type", pa.string()),
            ("metadata", md),
            ("query", pa.string()),
        ]
    )
    features = {
        "pid": v("string"),
        "question": v("string"),
        "image": v("string"),
        "decoded_image": HF_IMAGE,
        "choices": {"feature": v("string"), "_type": "Sequence"},
        "unit": v("string"),
        "precision": v("float64"),
        "answer": v("string"),
        "question_type": v("string"),
        "answer_type": v("string"),
        "metadata": {
            k: v("string") for k in ("category", "context", "grade", "language", "source", "split", "task")
        },
        "query": v("string"),
    }

    def meta(task, skills, context):
        return {
            "category": "math-targeted-vqa",
            "context": context,
            "grade": "elementary school",
            "img_height": 36,
            "img_width": 48,
            "language": "english",
            "skills": skills,
            "source": "synthetic",
            "split": "testmini",
            "task": task,
        }

    hint_int = "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.\n"
    hint_float = (
        "Hint: Please answer the question requiring a floating-point number with two decimal places and provide the "
        "final value, e.g., 1.23, 1.34, 1.45, at the end.\n"
    )
    hint_mc = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
    hint_list = (
        "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
        "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n"
    )
    rows = [
        {
            "pid": "1",
            "question": "What color is the circle?",
            "image": "images/1.jpg",
            "decoded_image": img(drawn("circle", "red"), "1.jpg"),
            "choices": ["blue", "red", "green", "yellow"],
            "unit": None,
            "precision": None,
            "answer": "red",
            "question_type": "multi_choice",
            "answer_type": "text",
            "metadata": meta("figure question answering", ["scientific reasoning"], "synthetic scene"),
            "query": hint_mc
            + "Question: What color is the circle?\nChoices:\n(A) blue\n(B) red\n(C) green\n(D) yellow",
        },
        {
            "pid": "2",
            "question": "How many circles are there?",
            "image": "images/2.jpg",
            "decoded_image": img(drawn("circle", "green", count=3, size=(72, 36)), "2.jpg"),
            "choices": None,
            "unit": None,
            "precision": None,
            "answer": "3",
            "question_type": "free_form",
            "answer_type": "integer",
            "metadata": meta("visual question answering", ["arithmetic reasoning"], "synthetic scene"),
            "query": hint_int + "Question: How many circles are there?",
        },
        {
            "pid": "3",
            "question": "What fraction of the shapes are circles?",
            "image": "images/3.jpg",
            "decoded_image": img(drawn("circle", "blue", count=3, size=(72, 36)), "3.jpg"),
            "choices": None,
            "unit": None,
            "precision": 2.0,
            "answer": "0.67",
            "question_type": "free_form",
            "answer_type": "float",
            "metadata": meta(
                "math word problem", ["arithmetic reasoning", "statistical reasoning"], "synthetic scene"
            ),
            "query": hint_float + "Question: What fraction of the shapes are circles?",
        },
        {
            "pid": "4",
            "question": "Where does the line cross the axes?",
            "image": "images/4.jpg",
            "decoded_image": img(drawn("square", "black"), "4.jpg"),
            "choices": None,
            "unit": None,
            "precision": None,
            "answer": "[0, 2]",
            "question_type": "free_form",
            "answer_type": "list",
            "metadata": meta("textbook question answering", ["algebraic reasoning"], "function plot"),
            "query": hint_list + "Question: Where does the line cross the axes?",
        },
    ]
    write("mathvista", "data/testmini-00000-of-00001-6f8b2c1a.parquet", schema, features, rows)


def mmvet() -> None:
    schema = pa.schema(
        [
            ("question_id", pa.string()),
            ("image", IMAGE),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("image_source", pa.string()),
            ("capability", pa.string()),
        ]
    )
    features = {k: v("string") for k in ("question_id", "question", "answer", "image_source", "capability")}
    features["image"] = HF_IMAGE
    rows = [
        {
            "question_id": "v1_0",
            "image": img(photo("coffee")),
            "question": "What is in the cup?",
            "answer": "coffee",
            "image_source": "skimage",
            "capability": "rec",
        },
        {
            "question_id": "v1_1",
            "image": img(drawn("circle", "green", count=3, size=(72, 36))),
            "question": "How many circles are there, and what color are they?",
            "answer": "3<AND>green",
            "image_source": "drawn",
            "capability": "rec,math",
        },
        {
            "question_id": "v1_2",
            "image": img(photo("rocket")),
            "question": "What is this vehicle used for?",
            "answer": "space travel<OR>launching satellites",
            "image_source": "skimage",
            "capability": "rec,know,gen",
        },
    ]
    write("mmvet", "data/test-00000-of-00001.parquet", schema, features, rows)


def vlmevalkit() -> None:
    """VLMEvalKit TSVs: MMBench_DEV_EN (options in A-D columns, rotations by index) and MME (a second
    question's image cell holds the index of the row whose image it shares)."""
    out = ROOT / "vlmevalkit"
    out.mkdir(parents=True, exist_ok=True)
    cols = [
        "index",
        "question",
        "hint",
        "A",
        "B",
        "C",
        "D",
        "answer",
        "category",
        "image",
        "source",
        "l2-category",
        "comment",
        "split",
    ]
    with open(out / "MMBench_DEV_EN.tsv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(cols)
        for r in mmbench_rows():
            r = {**r, "image": base64.b64encode(r["image"]).decode(), "l2-category": r["L2-category"]}
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    with open(out / "MME.tsv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "image", "question", "answer", "category", "image_path"])
        red = base64.b64encode(drawn("circle", "red")).decode()
        w.writerow(
            [
                0,
                red,
                "Is there a red circle in this image? Please answer yes or no.",
                "Yes",
                "existence",
                "existence/1.jpg",
            ]
        )
        w.writerow(
            [
                1,
                "0",
                "Is there a blue square in this image? Please answer yes or no.",
                "No",
                "existence",
                "existence/1.jpg",
            ]
        )


if __name__ == "__main__":
    for make in (mme, pope, scienceqa, seedbench, mmbench, magnifierbench, mathvista, mmvet, vlmevalkit):
        make()
    print(f"fixtures written under {ROOT}")
