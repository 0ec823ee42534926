"""A small real task for engine tests and benchmarks: JSONL notes -> Q/A pairs.

Input: JSON lines ``{"id": "...", "text": "...", "image_ids": ["..."]}``. The reply format is
``Q: ...`` / ``A: ...`` lines, which is what ``syphus.testing.openai_server`` answers.
Use it from the CLI as ``--task syphus.testing.echo_task:EchoTask``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ValidationError

from schemas.errors import SyphusError, first_validation_error
from syphus.tasks.base import Annotation, Pair, ResponseParseError


class Note(BaseModel):
    id: str
    text: str
    image_ids: list[str] = []


SYSTEM = "You write question-answer pairs about an annotation. Answer as lines 'Q: ...' and 'A: ...'."


class EchoTask:
    name = "ECHO"
    lang = "en"

    def __init__(self, **options):
        self.options = options

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        for path in paths:
            path = Path(path)
            if not path.is_file():
                raise SyphusError(f"{path}: annotation file not found")
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        note = Note.model_validate_json(line)
                    except ValidationError as e:
                        raise first_validation_error(e, where=f"{path}:{lineno}") from e
                    yield Annotation(id=note.id, image_ids=note.image_ids, data=note, source_file=str(path))

    def messages(self, ann: Annotation) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "a red ball on a table"},
            {"role": "assistant", "content": "Q: What colour is the ball?\nA: Red."},
            {"role": "user", "content": ann.data.text},
        ]

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        pairs: list[Pair] = []
        question = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("Q:"):
                question = line[2:].strip()
            elif line.startswith("A:") and question:
                pairs.append(Pair(instruction=question, answer=line[2:].strip()))
                question = None
        if not pairs:
            raise ResponseParseError("no 'Q:'/'A:' pairs in the reply")
        return pairs


def write_notes(path: Path, n: int, *, prefix: str = "note") -> Path:
    """Write ``n`` distinct notes to a JSONL file (test and benchmark data)."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{prefix}-{i}", "text": f"{prefix} number {i}: a scene with {i % 7} cats",
                                "image_ids": [f"IMG_{i}"]}) + "\n")  # fmt: skip
    return path
