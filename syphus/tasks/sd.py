"""SD (Spot-the-Diff): a before/after pair of surveillance frames -> pairs about what changed.

Input: the Spot-the-Diff annotation files as distributed (``data/annotations/train.json``,
``val.json``, ``test.json``): a JSON list of ``{"img_id": "57", "sentences": ["...", ...]}``,
one sentence per difference a crowd worker saw. Several annotators describe one pair, so an
``img_id`` repeats: all records of one pair become ONE annotation whose sentences are every
annotator's non-empty sentences in file order (repeated sentences once); each folded record is
counted as merged. A record whose sentences are all blank (``[""]``, 6 in val.json) has
nothing to generate from: it is skipped and counted, unless another record of its pair has
sentences.

Image ids: ``image_id_pattern`` formatted with ``img_id``, ``n`` (1 for ``{img_id}.png``, 2 for
``{img_id}_2.png``) and ``stem`` (the file stem: ``{img_id}`` or ``{img_id}_2``); the default
``{stem}`` is what ``syphus import images resized_images/`` names those files. The annotation
id is ``img_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import SpotDiffRecord
from syphus.tasks.base import Annotation, BaseTask, Merged, ReadNote, Skipped
from syphus.tasks.readers import check_paths, iter_json_container, validate

BLANK = "no non-empty difference sentence"


class SDTask(BaseTask):
    name = "SD"
    prompt_name = "sd"
    default_image_id_pattern = "{stem}"

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        pairs: dict[str, tuple[SpotDiffRecord, str, str]] = {}  # img_id -> (record, file, where)
        blank: dict[str, list[str]] = {}  # img_id -> where of each blank record, until one has text
        seen: dict[str, set[tuple[str, ...]]] = {}  # img_id -> sentence lists already read
        for path in check_paths(paths, self.name):
            for i, raw, _ in iter_json_container(path, list, "a list of {img_id, sentences} records"):
                where = f"{path}: record {i}"
                rec = validate(SpotDiffRecord, raw, where)
                sentences = [" ".join(s.split()) for s in rec.sentences if s.strip()]
                if not sentences:
                    if rec.img_id in pairs:
                        yield Merged(f"{BLANK} (its pair has sentences from another record)", where)
                    else:
                        blank.setdefault(rec.img_id, []).append(where)
                    continue
                exact = tuple(sentences) in seen.setdefault(rec.img_id, set())
                seen[rec.img_id].add(tuple(sentences))
                if rec.img_id not in pairs:
                    rec.sentences = list(dict.fromkeys(sentences))
                    pairs[rec.img_id] = (rec, str(path), where)
                    for w in blank.pop(rec.img_id, []):
                        yield Merged(f"{BLANK} (its pair has sentences from another record)", w)
                    continue
                first = pairs[rec.img_id][0]
                first.sentences = list(dict.fromkeys(first.sentences + sentences))
                yield Merged(
                    "exact duplicate record"
                    if exact
                    else "repeated img_id: sentences joined into one annotation",
                    where,
                )
        for img_id, wheres in blank.items():
            for w in wheres:
                yield Skipped(BLANK, f"{w} (img_id {img_id!r})")
        for img_id, (rec, source, where) in pairs.items():
            yield Annotation(
                id=img_id,
                image_ids=[
                    self.image_id(where, img_id=img_id, n=n, stem=img_id if n == 1 else f"{img_id}_2")
                    for n in (1, 2)
                ],
                data=rec,
                source_file=source,
            )

    def render_query(self, ann: Annotation) -> str:
        rec: SpotDiffRecord = ann.data
        lines = ["Differences between image 1 (before) and image 2 (after):"]
        lines += [f"- {s[:1].upper()}{s[1:].rstrip('.')}." for s in rec.sentences]
        return "\n".join(lines)
