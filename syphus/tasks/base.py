"""The contract of a generation task.

A task knows three things and nothing else: how to read its annotation files into
validated records, how to turn one record into chat messages (system message + in-context
examples + the rendered query), and how to parse a model's reply into instruction-response
pairs. Scheduling, retries, caching and storage belong to the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


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


@dataclass
class ReadNote:
    """A record a reader did not turn into an annotation of its own, and why: counted in the
    generate summary, never dropped in silence."""

    reason: str  # short and stable: the summary counts records by it
    where: str  # file and record of this one, shown as an example


class Skipped(ReadNote):
    """A record with nothing to generate from (e.g. only blank sentences)."""


class Merged(ReadNote):
    """A record folded into another annotation (a repeated id, an exact duplicate)."""


class Task(Protocol):
    name: str  # e.g. "LA"; stored in instructions.task

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        """Yield validated annotations, and a Skipped or Merged note for each record that did
        not become an annotation of its own; raise SyphusError naming file, record and field."""

    def messages(self, ann: Annotation) -> list[dict[str, str]]:
        """OpenAI-style chat messages: system, in-context user/assistant turns, the query."""

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        """Parse a reply into pairs; raise ResponseParseError with the reason."""


# -- shared implementation ------------------------------------------------------------------
# Everything below is an optional base class for tasks; the contract above is all the engine
# relies on. Annotation.extra["task"], when set, names the task the pairs of that annotation
# belong to when one Task emits several kinds (LA emits LACONV, LADD and LACR).


class TaskOptions(BaseModel):
    """Options every task accepts (``get_task(name, **options)``); tasks add their own."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None  # a prompt YAML to use instead of the packaged one
    image_id_pattern: str | None = None  # overrides the task's default image id pattern
    min_pairs: int = 1
    max_pairs: int = 50


class BaseTask(ABC):
    """Shared code: options, prompt loading, message assembly, the generic pair parser.

    Subclasses set ``name``, ``prompt_name``, ``default_image_id_pattern`` and ``Options``, and
    implement ``read`` and ``render_query``.
    """

    name: str = ""
    prompt_name: str = ""
    lang: str = "en"
    default_image_id_pattern: str = ""
    image_id_fields: tuple[str, ...] = ()  # the fields the pattern could use, named in hints
    Options: type[TaskOptions] = TaskOptions

    def __init__(self, **options: Any):
        from pydantic import ValidationError

        from prompts import load_prompt
        from schemas.errors import first_validation_error

        try:
            self.options = self.Options.model_validate(options)
        except ValidationError as e:
            raise first_validation_error(e, where=f"task {self.name} options") from e
        self.prompt = load_prompt(self.options.prompt or self.prompt_name)
        self.image_id_pattern = self.options.image_id_pattern or self.default_image_id_pattern

    @abstractmethod
    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        """Yield validated annotations (and notes on records skipped or merged) from the dataset's own files."""

    @abstractmethod
    def render_query(self, ann: Annotation) -> str:
        """The user turn that presents one annotation to the model."""

    def messages(self, ann: Annotation) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.prompt.system},
            *self.prompt.turns(),
            {"role": "user", "content": self.render_query(ann)},
        ]

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        from syphus.tasks.parsing import parse_pairs

        return parse_pairs(text, min_pairs=self.options.min_pairs, max_pairs=self.options.max_pairs)

    def image_id(self, where: str, **fields: Any) -> str:
        """Format ``self.image_id_pattern`` with the named fields; a bad pattern names itself."""
        from schemas.errors import SyphusError

        self.image_id_fields = tuple(sorted(fields))
        try:
            return self.image_id_pattern.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise SyphusError(
                f"task {self.name}: image_id_pattern {self.image_id_pattern!r} cannot be filled for {where}: "
                f"{type(e).__name__}: {e}",
                hint=f"available fields: {', '.join(sorted(fields))}",
            ) from e
