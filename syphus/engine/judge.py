"""``syphus score``: a judge model grades every stored pair against a rubric.

The judge is one more client of the engine: each pair becomes one prompt (the rubric as the
system message, the pair, its annotation when stored, and its images when the judge can see
them) sent through ``ask``, so replies are cached by request key, a killed run resumes without
paying twice and ``--max-cost`` holds. Each verdict (score on the rubric's scale, a short reason)
goes to the corpus's ``scores`` table under (pair, judge model, rubric sha256): an edited rubric
scores again, the same rubric never asks again.

Where the endpoint supports structured output the verdict comes back as JSON of
``verdict_model(rubric)``'s schema; elsewhere (the local SmolLM2) the same instructions ask for
JSON and a lenient text reading takes ``score: N`` when the model does not comply.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from curation.schema import now
from curation.store import DB_NAME, Corpus
from schemas.errors import SyphusError, first_validation_error, read_yaml
from schemas.progress import Progress
from syphus.engine.pipeline import GenerateOptions
from syphus.engine.pricing import estimate_tokens, price_of
from syphus.engine.structured import parse_structured, response_format_for
from syphus.tasks.base import ResponseParseError

RUBRICS_DIR = Path(__file__).resolve().parents[2] / "prompts" / "rubrics"
DEFAULT_RUBRIC = RUBRICS_DIR / "default.yaml"
JUDGE_TASK = "score"  # requests.task of the judge's requests
FLUSH_ROWS = 4096  # verdicts buffered before one insert into the scores table


class Rubric(BaseModel):
    """What the judge is told: who it is, the criteria, and the scale of its one overall score."""

    model_config = ConfigDict(extra="forbid")

    name: str
    system: str
    criteria: dict[str, str]
    scale_min: int = 1
    scale_max: int = 10

    @field_validator("system", "name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("criteria")
    @classmethod
    def _some_criteria(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("needs at least one criterion (name: what it asks)")
        blank = [k for k, text in v.items() if not str(text).strip()]
        if blank:
            raise ValueError(f"criterion '{blank[0]}' has no text")
        return {k: str(text).strip() for k, text in v.items()}

    @model_validator(mode="after")
    def _scale(self) -> Rubric:
        if self.scale_max <= self.scale_min:
            raise ValueError(f"scale_max ({self.scale_max}) must be above scale_min ({self.scale_min})")
        return self

    def sha256(self) -> str:
        """The hash stored with each score: of the rubric's content, so a reformatted file or an
        edited comment keeps its scores, and any change to what the judge is told scores again."""
        canon = json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def load_rubric(path: str | Path | None = None) -> Rubric:
    """The packaged default rubric, or a user's file; a bad file is one error naming it."""
    path = Path(path) if path is not None else DEFAULT_RUBRIC
    if not path.is_file():
        raise SyphusError(f"{path}: rubric file not found (--rubric; the default is {DEFAULT_RUBRIC})")
    raw = read_yaml(path)
    if raw is None:
        raise SyphusError(
            f"{path}: rubric file is empty; it needs name, system and criteria (see {DEFAULT_RUBRIC})"
        )
    if not isinstance(raw, dict):
        raise SyphusError(f"{path}: a rubric must be a mapping with name, system and criteria")
    try:
        return Rubric.model_validate(raw)
    except ValidationError as e:
        raise first_validation_error(e, where=str(path)) from e


def verdict_model(rubric: Rubric) -> type[BaseModel]:
    """The JSON the judge answers with: an integer score on the rubric's scale and a short reason."""
    return create_model(
        "JudgeVerdict",
        __config__=ConfigDict(extra="forbid"),
        score=(int, Field(ge=rubric.scale_min, le=rubric.scale_max, description="overall score")),
        reason=(str, Field(description="one short sentence")),
    )


def system_message(rubric: Rubric) -> str:
    crit = "\n".join(f"- {name}: {text}" for name, text in rubric.criteria.items())
    return (
        f"{rubric.system}\n\nCriteria:\n{crit}\n\n"
        f"Give one overall score from {rubric.scale_min} (unusable) to {rubric.scale_max} (excellent on every "
        "criterion) and a reason of one short sentence. Reply with JSON only, exactly in this form:\n"
        f'{{"score": <integer {rubric.scale_min}-{rubric.scale_max}>, "reason": "<one sentence>"}}'
    )


def pair_text(task: str, lang: str, instruction: str, answer: str, extra: dict[str, Any] | None) -> str:
    """The user message for one pair: its task, language, stored annotation, instruction, answer."""
    parts = [f"Task: {task}", f"Language: {lang}"]
    ann = (extra or {}).get("annotation")
    if ann:
        parts.append("Annotation:\n" + (ann if isinstance(ann, str) else json.dumps(ann, ensure_ascii=False)))
    parts += [f"Instruction: {instruction}", f"Answer: {answer}"]
    return "\n".join(parts)


_SCORE_RE = re.compile(r"\bscore\"?\s*[:=]\s*\"?(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_REASON_RE = re.compile(r"\breason\"?\s*[:=]\s*\"?(.+?)\"?\s*(?:[,}]|$)", re.IGNORECASE | re.MULTILINE)


def parse_verdict(text: str, rubric: Rubric, model_cls: type[BaseModel]) -> tuple[float, str]:
    """(score, reason) from a reply: JSON of the verdict schema, else ``score: N`` in the text.
    A score off the rubric's scale or missing raises ResponseParseError."""
    try:
        v = parse_structured(text, model_cls)
        return float(v.score), v.reason
    except ResponseParseError as json_error:
        m = _SCORE_RE.search(text)
        if m is None:
            raise json_error from None
        score = float(m.group(1))
        if not (rubric.scale_min <= score <= rubric.scale_max):
            raise ResponseParseError(
                f"score {m.group(1)} is off the rubric's scale {rubric.scale_min}-{rubric.scale_max}"
            ) from None
        r = _REASON_RE.search(text)
        return score, (r.group(1).strip() if r else text.strip()[:200])


@dataclass
class ScoreOptions:
    rubric_path: Path | None = None
    tasks: list[str] | None = None
    limit: int | None = None
    with_images: bool = True  # send a pair's images when the judge can take them
    structured: bool = True  # ask for JSON of the verdict schema where the endpoint supports it


@dataclass
class _Book:
    """Verdicts of one run, buffered and inserted into the scores table in batches."""

    corpus: Corpus
    judge: str
    rubric: Rubric
    sha: str
    model_cls: type[BaseModel]
    run_id: str
    rows: dict[str, list] = field(default_factory=lambda: {k: [] for k in _SCORE_COLUMNS})
    scored: int = 0
    unparseable: int = 0
    first_unparseable: str | None = None
    total: float = 0.0
    seen: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)  # reply keys already there from an earlier run

    def add(self, ins_id: str, key: str, text: str | None) -> None:
        if ins_id in self.seen:
            return
        self.seen.add(ins_id)
        try:
            score, reason = parse_verdict(text or "", self.rubric, self.model_cls)
        except ResponseParseError as e:
            self.unparseable += 1
            self.first_unparseable = self.first_unparseable or f"{ins_id}: {e}"
            if key in self.quarantined:  # a cached reply read again: quarantined once is enough
                return
            self.quarantined.add(key)
            self.corpus.quarantine(
                "score",
                f"judge reply unparseable: {e}",
                source=key,
                record_id=ins_id,
                raw=text,
                run_id=self.run_id,
            )
            return
        r = self.rows
        r["instruction_id"].append(ins_id)
        r["score"].append(score)
        r["reason"].append(reason)
        r["request_key"].append(key)
        self.scored += 1
        self.total += score
        if len(r["instruction_id"]) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        r = self.rows
        n = len(r["instruction_id"])
        if not n:
            return
        stamp = now()
        table = pa.table({
            "instruction_id": pa.array(r["instruction_id"], pa.string()),
            "judge_model": pa.array([self.judge] * n, pa.string()),
            "rubric_sha256": pa.array([self.sha] * n, pa.string()),
            "score": pa.array(r["score"], pa.float64()),
            "scale_max": pa.array([float(self.rubric.scale_max)] * n, pa.float64()),
            "reason": pa.array(r["reason"], pa.string()),
            "request_key": pa.array(r["request_key"], pa.string()),
            "run_id": pa.array([self.run_id] * n, pa.string()),
            "created_at": pa.array([stamp] * n, pa.timestamp("us")),
        })  # fmt: skip
        self.corpus.add_scores(table)
        self.rows = {k: [] for k in _SCORE_COLUMNS}


_SCORE_COLUMNS = ("instruction_id", "score", "reason", "request_key")


def judge_options(opts: GenerateOptions, rubric: Rubric, structured: bool) -> GenerateOptions:
    """The engine options of the judge's requests: the verdict schema as ``response_format``
    where the endpoint supports it (it is part of the request key)."""
    rf = (
        response_format_for(
            verdict_model(rubric), backend=opts.backend, api_base=opts.api_base, model=opts.model
        )
        if structured
        else None
    )
    return replace(opts, response_format=rf)


def score(corpus_dir: Path, opts: GenerateOptions, sopts: ScoreOptions, *, dry_run: bool = False,
          progress: Progress | None = None) -> dict[str, Any]:  # fmt: skip
    """Score every pair of the corpus (of ``sopts.tasks``, the first ``sopts.limit``) that this
    judge has not scored under this rubric; returns the run's summary."""
    rubric = load_rubric(sopts.rubric_path)
    sha = rubric.sha256()
    opts = judge_options(opts, rubric, sopts.structured)
    if not (Path(corpus_dir) / DB_NAME).exists():
        raise SyphusError(
            f"{corpus_dir}: no corpus here (missing {DB_NAME}); create one with 'syphus import'"
        )
    with Corpus(corpus_dir, create=False, read_only=dry_run) as corpus:
        pairs = corpus.pairs(tasks=sopts.tasks)
        if sopts.limit is not None:
            pairs = pairs[: sopts.limit]
        if not pairs:
            what = f" of task {', '.join(sopts.tasks)}" if sopts.tasks else ""
            raise SyphusError(f"{corpus_dir}: no pairs{what} to score; generate or import some first")
        done = corpus.scored_ids(opts.model, sha)
        todo = [p for p in pairs if p.id not in done]
        images = None
        if sopts.with_images and any(p.image_ids for p in todo):
            from syphus.engine.images import supports_images

            if supports_images(opts.model, opts.backend, opts.api_base):  # else text-only
                images = opts.image_source(corpus)
        base = {
            "judge": opts.model,
            "rubric": rubric.name,
            "rubric_sha256": sha[:16],
            "structured": opts.response_format is not None,
            "pairs": len(pairs),
            "already_scored": len(pairs) - len(todo),
        }
        prompts, skipped_images = _prompts(todo, rubric, sha, images)
        base["with_images"] = sum(1 for p in prompts if p.images)
        if skipped_images:
            base["skipped_image_errors"] = skipped_images
        if dry_run:
            return {**base, **_estimate(prompts, opts, corpus)}
        return _run(corpus, prompts, rubric, sha, opts, images, base, progress)


@dataclass
class _Item:
    ins_id: str
    messages: list[dict]
    images: bool


def _prompts(pairs, rubric: Rubric, sha: str, images) -> tuple[list[_Item], dict[str, int]]:
    """One prompt per pair, with its images when ``images`` is given; a pair whose image is
    missing or corrupt in the corpus is skipped and counted by reason before anything is sent."""
    system = {"role": "system", "content": system_message(rubric)}
    status = images.parts(i for p in pairs for i in p.image_ids) if images is not None else {}
    out: list[_Item] = []
    skipped: dict[str, int] = {}
    for p in pairs:
        msgs = [
            system,
            {"role": "user", "content": pair_text(p.task, p.lang, p.instruction, p.answer, p.extra)},
        ]
        seen = images is not None and bool(p.image_ids)
        if seen:
            from syphus.engine.images import ImageError, with_images

            parts = [status[i] for i in p.image_ids]
            bad = next((x for x in parts if isinstance(x, ImageError)), None)
            if bad is not None:
                skipped[bad.reason] = skipped.get(bad.reason, 0) + 1
                continue
            msgs = with_images(msgs, parts)
        out.append(_Item(p.id, msgs, seen))
    return out, skipped


def _estimate(items: list[_Item], opts: GenerateOptions, corpus: Corpus) -> dict[str, Any]:
    from syphus.engine.images import RULES, image_parts, image_tokens

    price = price_of(opts.model)
    family = opts.image_family()
    parts = [p for i in items if i.images for p in image_parts(i.messages)]
    ptoks = sum(estimate_tokens(i.messages) for i in items) + sum(image_tokens(p, family) for p in parts)
    typical = corpus.mean_completion_tokens(opts.model)
    ctoks = int(len(items) * (typical or opts.max_tokens))
    return {
        "to_send": len(items),
        **({"images_to_send": len(parts), "image_token_rule": RULES[family]} if parts else {}),
        "est_prompt_tokens": ptoks,
        "est_completion_tokens": ctoks,
        "completion_tokens_basis": "mean of earlier replies" if typical else "max_tokens (upper bound)",
        "est_cost_usd": price.cost(ptoks, ctoks),
        "price_known": price.known,
    }


def _run(corpus: Corpus, items: list[_Item], rubric: Rubric, sha: str, opts: GenerateOptions, images,
         base: dict[str, Any], progress: Progress | None) -> dict[str, Any]:  # fmt: skip
    from syphus.engine.ask import Prompt, ask

    config = {"judge": opts.model, "rubric": rubric.model_dump(), "rubric_sha256": sha, "api_base": opts.api_base,
              "response_format": opts.response_format is not None}  # fmt: skip
    run_id = corpus.start_run("score", config)
    book = _Book(corpus, opts.model, rubric, sha, verdict_model(rubric), run_id,
                 quarantined=corpus.quarantined_sources("score"))  # fmt: skip
    prompts = [
        Prompt(key_extra=f"score:{sha}", messages=i.messages, source_id=i.ins_id, task=JUDGE_TASK)
        for i in items
    ]
    t0 = time.perf_counter()
    status = "failed"
    result = None
    try:
        result = ask(
            prompts, store=corpus, opts=opts, images=images, progress=progress,
            on_reply=lambda p, r: book.add(p.source_id, r.key, r.text) if r.error is None else None,
        )  # fmt: skip
        for p, r in zip(prompts, result.replies, strict=True):  # cached replies, and any on_reply missed
            if r.error is None and r.text is not None:
                book.add(p.source_id, r.key, r.text)
        stats = dict(result.summary)
        status = stats.get("status", "done")
    finally:
        book.flush()
        wall = time.perf_counter() - t0
        summary = {
            "status": status,
            **base,
            "to_score": len(items),
            "scored": book.scored,
            "unparseable": book.unparseable,
            "mean_score": book.total / book.scored if book.scored else float("nan"),
            "wall_s": wall,
            "pairs_per_s": book.scored / wall if wall > 0 else 0.0,
        }
        if result is not None:
            for k in ("sent", "done", "cached", "errors", "cost_usd", "last_errors"):
                if k in stats:
                    summary[k] = stats[k]
        if book.first_unparseable:
            summary["first_unparseable"] = book.first_unparseable
        corpus.finish_run(run_id, status, {k: v for k, v in summary.items() if not _nan(v)})
    return summary


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
