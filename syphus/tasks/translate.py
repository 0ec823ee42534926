"""translate: generated English pairs -> the same pairs in zh, ja, es, de, fr, ko or ar.

Input (any of):
* MIMIC-IT ``*_instructions.json`` files (``{"meta": ..., "data": {ins_id: {"instruction",
  "answer", "image_ids", ...}}}``), as ``syphus export`` writes them;
* JSON-lines files with one ``{"id", "instruction", "answer", "image_ids"}`` per line.
The engine can also feed corpus rows directly through ``annotations_from_pairs``.

One annotation is ``group_size`` consecutive pairs that share the same image ids (default 1:
one request per pair, annotation id = the source instruction id, so the translation is
stored next to its source). ``Annotation.extra["task"]`` is the source task (the part of the
id before ``_INS_``, e.g. ``LACONV``) and ``Task.lang`` the target language.

The reply must hold exactly as many pairs as were sent, each non-empty, each in the target
language (script share for zh/ja/ko/ar, stopwords for es/de/fr; see ``langcheck``), none
left identical to its English source, and every number of two or more digits kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from schemas.annotations import SourcePair, TranslationRecord
from schemas.errors import SyphusError
from schemas.mimicit import task_of_id
from syphus.tasks.base import Annotation, BaseTask, Pair, ResponseParseError, TaskOptions
from syphus.tasks.langcheck import LANGUAGE_NAMES, language_problem, numbers
from syphus.tasks.parsing import parse_pairs
from syphus.tasks.readers import check_paths, iter_jsonl, load_json, validate


class _InstructionRecord(BaseModel):
    instruction: str
    answer: str
    image_ids: list[str] | None = None


class TranslateOptions(TaskOptions):
    lang: Literal["zh", "ja", "es", "de", "fr", "ko", "ar"]
    group_size: int = 1


class TranslateTask(BaseTask):
    name = "translate"
    prompt_name = "translate"
    Options = TranslateOptions

    def __init__(self, **options):
        super().__init__(**options)
        self.lang = self.options.lang
        if self.options.group_size < 1:
            raise SyphusError("task translate options: field 'group_size': must be at least 1")
        if self.lang not in self.prompt.examples_by_lang:
            raise SyphusError(
                f"{self.options.prompt or 'prompts/translate.yaml'}: no examples_by_lang for '{self.lang}'"
            )

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        for path in check_paths(paths, self.name):
            yield from self.annotations_from_pairs(self._pairs_of(path), source_file=str(path))

    def _pairs_of(self, path: Path) -> Iterator[SourcePair]:
        if path.suffix == ".jsonl":
            for lineno, raw in iter_jsonl(path):
                yield validate(SourcePair, raw, f"{path}: line {lineno}")
            return
        data = load_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            raise SyphusError(
                f"{path}: field 'data' missing: expected a MIMIC-IT instructions file or .jsonl pairs"
            )
        for ins_id, raw in data["data"].items():
            rec = validate(_InstructionRecord, raw, f"{path}: record '{ins_id}'")
            yield SourcePair(
                id=ins_id, instruction=rec.instruction, answer=rec.answer, image_ids=rec.image_ids or []
            )

    def annotations_from_pairs(
        self, pairs: Iterable[SourcePair], *, source_file: str = ""
    ) -> Iterator[Annotation]:
        """Group pairs (consecutive, same image ids, at most ``group_size``) into annotations."""
        group: list[SourcePair] = []
        for p in pairs:
            if group and (len(group) >= self.options.group_size or p.image_ids != group[0].image_ids):
                yield self._annotation(group, source_file)
                group = []
            group.append(p)
        if group:
            yield self._annotation(group, source_file)

    def _annotation(self, group: list[SourcePair], source_file: str) -> Annotation:
        source_task = task_of_id(group[0].id)
        if source_task is not None:  # it names the stored pairs: refuse it before paying for them
            from curation.store import check_name

            check_name(
                source_task,
                what=f"{source_file}: record '{group[0].id[:80]}': task (the id's text before _INS_)",
            )
        return Annotation(
            id=group[0].id if len(group) == 1 else f"{group[0].id}..{group[-1].id}",
            image_ids=list(group[0].image_ids),
            data=TranslationRecord(pairs=group, source_task=source_task),
            source_file=source_file,
            extra={"task": source_task, "source_ids": [p.id for p in group], "lang": self.lang},
        )

    def render_query(self, ann: Annotation) -> str:
        rec: TranslationRecord = ann.data
        head = f"Translate into {LANGUAGE_NAMES[self.lang]} ({len(rec.pairs)} pair{'s' if len(rec.pairs) > 1 else ''}):"
        body = "\n\n".join(f"Question: {p.instruction}\nAnswer: {p.answer}" for p in rec.pairs)
        return f"{head}\n\n{body}"

    def messages(self, ann: Annotation) -> list[dict[str, str]]:
        system = self.prompt.system.replace("{language}", LANGUAGE_NAMES[self.lang])
        return [
            {"role": "system", "content": system},
            *self.prompt.turns(self.lang),
            {"role": "user", "content": self.render_query(ann)},
        ]

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        rec: TranslationRecord = ann.data
        pairs = parse_pairs(text, min_pairs=1, max_pairs=max(len(rec.pairs), 1) * 2)
        return validate_translation(rec.pairs, pairs, self.lang)


def validate_translation(source: list[SourcePair], translated: list[Pair], lang: str) -> list[Pair]:
    """Same count, nothing empty, target language, not left in English, numbers kept."""
    if len(translated) != len(source):
        raise ResponseParseError(f"expected {len(source)} translated pair(s), got {len(translated)}")
    for i, (src, tr) in enumerate(zip(source, translated, strict=True), 1):
        for field, s_text, t_text in (
            ("question", src.instruction, tr.instruction),
            ("answer", src.answer, tr.answer),
        ):
            if not t_text.strip():
                raise ResponseParseError(f"pair {i}: translated {field} is empty")
            if (
                len(s_text.split()) >= 3
                and " ".join(s_text.split()).casefold() == " ".join(t_text.split()).casefold()
            ):
                raise ResponseParseError(f"pair {i}: {field} was not translated (identical to the source)")
            problem = language_problem(t_text, lang)
            if problem and len(t_text) >= 12:
                raise ResponseParseError(f"pair {i}: {field} is not {LANGUAGE_NAMES[lang]}: {problem}")
            missing = numbers(s_text) - numbers(t_text)
            if missing:
                raise ResponseParseError(f"pair {i}: {field} lost number(s) {', '.join(sorted(missing))}")
        problem = language_problem(f"{tr.instruction}\n{tr.answer}", lang)
        if problem:
            raise ResponseParseError(f"pair {i} is not {LANGUAGE_NAMES[lang]}: {problem}")
    return translated
