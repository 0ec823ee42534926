"""The contract of a generation task.

A task knows three things and nothing else: how to read its annotation files into
validated records, how to turn one record into chat messages (system message + in-context
examples + the rendered query), and how to parse a model's reply into instruction-response
pairs. Scheduling, retries, caching and storage belong to the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel


class Pair(BaseModel):
    """One generated instruction-response pair."""

    instruction: str
    answer: str


class ResponseParseError(ValueError):
    """The reply could not be parsed; the message is the reason stored in quarantine."""


@dataclass
class Annotation:
    """One unit of generation: an image, image pair, clip, album or scene."""

    id: str  # stable source annotation id (e.g. COCO image id, video id)
    image_ids: list[str]  # ordered image ids in the corpus this annotation is about
    data: BaseModel  # the validated task-specific annotation record
    source_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    name: str  # e.g. "LA"; stored in instructions.task

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        """Yield validated annotations; raise SyphusError naming file, record and field."""

    def messages(self, ann: Annotation) -> list[dict[str, str]]:
        """OpenAI-style chat messages: system, in-context user/assistant turns, the query."""

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        """Parse a reply into pairs; raise ResponseParseError with the reason."""
