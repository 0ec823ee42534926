"""A benchmark of your own: held-out MIMIC-IT pairs with short answers, scored by exact match.

The layout is the original MIMIC-IT pair of files that ``syphus export mimicit`` writes and
``syphus import mimicit`` reads: ``NAME_instructions.json`` and, beside it, ``NAME.parquet`` with
the images (base64, keyed by image id). ``--data`` names the instructions file or a folder holding
exactly one. Each record is a sample: the instruction is the prompt as is (the way the model was
trained), the answer is the target, and a record's ``category`` field (else its task, the text
before ``_INS_`` in its id) groups the scores.

Scoring: a prediction is right when it equals the answer after normalisation (case, punctuation,
articles and spacing, as VQA's evaluation normalises); accuracy with its binomial standard error
and Wilson interval, overall and per category. This suits answers of a word or a few (colours,
counts, names); free-form answers need a judge-scored benchmark instead.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from schemas.errors import SyphusError
from syphus.eval.samples import BenchResult, Judge, Sample, Verdict

SUFFIX = "_instructions.json"
_ARTICLES = {"a", "an", "the"}


def normalise_answer(text: str | None) -> str:
    """Lower case, NFKC, punctuation to spaces, articles dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKC", text or "").casefold()
    t = re.sub(r"[^\w\s]", " ", t)
    return " ".join(w for w in t.split() if w not in _ARTICLES)


def instructions_file(path: Path) -> Path:
    """The ``*_instructions.json`` that ``path`` names (the file, or a folder with exactly one)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{SUFFIX}"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise SyphusError(
                f"{path}: expected exactly one *{SUFFIX} for benchmark mimicit (found: {names})"
            )
        return found[0]
    if not path.name.endswith(SUFFIX):
        raise SyphusError(f"{path}: benchmark mimicit reads a MIMIC-IT *{SUFFIX} file (or its folder)")
    if not path.is_file():
        raise SyphusError(f"{path}: file not found")
    return path


class MimicitPairs:
    """Held-out MIMIC-IT pairs (see the module doc)."""

    name = "mimicit"
    max_new_tokens = 16  # short answers: a few words

    def read(self, path: Path, *, split: str | None = None, limit: int | None = None) -> Iterator[Sample]:
        from curation.formats import read_instructions
        from curation.mimicit_io import iter_parquet_images
        from schemas.mimicit import task_of_id

        if split not in (None, "test"):
            raise SyphusError(f"{path}: benchmark mimicit has no splits (got split {split!r}); give its file")
        ins = instructions_file(path)
        _, records = read_instructions(ins)
        chosen = list(records.items())[:limit] if limit is not None else list(records.items())
        wanted = {i for _, r in chosen for i in r.image_ids}
        images: dict[str, bytes] = {}
        if wanted:
            par = ins.with_name(ins.name[: -len(SUFFIX)] + ".parquet")
            if not par.is_file():
                raise SyphusError(f"{ins}: its images parquet {par.name} is not beside it")
            for iid, b64, where in iter_parquet_images(par):
                if iid in wanted:
                    try:
                        images[iid] = b64 if isinstance(b64, bytes) else base64.b64decode(b64, validate=True)
                    except (binascii.Error, ValueError) as e:
                        raise SyphusError(f"{where}: not base64 ({e})") from e
        for ins_id, r in chosen:
            missing = [i for i in r.image_ids if i not in images]
            if missing:
                raise SyphusError(
                    f"{ins}: record '{ins_id}': image '{missing[0]}' is not in the images parquet"
                )
            extra = r.model_extra or {}
            category = extra.get("category")
            yield Sample(
                bench=self.name,
                id=ins_id,
                question=r.instruction,
                images=[images[i] for i in r.image_ids],
                target=r.answer,
                options={},
                category=str(category) if category else (task_of_id(ins_id) or "all"),
                meta={"image_ids": list(r.image_ids)},
            )

    def prompt(self, s: Sample, style: str | None = None) -> str:
        """The instruction as the model was trained on it; a style other than the default or
        "bare" is an instruction appended on its own line."""
        if style in (None, "default", "bare"):
            return s.question
        return f"{s.question}\n{style}"

    def score(
        self, samples: list[Sample], predictions: dict[str, str], *, judge: Judge | None = None
    ) -> BenchResult:
        from syphus.eval.scoring import _answered, accuracy_metrics

        pairs, notes = _answered(samples, predictions)
        verdicts = []
        for s, p in pairs:
            parsed = normalise_answer(p)
            verdicts.append(
                Verdict(
                    sample_id=s.id,
                    prediction=p,
                    parsed=parsed or None,
                    target=s.target,
                    correct=float(bool(parsed) and parsed == normalise_answer(s.target)),
                    category=s.category,
                    judged_by="rule",
                )
            )
        notes.append("exact match after normalising case, punctuation, articles and spacing")
        return BenchResult(self.name, accuracy_metrics(verdicts), verdicts, notes)
