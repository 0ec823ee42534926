"""Prompt files: one YAML per task with its system message and in-context examples.

A prompt file reads::

    task: SD
    system: |
      You are an AI visual assistant ...
    examples:              # at least two; each is one user turn and one assistant turn
      - user: |
          Differences: ...
        assistant: |
          Question: ...
          Answer: ...
    instructions: [...]    # optional: fixed instructions a task picks from (e.g. LADD)

``load_prompt("SD")`` reads the packaged ``prompts/sd.yaml``; ``load_prompt("my.yaml")``
reads any file, so a user can tune in-context examples without touching the package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from schemas.errors import SyphusError, first_validation_error, read_yaml

PROMPTS_DIR = Path(__file__).resolve().parent


class Example(BaseModel):
    """One in-context example: the query a task would render and the reply we want."""

    model_config = ConfigDict(extra="forbid")

    user: str
    assistant: str

    @field_validator("user", "assistant")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()


class PromptFile(BaseModel):
    """A task's prompt: system message, in-context examples, optional fixed instructions."""

    model_config = ConfigDict(extra="forbid")

    task: str
    system: str
    examples: list[Example]
    instructions: list[str] = []
    # Per-language examples for tasks whose reply language varies (translate).
    examples_by_lang: dict[str, list[Example]] = {}

    @field_validator("system")
    @classmethod
    def _system_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("examples")
    @classmethod
    def _two_examples(cls, v: list[Example]) -> list[Example]:
        if len(v) < 2:
            raise ValueError(f"needs at least 2 in-context examples, found {len(v)}")
        return v

    @field_validator("examples_by_lang")
    @classmethod
    def _two_per_lang(cls, v: dict[str, list[Example]]) -> dict[str, list[Example]]:
        for lang, exs in v.items():
            if len(exs) < 2:
                raise ValueError(f"'{lang}' needs at least 2 in-context examples, found {len(exs)}")
        return v

    def turns(self, lang: str | None = None) -> list[dict[str, str]]:
        """The in-context examples as alternating user/assistant chat messages."""
        examples = self.examples_by_lang.get(lang, self.examples) if lang else self.examples
        out: list[dict[str, str]] = []
        for ex in examples:
            out.append({"role": "user", "content": ex.user})
            out.append({"role": "assistant", "content": ex.assistant})
        return out


def prompt_path(name: str | Path) -> Path:
    """A packaged prompt by task name (``SD`` -> ``prompts/sd.yaml``) or a file path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PROMPTS_DIR / f"{str(name).lower()}.yaml"


def load_prompt(name: str | Path) -> PromptFile:
    """Read and validate a prompt file; a bad field raises SyphusError naming file and field."""
    path = prompt_path(name).resolve()
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml")))
        raise SyphusError(f"{path}: prompt file not found (packaged prompts: {known})")
    return _load_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _load_cached(path: str, _mtime: int) -> PromptFile:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SyphusError(f"{path}: a prompt file must be a mapping with 'system' and 'examples'")
    try:
        return PromptFile.model_validate(raw)
    except ValidationError as e:
        raise first_validation_error(e, where=path) from e


__all__ = ["Example", "PromptFile", "load_prompt", "prompt_path", "PROMPTS_DIR"]
