"""Write a small MIMIC-IT-format example corpus from the bundled COCO-format example data.

The pairs come straight from the hand-checked captions and boxes in examples/data/coco, so
every answer is true of its image. Output (examples/mimicit/): EXAMPLE_instructions.json,
EXAMPLE_train.json and EXAMPLE.parquet (images keyed by id, 'base64' column), the same layout
the original Otter code reads. Rerun with: python examples/make_mimicit_example.py
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
COCO = HERE / "data" / "coco"
OUT = HERE / "mimicit"
NUMBER = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def main() -> None:
    caps = json.loads((COCO / "annotations" / "captions_example.json").read_text())
    inst = json.loads((COCO / "annotations" / "instances_example.json").read_text())
    cats = {c["id"]: c["name"] for c in inst["categories"]}
    by_image_caps: dict[int, list[str]] = {}
    for a in caps["annotations"]:
        by_image_caps.setdefault(a["image_id"], []).append(a["caption"])
    by_image_objs: dict[int, Counter] = {}
    for a in inst["annotations"]:
        by_image_objs.setdefault(a["image_id"], Counter())[cats[a["category_id"]]] += 1

    data: dict[str, dict] = {}
    images: dict[str, str] = {}
    n = 0

    def add(img_id: str, q: str, a: str) -> str:
        nonlocal n
        n += 1
        ins_id = f"EXAMPLE_INS_{n:05d}"
        data[ins_id] = {"instruction": q, "answer": a, "image_ids": [img_id], "rel_ins_ids": []}
        return ins_id

    for img in sorted(caps["images"], key=lambda i: i["id"]):
        img_id = f"EXAMPLE_IMG_{img['id']:06d}"
        images[img_id] = base64.b64encode((COCO / "images" / img["file_name"]).read_bytes()).decode()
        captions = by_image_caps[img["id"]]
        ids = [add(img_id, "Describe the picture in one sentence.", captions[0])]
        objs = by_image_objs.get(img["id"], Counter())
        if img["id"] > 100:  # drawn scenes: exact counts
            total = sum(objs.values())
            ids.append(
                add(
                    img_id,
                    "How many shapes are in the picture?",
                    f"There {'is' if total == 1 else 'are'} "
                    f"{NUMBER.get(total, total)} shape{'s' if total != 1 else ''}.",
                )
            )
            ids.append(add(img_id, "Where are the shapes?", captions[1]))
        elif objs:
            name, count = objs.most_common(1)[0]
            plural = "people" if name == "person" else f"{name}s"
            ids.append(
                add(
                    img_id,
                    f"How many {plural} can you see?",
                    f"I can see {NUMBER.get(count, count)} {name if count == 1 else plural}.",
                )
            )
        for i in ids:  # pairs about the same image are each other's related pairs, as in MIMIC-IT
            data[i]["rel_ins_ids"] = [j for j in ids if j != i]

    OUT.mkdir(exist_ok=True)
    doc = {"meta": {"version": "0.1.0", "time": "2026-11-21", "author": "syphus examples"}, "data": data}
    (OUT / "EXAMPLE_instructions.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (OUT / "EXAMPLE_train.json").write_text(
        json.dumps({k: v["rel_ins_ids"] for k, v in data.items()}, indent=1) + "\n"
    )
    pd.DataFrame({"base64": list(images.values())}, index=pd.Index(list(images), name="id")).to_parquet(
        OUT / "EXAMPLE.parquet", compression="zstd"
    )
    print(f"wrote {len(data)} pairs over {len(images)} images to {OUT}")


if __name__ == "__main__":
    main()
