"""Benchmarks: one reader per distributed file layout, each benchmark's prompt and scoring rule.

Every reader takes local files only (nothing is downloaded, ever). See docs/eval.md for the exact
layouts read and the source of each scoring rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from schemas.errors import SyphusError
from syphus.eval.layouts import (
    FLOAT,
    IMAGE,
    IMAGES,
    INT,
    INT_OR_STR,
    STR,
    STR_LIST,
    STR_OR_LIST,
    STRUCT,
    Field,
    Row,
    find_files,
    image_bytes,
    read_parquet,
    read_tsv,
    split_of,
)
from syphus.eval.samples import BenchResult, Judge, Sample
from syphus.eval.scoring import (
    paired_circular,
    paired_mme,
    score_choice,
    score_circular,
    score_mathvista,
    score_mme,
    score_mmvet,
    score_pope,
)


@runtime_checkable
class Benchmark(Protocol):
    name: str

    def read(self, path: Path, *, split: str | None = None, limit: int | None = None) -> Iterator[Sample]:
        """The benchmark's samples from its distributed files at `path` (a file or a folder)."""

    def prompt(self, s: Sample, style: str | None = None) -> str:
        """The text sent with s.images (the question plus the benchmark's answer-format instruction)."""

    def score(
        self, samples: list[Sample], predictions: dict[str, str], *, judge: Judge | None = None
    ) -> BenchResult:
        """Score predictions (sample id -> model output) with the benchmark's documented rule."""


# ---------------------------------------------------------------- shared reading and prompting


def _text(row: Row, field: str, *, required: bool = True) -> str | None:
    v = row.values.get(field)
    # pandas-written files spell a missing cell "nan" (lmms-eval checks MMBench's hint against it)
    if v is None or (isinstance(v, str) and (not v.strip() or (not required and v.strip().lower() == "nan"))):
        if required:
            raise SyphusError(f"{row.where}: field '{field}' is empty")
        return None
    return str(v)


def _letter_options(row: Row, letters: str = "ABCDEFGHI") -> dict[str, str]:
    """Options spread over columns A, B, C, ... (VLMEvalKit and lmms-lab/MMBench); null cells are no option."""
    out = {}
    for k in letters:
        v = row.values.get(k)
        if v is None or not str(v).strip() or str(v).strip().lower() == "nan":
            continue
        out[k] = str(v)
    return out


def _options_block(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in options.items())


_STYLE_FIELD = re.compile(r"\{(?:question|options|hint|body)\}")


class TableBenchmark:
    """A benchmark read from Hub parquet shards (and, where VLMEvalKit publishes one, its TSV).

    Each subclass maps a row to a Sample in `from_parquet(row, state)` and, where it has
    `tsv_fields`, `from_tsv(row, state)`; `state` is a dict kept for the length of one read."""

    name: str = ""
    default_split: str | None = "test"
    config_dirs: tuple[str, ...] = ()
    parquet_fields: list[Field] = []
    tsv_fields: list[Field] | None = None
    instruction: str = ""  # the answer-format instruction the default prompt adds after the question
    verdict_metric: str = "accuracy"  # what the mean of the verdicts' `correct` is called (compare)
    id_fields: str = ""  # which fields make the sample id, for the duplicate-id error

    def read(self, path: Path, *, split: str | None = None, limit: int | None = None) -> Iterator[Sample]:
        layout, files = find_files(
            Path(path),
            bench=self.name,
            split=split,
            default_split=self.default_split,
            config_dirs=self.config_dirs,
        )
        if layout == "tsv":
            if self.tsv_fields is None:
                raise SyphusError(
                    f"{files[0]}: no VLMEvalKit TSV layout is known for {self.name!r}; use its Hub parquet files"
                )
            rows, make = read_tsv(files[0], self.tsv_fields), self.from_tsv
        else:
            rows, make = read_parquet(files, self.parquet_fields), self.from_parquet
        seen: set[str] = set()
        state: dict = {}
        for row in rows:
            if limit is not None and len(seen) >= limit:
                return
            # A TSV may hold several splits in a `split` column (VLMEvalKit's MMBench): keep the one asked for.
            if layout == "tsv" and split and row.values.get("split") not in (None, split):
                continue
            s = make(row, state)
            if s.id in seen:
                raise SyphusError(f"{row.where}: sample id {s.id!r} ({self.id_fields}) appears twice")
            seen.add(s.id)
            yield s

    def body(self, s: Sample) -> str:
        """The question with its hint and options, as the model sees it before the instruction."""
        parts = []
        hint = s.meta.get("hint")
        if hint:
            parts.append(f"Hint: {hint}")
        parts.append(s.question)
        if s.options:
            parts.append(_options_block(s.options))
        return "\n".join(parts)

    def prompt(self, s: Sample, style: str | None = None) -> str:
        """The text sent with s.images. style: None or "default" (question, options, the benchmark's
        instruction), "bare" (no instruction), a template using {question} {options} {hint} {body},
        or any other text, which replaces the instruction."""
        body = self.body(s)
        if style is None or style == "default":
            return f"{body}\n{self.instruction}" if self.instruction else body
        if style == "bare":
            return body
        if _STYLE_FIELD.search(style):
            fields = {
                "question": s.question,
                "options": _options_block(s.options),
                "hint": s.meta.get("hint") or "",
                "body": body,
            }
            try:
                return style.format_map(fields)
            except (KeyError, ValueError, IndexError) as e:
                raise SyphusError(
                    f"{self.name}: prompt template {style[:60]!r} is malformed ({e}); it may use {{question}}, "
                    "{options}, {hint} and {body}, with other braces doubled"
                ) from e
        return f"{body}\n{style}"


def _yes_no(row: Row, field: str = "answer") -> str:
    gold = (_text(row, field) or "").strip().lower().rstrip(".")
    if gold not in ("yes", "no"):
        raise SyphusError(f"{row.where}: field '{field}' is {gold!r}, expected Yes or No")
    return gold


def _choice_target(row: Row, options: dict[str, str], field: str = "answer") -> str:
    gold = (_text(row, field) or "").strip().upper()
    if gold not in options:
        raise SyphusError(
            f"{row.where}: field '{field}' is {gold!r}, not one of the options {', '.join(options)}"
        )
    return gold


def _image_list(row: Row, field: str) -> list[bytes]:
    v = row.values.get(field)
    if v is None:
        return []
    if isinstance(v, list) and (not v or not isinstance(v[0], int)):
        return [b for b in (image_bytes(x, row, field) for x in v) if b is not None]
    b = image_bytes(v, row, field)
    return [b] if b is not None else []


# ---------------------------------------------------------------- the benchmarks


class MME(TableBenchmark):
    """lmms-lab/MME (test, 2374 rows): question_id (the image's path, shared by its two questions),
    image, question (ending "Please answer yes or no."), answer (Yes/No), category."""

    name = "mme"
    id_fields = "question_id and its question's order"
    parquet_fields = [
        Field("question_id", STR),
        Field("image", IMAGE),
        Field("question", STR),
        Field("answer", STR),
        Field("category", STR),
    ]
    tsv_fields = [
        Field("index", STR),
        Field("image", IMAGE),
        Field("question", STR),
        Field("answer", STR),
        Field("category", STR),
        Field("image_path", STR, required=False),
    ]

    def from_parquet(self, row, state):
        qid = _text(row, "question_id")
        k = state.setdefault(qid, 0)
        state[qid] = k + 1
        return Sample(
            self.name,
            f"{qid}#{k}",
            _text(row, "question"),
            _image_list(row, "image"),
            _yes_no(row),
            {},
            _text(row, "category"),
            {"image": qid, "question_id": qid},
        )

    def from_tsv(self, row, state):
        image = row.values.get("image_path") or f"index {row.values.get('_image_row')}"
        return Sample(
            self.name,
            _text(row, "index"),
            _text(row, "question"),
            row.values["image"],
            _yes_no(row),
            {},
            _text(row, "category"),
            {"image": str(image)},
        )

    def score(self, samples, predictions, *, judge=None):
        return score_mme(samples, predictions, self.name)

    def paired(self, a, b):
        return paired_mme(a, b)


class POPE(TableBenchmark):
    """lmms-lab/POPE (default config, test, 9000 rows): id, question_id (1..3000 within each subset),
    question, answer (yes/no), image_source, image, category (adversarial / popular / random).
    Its `Full` config has one split per subset; a file without `category` takes its split's name."""

    name = "pope"
    id_fields = "category/question_id"
    instruction = "Answer the question using a single word or phrase."
    parquet_fields = [
        Field("id", STR, required=False),
        Field("question_id", STR),
        Field("question", STR),
        Field("answer", STR),
        Field("image_source", STR, required=False),
        Field("image", IMAGE),
        Field("category", STR, required=False),
    ]
    tsv_fields = [
        Field("index", STR),
        Field("image", IMAGE),
        Field("question", STR),
        Field("answer", STR),
        Field("category", STR),
    ]

    def from_parquet(self, row, state):
        cat = _text(row, "category", required=False) or split_of(row.file) or "all"
        meta = {
            k: row.values.get(k)
            for k in ("id", "question_id", "image_source")
            if row.values.get(k) is not None
        }
        return Sample(
            self.name,
            f"{cat}/{_text(row, 'question_id')}",
            _text(row, "question"),
            _image_list(row, "image"),
            _yes_no(row),
            {},
            cat,
            meta,
        )

    def from_tsv(self, row, state):
        return Sample(
            self.name,
            _text(row, "index"),
            _text(row, "question"),
            row.values["image"],
            _yes_no(row),
            {},
            _text(row, "category"),
            {},
        )

    def score(self, samples, predictions, *, judge=None):
        return score_pope(samples, predictions, self.name)


class ScienceQAImg(TableBenchmark):
    """lmms-lab/ScienceQA, config ScienceQA-IMG (test 2017 rows): image, question, choices
    (list of strings), answer (int8 index into choices), hint, task, grade, subject, topic,
    category, skill, lecture, solution. No id field: the id is the row's position in the split."""

    name = "scienceqa_img"
    config_dirs = ("ScienceQA-IMG",)
    id_fields = "row position"
    instruction = "Answer with the option's letter from the given choices directly."
    parquet_fields = [
        Field("image", IMAGE),
        Field("question", STR),
        Field("choices", STR_LIST),
        Field("answer", INT),
        Field("hint", STR),
        Field("subject", STR),
        Field("grade", STR, required=False),
        Field("topic", STR, required=False),
        Field("category", STR, required=False),
        Field("skill", STR, required=False),
    ]
    tsv_fields = [
        Field("index", STR),
        Field("question", STR),
        Field("A", STR),
        Field("B", STR),
        Field("answer", STR),
        Field("category", STR),
        Field("image", IMAGE),
        Field("hint", STR, required=False),
    ]

    def from_parquet(self, row, state):
        choices = row.values.get("choices") or []
        if len(choices) < 2:
            raise SyphusError(f"{row.where}: field 'choices' has {len(choices)} options, expected at least 2")
        options = {chr(ord("A") + i): str(c) for i, c in enumerate(choices)}
        answer = row.values.get("answer")
        if answer is None or not 0 <= int(answer) < len(choices):
            raise SyphusError(
                f"{row.where}: field 'answer' is {answer!r}, not an index into its {len(choices)} choices"
            )
        n = state["n"] = state.get("n", -1) + 1
        meta = {k: row.values.get(k) for k in ("grade", "topic", "category", "skill") if row.values.get(k)}
        meta["hint"] = _text(row, "hint", required=False)
        return Sample(
            self.name,
            str(n),
            _text(row, "question"),
            _image_list(row, "image"),
            chr(ord("A") + int(answer)),
            options,
            _text(row, "subject"),
            meta,
        )

    def from_tsv(self, row, state):
        options = _letter_options(row)
        return Sample(
            self.name,
            _text(row, "index"),
            _text(row, "question"),
            row.values["image"],
            _choice_target(row, options),
            options,
            _text(row, "category"),
            {"hint": _text(row, "hint", required=False)},
        )

    def body(self, s):
        hint = s.meta.get("hint")
        context = f"Context: {hint}\n" if hint else ""
        return f"{context}{s.question}\n{_options_block(s.options)}"

    def score(self, samples, predictions, *, judge=None):
        return score_choice(samples, predictions, self.name)


# SEED-Bench's evaluation dimensions by question_type_id (SEED-Bench.json "question_type").
SEED_DIMENSIONS = {
    1: "Scene Understanding",
    2: "Instance Identity",
    3: "Instance Attributes",
    4: "Instance Location",
    5: "Instances Counting",
    6: "Spatial Relation",
    7: "Instance Interaction",
    8: "Visual Reasoning",
    9: "Text Understanding",
    10: "Action Recognition",
    11: "Action Prediction",
    12: "Procedure Understanding",
}


class SEEDBench(TableBenchmark):
    """lmms-lab/SEED-Bench (test, ~18k rows): answer (A-D), choice_a..choice_d, data_id, data_type
    (image / video), question, question_id, question_type_id, image (list of images: one picture, or
    a video's frames)."""

    name = "seedbench"
    id_fields = "question_id"
    instruction = "Answer with the option's letter from the given choices directly."
    parquet_fields = [
        Field("answer", STR),
        *(Field(f"choice_{c}", STR) for c in "abcd"),
        Field("data_id", STR, required=False),
        Field("data_type", STR),
        Field("question", STR),
        Field("question_id", STR),
        Field("question_type_id", INT_OR_STR),
        Field("image", IMAGES),
    ]
    tsv_fields = [
        Field("index", STR),
        Field("question", STR),
        Field("A", STR),
        Field("B", STR),
        Field("answer", STR),
        Field("category", STR),
        Field("image", IMAGE),
    ]

    def from_parquet(self, row, state):
        options = {c.upper(): _text(row, f"choice_{c}") for c in "abcd"}
        qt = row.values.get("question_type_id")  # int16 in lmms-lab's files, a string in the authors' loader
        dim = SEED_DIMENSIONS.get(int(qt), str(qt)) if qt is not None and str(qt).strip().isdigit() else qt
        return Sample(
            self.name,
            _text(row, "question_id"),
            _text(row, "question"),
            _image_list(row, "image"),
            _choice_target(row, options),
            options,
            _text(row, "data_type"),
            {
                "question_type_id": qt,
                "data_id": row.values.get("data_id"),
                "labels": [f"dimension: {dim}"] if dim else [],
            },
        )

    def from_tsv(self, row, state):
        options = _letter_options(row)
        dim = _text(row, "category")
        return Sample(
            self.name,
            _text(row, "index"),
            _text(row, "question"),
            row.values["image"],
            _choice_target(row, options),
            options,
            "image",
            {"labels": [f"dimension: {dim}"]},
        )

    def score(self, samples, predictions, *, judge=None):
        return score_choice(samples, predictions, self.name, extra_key="labels")


class MMBench(TableBenchmark):
    """lmms-lab/MMBench, config `en`, split dev (4329 rows: 1164 questions, each once per rotation of
    its options): index (int64; rotations of question i have index i + k*1e6), question, hint,
    answer, A, B, C, D (null where a question has fewer options), category, image, source,
    L2-category, comment, split. VLMEvalKit's MMBench_DEV_EN.tsv has the same columns, image in base64."""

    name = "mmbench"
    default_split = "dev"
    config_dirs = ("en",)
    id_fields = "index"
    instruction = "Answer with the option's letter from the given choices directly."
    parquet_fields = [
        Field("index", INT),
        Field("question", STR),
        Field("hint", STR, required=False),
        Field("answer", STR),
        Field("A", STR),
        Field("B", STR),
        Field("C", STR, required=False),
        Field("D", STR, required=False),
        Field("category", STR),
        Field("image", IMAGE),
        Field("L2-category", STR, required=False),
        Field("source", STR, required=False),
        Field("g_index", INT, required=False),
    ]
    tsv_fields = [
        Field("index", INT),
        Field("question", STR),
        Field("hint", STR, required=False),
        Field("answer", STR),
        Field("A", STR),
        Field("B", STR),
        Field("category", STR),
        Field("image", IMAGE),
        Field("l2-category", STR, required=False),
        Field("g_index", INT, required=False),
    ]

    def _sample(self, row, images):
        index = row.values.get("index")
        if index is None:
            raise SyphusError(f"{row.where}: field 'index' is empty")
        g = row.values.get("g_index")
        group = (
            int(g) if g is not None else int(index) % 1_000_000
        )  # VLMEvalKit's g_index, else index mod 1e6
        options = _letter_options(row)
        l2 = row.values.get("L2-category") or row.values.get("l2-category")
        return Sample(
            self.name,
            str(int(index)),
            _text(row, "question"),
            images,
            _choice_target(row, options),
            options,
            _text(row, "category"),
            {
                "group": str(group),
                "hint": _text(row, "hint", required=False),
                "l2_category": l2,
                "source": row.values.get("source"),
            },
        )

    def from_parquet(self, row, state):
        return self._sample(row, _image_list(row, "image"))

    def from_tsv(self, row, state):
        return self._sample(row, row.values["image"])

    def score(self, samples, predictions, *, judge=None):
        return score_circular(samples, predictions, self.name)

    def paired(self, a, b):
        return paired_circular(a, b)


_MAGNIFIER_OPTIONS = re.compile(
    r"A\.\s*(?P<A>.+?),\s*B\.\s*(?P<B>.+?),\s*C\.\s*(?P<C>.+?),\s*D\.\s*(?P<D>.+?)\s*$", re.S
)


class MagnifierBench(TableBenchmark):
    """Otter-AI/MagnifierBench (test): id, instruction (the question with its options written
    inline: "...? A. x, B. y, C. z, D. w"), images (a list holding one image), answer (A-D), as
    Otter's pipeline/benchmarks/datasets/magnifierbench.py reads it."""

    name = "magnifierbench"
    id_fields = "id"
    instruction = "Answer with the option letter from the given choices directly."
    parquet_fields = [
        Field("id", STR),
        Field("instruction", STR),
        Field("images", IMAGES),
        Field("answer", STR),
    ]

    def from_parquet(self, row, state):
        text = _text(row, "instruction")
        tail = text.rsplit("?", 1)[-1] if "?" in text else text
        m = _MAGNIFIER_OPTIONS.search(tail)
        options = {k: m.group(k).strip().rstrip(".,?") for k in "ABCD"} if m else {}
        target = _choice_target(row, options) if options else (_text(row, "answer") or "").strip().upper()
        if target not in "ABCD" or not target:
            raise SyphusError(f"{row.where}: field 'answer' is {target!r}, expected one of A, B, C, D")
        return Sample(
            self.name, _text(row, "id"), text, _image_list(row, "images"), target, options, "all", {}
        )

    def body(self, s):
        return s.question  # the options are part of the distributed instruction

    def score(self, samples, predictions, *, judge=None):
        return score_choice(samples, predictions, self.name)


class MathVista(TableBenchmark):
    """AI4Math/MathVista (testmini, 1000 rows): pid, question, image (the image's path, a string),
    decoded_image (the image), choices (list of strings, null for free-form), unit, precision
    (float64), answer (a choice's text for multiple choice), question_type (multi_choice /
    free_form), answer_type (text / integer / float / list), metadata (struct: category, context,
    grade, img_height, img_width, language, skills, source, split, task), query (the question with
    its hint and choices, the text the authors prompt with)."""

    name = "mathvista"
    default_split = "testmini"
    id_fields = "pid"
    parquet_fields = [
        Field("pid", STR),
        Field("question", STR),
        Field("decoded_image", IMAGE),
        Field("choices", STR_LIST),
        Field("unit", STR, required=False),
        Field("precision", FLOAT, required=False),
        Field("answer", STR),
        Field("question_type", STR),
        Field("answer_type", STR),
        Field("metadata", STRUCT),
        Field("query", STR),
    ]
    tsv_fields = [
        Field("index", STR),
        Field("image", IMAGE),
        Field("question", STR),
        Field("answer", STR),
        Field("question_type", STR),
        Field("answer_type", STR),
        Field("precision", FLOAT, required=False),
        Field("choices", STR_LIST, required=False),
        Field("task", STR, required=False),
        Field("skills", STR_LIST, required=False),
    ]

    def _sample(self, row, sid, images, query, question, task, skills):
        qtype, atype = _text(row, "question_type"), _text(row, "answer_type")
        answer = _text(row, "answer").strip()
        choices = [str(c) for c in row.values.get("choices") or []]
        options, target = {}, answer
        if qtype == "multi_choice":
            if answer not in choices:
                raise SyphusError(f"{row.where}: field 'answer' {answer!r} is not one of its choices")
            options = {chr(ord("A") + i): c for i, c in enumerate(choices)}
            target = chr(ord("A") + choices.index(answer))
        precision = row.values.get("precision")
        meta = {
            "question_type": qtype,
            "answer_type": atype,
            "precision": precision,
            "unit": row.values.get("unit"),
            "choices": choices,
            "query": query,
            "skills": list(skills or []),
            "answer_text": answer,
        }
        return Sample(self.name, sid, question, images, target, options, task or "unknown", meta)

    def from_parquet(self, row, state):
        md = row.values.get("metadata") or {}
        return self._sample(
            row,
            _text(row, "pid"),
            _image_list(row, "decoded_image"),
            _text(row, "query"),
            _text(row, "question"),
            md.get("task"),
            md.get("skills"),
        )

    def from_tsv(self, row, state):
        q = _text(row, "question")
        return self._sample(
            row,
            _text(row, "index"),
            row.values["image"],
            q,
            q,
            row.values.get("task"),
            row.values.get("skills"),
        )

    def body(self, s):
        return s.meta.get("query") or s.question

    def score(self, samples, predictions, *, judge=None):
        return score_mathvista(samples, predictions, judge=judge, bench=self.name)


class MMVet(TableBenchmark):
    """lmms-lab/MMVet (test, 218 rows): question_id, image, question, answer (ground truth, with
    <AND> / <OR> between parts), image_source, capability (comma-separated: rec, ocr, know, gen,
    spat, math)."""

    name = "mmvet"
    id_fields = "question_id"
    verdict_metric = "score"
    parquet_fields = [
        Field("question_id", STR),
        Field("image", IMAGE),
        Field("question", STR),
        Field("answer", STR),
        Field("capability", STR_OR_LIST),
        Field("image_source", STR, required=False),
    ]
    tsv_fields = [
        Field("index", STR),
        Field("image", IMAGE),
        Field("question", STR),
        Field("answer", STR),
        Field("category", STR),
    ]

    def _sample(self, row, sid, images, caps_value):
        caps = caps_value if isinstance(caps_value, list) else str(caps_value or "").split(",")
        caps = sorted({c.strip() for c in caps if c and c.strip()})
        return Sample(
            self.name,
            sid,
            _text(row, "question"),
            images,
            _text(row, "answer"),
            {},
            ",".join(caps) or "unknown",
            {"capabilities": caps},
        )

    def from_parquet(self, row, state):
        return self._sample(
            row, _text(row, "question_id"), _image_list(row, "image"), row.values.get("capability")
        )

    def from_tsv(self, row, state):
        return self._sample(row, _text(row, "index"), row.values["image"], row.values.get("category"))

    def score(self, samples, predictions, *, judge=None):
        return score_mmvet(samples, predictions, judge=judge, bench=self.name)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (MME(), POPE(), ScienceQAImg(), SEEDBench(), MMBench(), MagnifierBench(), MathVista(), MMVet())
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark of that name; an unknown name is a one-line error listing the choices."""
    key = name.strip().lower().replace("-", "_")
    if key not in BENCHMARKS:
        choices = ", ".join(sorted(BENCHMARKS)) or "(none)"
        raise SyphusError(f"unknown benchmark {name!r}; choose one of: {choices}")
    return BENCHMARKS[key]


# A user's own held-out MIMIC-IT pairs (the demo's shapes split): registered like the others.
from syphus.eval.mimicit import MimicitPairs  # noqa: E402

BENCHMARKS[MimicitPairs.name] = MimicitPairs()
