"""CGD (COCO general difference): two similar COCO images -> pairs about what differs.

Input: COCO ``captions_*.json`` and ``instances_*.json`` (both required: similarity is judged
from the object categories). Two images are "similar" when they contain exactly the same set
of object categories; within each such group, images are paired in id order (1st with 2nd,
3rd with 4th, ...), so the pairing is deterministic and each image is used at most once.
Groups with fewer than ``min_shared`` categories are skipped.

Image ids: ``image_id_pattern`` formatted with ``image_id`` (int), ``file_name`` and ``stem``
of each image; default ``{stem}``, the name ``syphus import images`` gives the file. The annotation id is ``<id1>-<id2>``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import CocoPairRecord
from schemas.errors import SyphusError
from syphus.tasks.base import Annotation, BaseTask, ReadNote, TaskOptions
from syphus.tasks.coco import image_fields, image_record, iter_captioned, load_coco, render_image
from syphus.tasks.readers import check_paths


class CGDOptions(TaskOptions):
    max_objects: int = 20
    min_shared: int = 1  # fewest object categories an image needs to be paired
    min_jaccard: float = 0.5  # least category overlap for two images of different category sets
    search_window: int = 50  # how many later candidates a leftover image is compared with


class CGDTask(BaseTask):
    name = "CGD"
    prompt_name = "cgd"
    default_image_id_pattern = "{stem}"
    Options = CGDOptions

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        paths = check_paths(paths, self.name)
        idx = load_coco(paths)
        if not idx.has_captions or not idx.objects:
            raise SyphusError(
                f"task {self.name}: needs a COCO captions_*.json and an instances_*.json file "
                f"(got {[str(p) for p in paths]})"
            )
        yield from idx.repeated
        pairs = self._pair(idx)
        for a, b, cats in sorted(pairs):
            first = image_record(idx, a, max_objects=self.options.max_objects)
            second = image_record(idx, b, max_objects=self.options.max_objects)
            yield Annotation(
                id=f"{a}-{b}",
                image_ids=[
                    self.image_id(f"image {a}", **image_fields(first)),
                    self.image_id(f"image {b}", **image_fields(second)),
                ],
                data=CocoPairRecord(first=first, second=second, shared_categories=cats),
                source_file=idx.source[a],
            )

    def _pair(self, idx) -> list[tuple[int, int, list[str]]]:
        cats_of: dict[int, frozenset[str]] = {}
        main_of: dict[int, str] = {}
        for image_id in iter_captioned(idx):
            objs = idx.objects.get(image_id, [])
            cats = frozenset(name for _, name, _ in objs)
            if len(cats) >= self.options.min_shared:
                cats_of[image_id] = cats
                main_of[image_id] = max(objs, key=lambda o: o[0])[1]
        exact: dict[frozenset[str], list[int]] = defaultdict(list)
        for image_id in sorted(cats_of):
            exact[cats_of[image_id]].append(image_id)
        pairs: list[tuple[int, int, list[str]]] = []
        leftovers: dict[str, list[int]] = defaultdict(list)
        for cats, ids in exact.items():
            pairs += [(ids[i], ids[i + 1], sorted(cats)) for i in range(0, len(ids) - 1, 2)]
            if len(ids) % 2:
                leftovers[main_of[ids[-1]]].append(ids[-1])
        for ids in leftovers.values():
            ids.sort()
            used: set[int] = set()
            for i, a in enumerate(ids):
                if a in used:
                    continue
                best, best_score = None, self.options.min_jaccard
                for b in ids[i + 1 : i + 1 + self.options.search_window]:
                    if b in used:
                        continue
                    score = len(cats_of[a] & cats_of[b]) / len(cats_of[a] | cats_of[b])
                    if score > best_score or (best is None and score >= best_score):
                        best, best_score = b, score
                if best is not None:
                    used.update((a, best))
                    pairs.append((a, best, sorted(cats_of[a] & cats_of[best])))
        return sorted(pairs)

    def render_query(self, ann: Annotation) -> str:
        rec: CocoPairRecord = ann.data
        return f"Image 1\n{render_image(rec.first)}\n\nImage 2\n{render_image(rec.second)}"
