"""Structured output: ask an endpoint for JSON of a pydantic model's schema, and validate the reply.

OpenAI's ``response_format={"type": "json_schema", ...}`` constrains decoding to the schema; vLLM
and SGLang accept the same field (guided JSON), so any ``--api-base`` endpoint gets it. Where it
is not supported (the in-process SmolLM2, providers litellm does not map it for) the caller keeps
its text parser; ``parse_structured`` still reads a JSON reply wherever it came from.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from syphus.tasks.base import ResponseParseError

M = TypeVar("M", bound=BaseModel)

# litellm providers whose chat API takes OpenAI's json_schema response_format as it is
_JSON_SCHEMA_PROVIDERS = ("openai", "azure")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class GeneratedPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str
    answer: str


class GeneratedPairs(BaseModel):
    """A generation task's reply as structured output (``generate --structured``): the tasks'
    parser reads this JSON as it reads their text replies, so their own checks still apply."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[GeneratedPair]


def supports_structured(model: str, *, backend: str = "auto", api_base: str | None = None) -> bool:
    """Whether requests to this model can carry a json_schema ``response_format``."""
    if backend == "local" or (backend == "auto" and model.startswith("local/")):
        return False
    if api_base:  # OpenAI-compatible servers: vLLM, SGLang, OpenAI itself
        return True
    from curation.pretrained import SMOLLM2, is_model

    if is_model(model, SMOLLM2):  # runs in process without an api_base
        return False
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return provider in _JSON_SCHEMA_PROVIDERS


def json_schema_of(model_cls: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form strict structured output accepts: every object closed
    (``additionalProperties: false``) with all its properties required."""
    schema = model_cls.model_json_schema()

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            for v in node.values():
                close(v)
        elif isinstance(node, list):
            for v in node:
                close(v)

    close(schema)
    return schema


def response_format_for(
    model_cls: type[BaseModel], *, backend: str = "auto", api_base: str | None = None, model: str = ""
) -> dict[str, Any] | None:
    """OpenAI's ``{"type": "json_schema", "json_schema": {...}}`` for ``model_cls`` (vLLM and SGLang
    accept the same), or None where the endpoint does not support it (the local SmolLM2)."""
    if not supports_structured(model, backend=backend, api_base=api_base):
        return None
    return {
        "type": "json_schema",
        "json_schema": {"name": model_cls.__name__, "schema": json_schema_of(model_cls), "strict": True},
    }


def parse_structured(text: str, model_cls: type[M]) -> M:
    """The reply as a validated ``model_cls``; ResponseParseError says what is wrong with it."""
    body = text.strip()
    fenced = _FENCE.match(body)  # some models wrap JSON in a code fence even when asked not to
    if fenced:
        body = fenced.group(1)
    try:  # pydantic's own JSON reader: one pass, no intermediate dicts (the judge's hot path)
        return model_cls.model_validate_json(body)
    except ValidationError as e:
        err = e.errors()[0]
        if err.get("type") == "json_invalid":
            raise ResponseParseError(f"not JSON ({err['msg']})") from e
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<reply>"
        raise ResponseParseError(
            f"JSON does not fit {model_cls.__name__}: field '{loc}': {err['msg']}"
        ) from e
