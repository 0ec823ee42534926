"""SN (scene navigation): an indoor ScanNet scene described through its objects ->
multi-round conversations about activities in that room.

Input: ScanRefer files as distributed (``ScanRefer_filtered_train.json``, ``..._val.json``):
a JSON list of ``{"scene_id", "object_id", "object_name", "ann_id", "description", ...}``,
one free-form description of one object per record. Records are grouped by ``scene_id``; each
object keeps its first ``max_descriptions`` distinct descriptions; a scene keeps its first
``max_objects`` objects (by object id).

Image ids: the scene is fed as ``frames`` frames of its scan video: ``image_id_pattern``
formatted with ``scene_id`` and ``frame`` (0 .. frames-1); default ``SN_IMG_{scene_id}_{frame}``.
Extract that many evenly spaced frames per scene into the corpus under those ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import ScanReferRecord, SceneObject, SceneRecord
from syphus.tasks.base import Annotation, BaseTask, Merged, ReadNote, TaskOptions
from syphus.tasks.readers import RepeatedRecords, check_paths, iter_json_container, validate


class SNOptions(TaskOptions):
    frames: int = 8
    max_objects: int = 25
    max_descriptions: int = 2


def _object_order(object_id: str) -> tuple[int, str]:
    return (int(object_id), "") if object_id.isdigit() else (1 << 30, object_id)


class SNTask(BaseTask):
    name = "SN"
    prompt_name = "sn"
    default_image_id_pattern = "SN_IMG_{scene_id}_{frame}"
    Options = SNOptions

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        repeats = RepeatedRecords()
        for path in check_paths(paths, self.name):
            scenes: dict[str, dict[str, SceneObject]] = {}
            for i, raw, _ in iter_json_container(path, list, "a list of ScanRefer records"):
                rec = validate(ScanReferRecord, raw, f"{path}: record {i}")
                if repeats.repeated(raw):
                    yield Merged("exact duplicate record", f"{path}: record {i}")
                    continue
                objects = scenes.setdefault(rec.scene_id, {})
                obj = objects.setdefault(
                    rec.object_id, SceneObject(object_id=rec.object_id, name=rec.object_name, descriptions=[])
                )
                text = " ".join(rec.description.split())
                if text not in obj.descriptions and len(obj.descriptions) < self.options.max_descriptions:
                    obj.descriptions.append(text)
            for scene_id, objects in scenes.items():
                ordered = sorted(objects.values(), key=lambda o: _object_order(o.object_id))
                yield Annotation(
                    id=scene_id,
                    image_ids=[
                        self.image_id(f"scene {scene_id}", scene_id=scene_id, frame=f)
                        for f in range(self.options.frames)
                    ],
                    data=SceneRecord(scene_id=scene_id, objects=ordered[: self.options.max_objects]),
                    source_file=str(path),
                )

    def render_query(self, ann: Annotation) -> str:
        rec: SceneRecord = ann.data
        lines = ["Objects in the room, each with what people said about it:"]
        for o in rec.objects:
            lines.append(f"- {o.name}: " + " / ".join(d.rstrip(" .") + "." for d in o.descriptions))
        return "\n".join(lines)
