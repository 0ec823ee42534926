"""The records evaluation passes around: a benchmark sample, a per-sample verdict, a metric with its
uncertainty, and a benchmark's result (with its JSON form, the results folder's format)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from schemas.errors import SyphusError

# A judge takes (sample_id, chat messages) pairs and returns one reply text per pair (None where the
# request failed). MathVista's answer extractor and MM-Vet's grader call it; the runner builds it on
# `ask`, so it is cached, resumable and costed, and records the judge model and prompt hash in notes.
Judge = Callable[[list[tuple[str, list[dict]]]], list[str | None]]


@dataclass
class Sample:
    """One benchmark question as distributed."""

    bench: str  # "mme", "pope", "scienceqa_img", ... or a user's own
    id: str  # unique within bench (the dataset's own question id / index)
    question: str  # the question as distributed (no answer-format instruction)
    images: list[bytes]  # encoded image bytes as distributed (PNG/JPEG), possibly empty
    target: str  # gold: "yes"/"no", an option letter, a number, free text
    options: dict[str, str]  # letter -> option text for multiple choice, else {}
    category: str  # per-category key (MME category, SEED data type, POPE subset, ...)
    meta: dict = field(default_factory=dict)  # the rest (MMBench circular group, MathVista answer_type, ...)


@dataclass
class Verdict:
    """How one prediction was judged."""

    sample_id: str
    prediction: str
    parsed: str | None  # what the parser (or extractor) read out of the prediction; None: nothing
    target: str
    correct: float  # 0/1, or a grade in [0, 1]
    category: str
    judged_by: str | None = None  # "rule" | the judge model's name
    unit: str | None = None  # the unit a grouped metric counts: MME's image, MMBench's circular group

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        return cls(
            sample_id=str(d["sample_id"]),
            prediction=d["prediction"],
            parsed=d.get("parsed"),
            target=d["target"],
            correct=float(d["correct"]),
            category=d["category"],
            judged_by=d.get("judged_by"),
            unit=d.get("unit"),
        )


@dataclass
class Metric:
    """A score with its standard error, 95% interval and the number of units it was computed over."""

    name: str
    value: float
    stderr: float
    ci95: tuple[float, float]
    n: int
    category: str | None = None  # None: the whole benchmark

    def to_json(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Metric:
        lo, hi = d["ci95"]
        return cls(
            name=d["name"],
            value=float(d["value"]),
            stderr=float(d["stderr"]),
            ci95=(float(lo), float(hi)),
            n=int(d["n"]),
            category=d.get("category"),
        )


@dataclass
class BenchResult:
    """A benchmark's scores, the verdict behind each sample, and notes (judge model, prompt hash, ...)."""

    bench: str
    metrics: list[Metric]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "bench": self.bench,
            "metrics": [m.to_json() for m in self.metrics],
            "verdicts": [v.to_json() for v in self.verdicts],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: dict, *, where: str = "benchmark result") -> BenchResult:
        """Read what to_json wrote; a missing or mistyped field is a one-line error naming `where`
        (the caller passes the file) and the field."""
        if not isinstance(d, dict):
            raise SyphusError(f"{where}: expected a JSON object, found {type(d).__name__}")
        try:
            return cls(
                bench=str(d["bench"]),
                metrics=[Metric.from_json(m) for m in d.get("metrics", [])],
                verdicts=[Verdict.from_json(v) for v in d.get("verdicts", [])],
                notes=[str(n) for n in d.get("notes", [])],
            )
        except KeyError as e:
            raise SyphusError(
                f"{where}: missing field {e.args[0]!r}; was it written by `syphus eval`?"
            ) from e
        except (TypeError, ValueError, AttributeError) as e:
            raise SyphusError(f"{where}: malformed field ({e})") from e

    def metric(self, name: str, category: str | None = None) -> Metric:
        """The metric of that name (and category); KeyError when the result has none."""
        for m in self.metrics:
            if m.name == name and m.category == category:
                return m
        raise KeyError(
            f"{self.bench}: no metric {name!r}" + (f" for category {category!r}" if category else "")
        )
