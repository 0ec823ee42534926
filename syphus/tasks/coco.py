"""Reading COCO ``captions_*.json`` and ``instances_*.json`` files (LA and CGD tasks).

Both files are one JSON object with ``images`` (id, file_name, width, height, ...) and
``annotations``; a captions file's annotations carry ``caption``, an instances file's carry
``category_id`` and ``bbox`` = [x, y, width, height] in pixels, with names in ``categories``.
Files are told apart by their content, so any split (train2014, val2017, ...) works.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.annotations import (
    BoxedObject,
    CocoCaption,
    CocoCategory,
    CocoImage,
    CocoImageRecord,
    CocoInstance,
)
from schemas.errors import SyphusError
from syphus.tasks.base import Merged
from syphus.tasks.readers import RepeatedRecords, expect, load_json, validate


@dataclass
class CocoIndex:
    images: dict[int, CocoImage] = field(default_factory=dict)
    captions: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    objects: dict[int, list[tuple[float, str, list[float]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    source: dict[int, str] = field(default_factory=dict)
    has_captions: bool = False
    repeated: list[Merged] = field(default_factory=list)  # exact repeats of a caption or box record


def _kind(path: Path, data: dict) -> str:
    anns = data.get("annotations") or []
    first = anns[0] if anns and isinstance(anns[0], dict) else {}
    if "caption" in first:
        return "captions"
    if "bbox" in first or "categories" in data:
        return "instances"
    if "caption" in path.name:
        return "captions"
    raise SyphusError(
        f"{path}: not a COCO captions or instances file (annotations have neither 'caption' nor 'bbox')"
    )


def load_coco(paths: list[Path]) -> CocoIndex:
    """Index images, captions and boxes of any number of COCO caption/instance files."""
    idx = CocoIndex()
    for path in paths:
        data = expect(load_json(path), dict, str(path), "a COCO annotation object")
        for key in ("images", "annotations"):
            if key not in data:
                raise SyphusError(f"{path}: field '{key}' missing (not a COCO annotation file?)")
            expect(data[key], list, f"{path}: field '{key}'", "a list")
        kind = _kind(path, data)
        repeats = RepeatedRecords()
        for i, raw in enumerate(data["images"]):
            img = validate(CocoImage, raw, f"{path}: images[{i}]")
            idx.images.setdefault(img.id, img)
            idx.source.setdefault(img.id, str(path))
        if kind == "captions":
            idx.has_captions = True
            for i, raw in enumerate(data["annotations"]):
                cap = validate(CocoCaption, raw, f"{path}: annotations[{i}]")
                if repeats.repeated(raw):
                    idx.repeated.append(Merged("exact duplicate caption record", f"{path}: annotations[{i}]"))
                    continue
                idx.captions[cap.image_id].append(" ".join(cap.caption.split()))
        else:
            cats = {}
            for i, raw in enumerate(data.get("categories") or []):
                c = validate(CocoCategory, raw, f"{path}: categories[{i}]")
                cats[c.id] = c.name
            for i, raw in enumerate(data["annotations"]):
                inst = validate(CocoInstance, raw, f"{path}: annotations[{i}]")
                if repeats.repeated(raw):
                    idx.repeated.append(Merged("exact duplicate box record", f"{path}: annotations[{i}]"))
                    continue
                name = cats.get(inst.category_id)
                if name is None:
                    raise SyphusError(
                        f"{path}: annotations[{i}] (id {inst.id}): field 'category_id': "
                        f"{inst.category_id} is not in 'categories'"
                    )
                x, y, w, h = inst.bbox
                idx.objects[inst.image_id].append((w * h, name, inst.bbox))
    return idx


def image_record(idx: CocoIndex, image_id: int, *, max_objects: int) -> CocoImageRecord:
    """One image's captions and its largest ``max_objects`` boxes, normalised to 0..1."""
    img = idx.images[image_id]
    objs = sorted(idx.objects.get(image_id, []), key=lambda o: -o[0])[:max_objects]
    boxes = []
    for _, name, (x, y, w, h) in objs:
        if not img.width or not img.height:
            raise SyphusError(
                f"{idx.source[image_id]}: image {image_id}: field 'width'/'height' missing, needed to normalise boxes"
            )
        box = (x / img.width, y / img.height, (x + w) / img.width, (y + h) / img.height)
        boxes.append(BoxedObject(name=name, box=tuple(round(min(max(v, 0.0), 1.0), 3) for v in box)))
    return CocoImageRecord(
        image_id=image_id,
        file_name=img.file_name,
        width=img.width,
        height=img.height,
        captions=list(idx.captions.get(image_id, [])),
        objects=boxes,
    )


def iter_captioned(idx: CocoIndex) -> Iterator[int]:
    """Image ids that have at least one caption, in file order."""
    for image_id in idx.images:
        if idx.captions.get(image_id):
            yield image_id


def render_image(rec: CocoImageRecord) -> str:
    """Captions and boxes as the LLaVA-style text context an LLM reads instead of pixels."""
    lines = ["Captions:"]
    lines += [f"- {c}" for c in rec.captions]
    if rec.objects:
        lines.append("Objects (name: [x1, y1, x2, y2], coordinates from 0 to 1, origin top-left):")
        lines += [f"- {o.name}: [{', '.join(f'{v:.3f}' for v in o.box)}]" for o in rec.objects]
    return "\n".join(lines)


def image_fields(rec: CocoImageRecord) -> dict[str, object]:
    """Fields an ``image_id_pattern`` can use: ``image_id`` (int), ``file_name``, ``stem``."""
    return {"image_id": rec.image_id, "file_name": rec.file_name, "stem": Path(rec.file_name).stem}
