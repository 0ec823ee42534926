"""Custom tasks with no Python: a YAML names the annotation fields, a Jinja template renders
the query, and a prompt file holds the system message and in-context examples.

A task YAML::

    name: RECIPE                 # stored as the task name
    prompt: recipe_prompt.yaml   # relative to this YAML, or a packaged prompt name
    format: jsonl                # jsonl (one record a line) or json (a list, an object with
                                 # the list under `records`, or an object {id: record})
    records: items               # optional, json only: the key holding the list
    id_field: recipe_id          # field used as annotation id; "{key}" for {id: record} files
    fields:                      # name: type (str, int, float, bool, list, dict, any); "?" = optional
      recipe_id: str
      title: str
      steps: list
      servings: int?
    image_ids: "{% for p in photos %}RCP_IMG_{{ p }} {% endfor %}"   # Jinja, whitespace-separated ids
    query: |
      Recipe: {{ title }}
      {% for s in steps %}{{ loop.index }}. {{ s }}
      {% endfor %}
    parse: pairs                 # pairs (Question/Answer, JSON, ...) or description
    images: true                 # optional: send the record's images with the query (a vision model)
    description_instructions: ["Describe the dish."]   # parse: description only

Templates run in Jinja's sandbox with strict undefined variables, so a typo names itself.
The record's fields are the template variables (plus ``id``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from prompts import prompt_path
from schemas.annotations import CustomRecord
from schemas.errors import SyphusError, first_validation_error, read_yaml
from syphus.tasks.base import Annotation, BaseTask, Pair, ResponseParseError
from syphus.tasks.readers import check_paths, iter_jsonl, load_json, validate

_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "any": Any,
}


class CustomTaskSpec(BaseModel):
    """The YAML of a custom task."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    prompt: str
    format: Literal["json", "jsonl"] = "jsonl"
    records: str | None = None
    id_field: str
    fields: dict[str, str]
    image_ids: str = ""
    query: str
    parse: Literal["pairs", "description"] = "pairs"
    description_instructions: list[str] = []
    min_words: int = 10
    images: bool = False  # attach the annotation's images to the query, as --with-images does

    @field_validator("fields")
    @classmethod
    def _known_types(cls, v: dict[str, str]) -> dict[str, str]:
        for name, t in v.items():
            if t.rstrip("?") not in _TYPES:
                raise ValueError(
                    f"field '{name}': unknown type '{t}' (use {', '.join(_TYPES)}, '?' for optional)"
                )
        return v


def load_spec(path: Path) -> CustomTaskSpec:
    if not path.is_file():
        raise SyphusError(f"{path}: custom task YAML not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SyphusError(f"{path}: a custom task must be a YAML mapping")
    try:
        spec = CustomTaskSpec.model_validate(raw)
    except ValidationError as e:
        raise first_validation_error(e, where=str(path)) from e
    if spec.id_field != "{key}" and spec.id_field not in spec.fields:
        raise SyphusError(f"{path}: field 'id_field': '{spec.id_field}' is not one of 'fields'")
    if spec.parse == "description" and not spec.description_instructions:
        raise SyphusError(f"{path}: field 'description_instructions': needed when parse is 'description'")
    return spec


class CustomTask(BaseTask):
    """A task defined by a YAML file (see the module docstring)."""

    def __init__(self, spec_path: str | Path, **options: Any):
        from jinja2 import StrictUndefined, TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        self.spec_path = Path(spec_path)
        self.spec = load_spec(self.spec_path)
        self.name = self.spec.name
        self.wants_images = self.spec.images
        local = self.spec_path.parent / self.spec.prompt
        self.prompt_name = str(local) if local.is_file() else str(prompt_path(self.spec.prompt))
        super().__init__(**options)
        env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
        )
        try:
            self.query_template = env.from_string(self.spec.query)
            self.image_template = env.from_string(self.spec.image_ids) if self.spec.image_ids else None
        except TemplateSyntaxError as e:
            raise SyphusError(f"{self.spec_path}: template line {e.lineno}: {e.message}") from e
        self.model = create_model(
            f"{self.name}Record",
            __config__=ConfigDict(extra="allow", allow_inf_nan=False),  # NaN is not a number a prompt can use
            **{
                name: (Optional[_TYPES[t.rstrip("?")]], None) if t.endswith("?") else (_TYPES[t], ...)  # noqa: UP045
                for name, t in self.spec.fields.items()
            },
        )

    def _records(self, path: Path) -> Iterator[tuple[str, Any, Any]]:
        """``(where, key, raw record)`` for each record of one file."""
        if self.spec.format == "jsonl":
            for lineno, raw in iter_jsonl(path):
                yield f"{path}: line {lineno}", None, raw
            return
        data = load_json(path)
        if self.spec.records is not None:
            if not isinstance(data, dict) or not isinstance(data.get(self.spec.records), list):
                raise SyphusError(f"{path}: field '{self.spec.records}' missing or not a list")
            data = data[self.spec.records]
        if isinstance(data, list):
            for i, raw in enumerate(data):
                yield f"{path}: record {i}", None, raw
        elif isinstance(data, dict):
            for key, raw in data.items():
                yield f"{path}: record '{key}'", key, raw
        else:
            raise SyphusError(
                f"{path}: expected a JSON list or object of records, found {type(data).__name__}"
            )

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        from jinja2 import TemplateError

        for path in check_paths(paths, self.name):
            for where, key, raw in self._records(path):
                if not isinstance(raw, dict):
                    raise SyphusError(f"{where}: expected an object, found {type(raw).__name__}")
                rec = validate(self.model, raw, where)
                fields = rec.model_dump()
                ann_id = key if self.spec.id_field == "{key}" else fields.get(self.spec.id_field)
                if ann_id is None or str(ann_id).strip() == "":
                    raise SyphusError(f"{where}: field '{self.spec.id_field}': empty annotation id")
                fields.setdefault("id", str(ann_id))
                image_ids: list[str] = []
                if self.image_template is not None:
                    try:
                        image_ids = self.image_template.render(**fields).replace(",", " ").split()
                    except TemplateError as e:
                        raise SyphusError(f"{where}: image_ids template ({self.spec_path}): {e}") from e
                yield Annotation(
                    id=str(ann_id),
                    image_ids=image_ids,
                    data=CustomRecord(fields=fields),
                    source_file=str(path),
                )

    def render_query(self, ann: Annotation) -> str:
        from jinja2 import TemplateError

        try:
            return self.query_template.render(**ann.data.fields).strip()
        except TemplateError as e:
            raise SyphusError(f"{self.spec_path}: query template, record '{ann.id}': {e}") from e

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        if self.spec.parse == "pairs":
            return super().parse(text, ann)
        body = (text or "").strip()
        words = len(body.split())
        if words < self.spec.min_words:
            raise ResponseParseError(f"description has {words} words, fewer than {self.spec.min_words}")
        choices = self.spec.description_instructions
        return [Pair(instruction=choices[zlib.crc32(ann.id.encode()) % len(choices)], answer=body)]
