"""SD (Spot-the-Diff): a before/after pair of surveillance frames -> pairs about what changed.

Input: the Spot-the-Diff annotation files as distributed (``data/annotations/train.json``,
``val.json``, ``test.json``): a JSON list of ``{"img_id": "57", "sentences": ["...", ...]}``,
one sentence per difference a crowd worker saw.

Image ids: ``image_id_pattern`` formatted with ``img_id`` and ``n`` (1 for ``{img_id}.png``,
2 for ``{img_id}_2.png``); default ``SD_IMG_{img_id}_{n}``. The annotation id is ``img_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import SpotDiffRecord
from syphus.tasks.base import Annotation, BaseTask
from syphus.tasks.readers import check_paths, iter_json_container, validate


class SDTask(BaseTask):
    name = "SD"
    prompt_name = "sd"
    default_image_id_pattern = "SD_IMG_{img_id}_{n}"

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        for path in check_paths(paths, self.name):
            for i, raw, _ in iter_json_container(path, list, "a list of {img_id, sentences} records"):
                rec = validate(SpotDiffRecord, raw, f"{path}: record {i}")
                rec.sentences = [" ".join(s.split()) for s in rec.sentences if s.strip()]
                yield Annotation(
                    id=rec.img_id,
                    image_ids=[self.image_id(f"{path}: record {i}", img_id=rec.img_id, n=n) for n in (1, 2)],
                    data=rec,
                    source_file=str(path),
                )

    def render_query(self, ann: Annotation) -> str:
        rec: SpotDiffRecord = ann.data
        lines = ["Differences between image 1 (before) and image 2 (after):"]
        lines += [f"- {s[:1].upper()}{s[1:].rstrip('.')}." for s in rec.sentences]
        return "\n".join(lines)
