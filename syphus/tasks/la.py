"""LA (LLaVA-style, COCO): captions + object boxes of one image -> three kinds of pairs.

* ``conversation`` (stored as LACONV): a multi-turn conversation about the image;
* ``detail`` (LADD): one detailed description, answering a fixed "describe" instruction;
* ``reasoning`` (LACR): questions that need reasoning beyond what is visible.

``LA`` emits every kind in ``kinds`` (one request per image per kind; the annotation id is
``<coco image id>:<kind>`` and ``Annotation.extra["task"]`` names LACONV/LADD/LACR);
``LACONV``, ``LADD`` and ``LACR`` emit one kind each (annotation id = COCO image id).

Input: COCO ``captions_*.json`` (required) and ``instances_*.json`` (optional, for boxes).
Image ids: ``image_id_pattern`` formatted with ``image_id`` (int), ``file_name`` and ``stem``;
the default ``{stem}`` (``000000397133``) is what ``syphus import images val2017/`` names the
files; ``LA_IMG_{image_id:012d}`` gives MIMIC-IT's own naming (``LA_IMG_000000397133``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from prompts import PromptFile, load_prompt
from schemas.errors import SyphusError
from syphus.tasks.base import Annotation, BaseTask, Pair, ReadNote, ResponseParseError, TaskOptions
from syphus.tasks.coco import image_fields, image_record, iter_captioned, load_coco, render_image
from syphus.tasks.parsing import LABEL_RE, REFUSAL_RE, clean_text, label_role

Kind = Literal["conversation", "detail", "reasoning"]
KIND_TASK = {"conversation": "LACONV", "detail": "LADD", "reasoning": "LACR"}
KIND_PROMPT = {"conversation": "la_conversation", "detail": "la_detail", "reasoning": "la_reasoning"}


class LAOptions(TaskOptions):
    kinds: list[Kind] = ["conversation", "detail", "reasoning"]
    max_objects: int = 30  # keep the largest boxes: long lists drown small models
    min_words: int = 15  # shortest acceptable detailed description


class LATask(BaseTask):
    name = "LA"
    prompt_name = "la_conversation"
    default_image_id_pattern = "{stem}"
    Options = LAOptions
    fixed_kind: Kind | None = None

    def __init__(self, **options):
        super().__init__(**options)
        self.kinds: list[Kind] = (
            [self.fixed_kind] if self.fixed_kind else list(dict.fromkeys(self.options.kinds))
        )
        if not self.kinds:
            raise SyphusError(f"task {self.name} options: field 'kinds': choose at least one kind")
        if self.options.prompt and len(self.kinds) > 1:
            raise SyphusError(
                f"task {self.name} options: field 'prompt': one prompt file cannot serve {len(self.kinds)} kinds",
                hint="use LACONV, LADD or LACR (or kinds=[...] with one kind) with a custom prompt",
            )
        self.prompts: dict[str, PromptFile] = {
            k: (self.prompt if self.options.prompt else load_prompt(KIND_PROMPT[k])) for k in self.kinds
        }
        if "detail" in self.kinds and not self.prompts["detail"].instructions:
            raise SyphusError(
                "prompt for LADD has no 'instructions' list to pick the describe instruction from"
            )

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        from syphus.tasks.readers import check_paths

        paths = check_paths(paths, self.name)
        idx = load_coco(paths)
        if not idx.has_captions:
            raise SyphusError(
                f"task {self.name}: none of {[str(p) for p in paths]} is a COCO captions_*.json file"
            )
        yield from idx.repeated
        for image_id in iter_captioned(idx):
            rec = image_record(idx, image_id, max_objects=self.options.max_objects)
            img = self.image_id(f"image {image_id}", **image_fields(rec))
            for kind in self.kinds:
                ann_id = str(image_id) if len(self.kinds) == 1 else f"{image_id}:{kind}"
                yield Annotation(
                    id=ann_id,
                    image_ids=[img],
                    data=rec,
                    source_file=idx.source[image_id],
                    extra={"kind": kind, "task": KIND_TASK[kind]},
                )

    def render_query(self, ann: Annotation) -> str:
        return render_image(ann.data)

    def messages(self, ann: Annotation) -> list[dict[str, str]]:
        prompt = self.prompts[ann.extra.get("kind", self.kinds[0])]
        return [
            {"role": "system", "content": prompt.system},
            *prompt.turns(),
            {"role": "user", "content": self.render_query(ann)},
        ]

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        if ann.extra.get("kind") != "detail":
            return super().parse(text, ann)
        return [Pair(instruction=self.describe_instruction(ann), answer=self.parse_description(text))]

    def describe_instruction(self, ann: Annotation) -> str:
        """A fixed describe instruction, picked by a stable hash of the annotation id."""
        choices = self.prompts["detail"].instructions
        return choices[zlib.crc32(ann.id.encode()) % len(choices)]

    def parse_description(self, text: str) -> str:
        body = (text or "").strip()
        if not body:
            raise ResponseParseError("empty reply")
        if REFUSAL_RE.match(body):
            raise ResponseParseError(f"model refused: {body[:80]!r}")
        body = re.sub(
            r"^\s*(?:\*\*|__)?(?:detailed )?description(?:\*\*|__)?\s*[:：]\s*", "", body, flags=re.IGNORECASE
        )
        lines = body.splitlines()
        first = LABEL_RE.match(lines[0])
        if first and label_role(first.group("label")) == "a":
            lines[0] = first.group("rest")
        if any(LABEL_RE.match(line) for line in lines[1:]) or (
            first and label_role(first.group("label")) == "q"
        ):
            raise ResponseParseError("expected one detailed description, got question/answer labels")
        body = clean_text("\n".join(lines))
        words = len(body.split())
        if words < self.options.min_words:
            raise ResponseParseError(f"description has {words} words, fewer than {self.options.min_words}")
        return body


class LACONVTask(LATask):
    name = "LACONV"
    fixed_kind = "conversation"


class LADDTask(LATask):
    name = "LADD"
    prompt_name = "la_detail"
    fixed_kind = "detail"


class LACRTask(LATask):
    name = "LACR"
    prompt_name = "la_reasoning"
    fixed_kind = "reasoning"
