"""Benchmarks: one reader per distributed file layout, each benchmark's prompt and scoring rule.

Every reader takes local files only (nothing is downloaded, ever). See docs/eval.md for the exact
layouts read and the source of each scoring rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from schemas.errors import SyphusError
from syphus.eval.samples import BenchResult, Judge, Sample


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


BENCHMARKS: dict[str, Benchmark] = {}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark of that name; an unknown name is a one-line error listing the choices."""
    key = name.strip().lower().replace("-", "_")
    if key not in BENCHMARKS:
        choices = ", ".join(sorted(BENCHMARKS)) or "(none)"
        raise SyphusError(f"unknown benchmark {name!r}; choose one of: {choices}")
    return BENCHMARKS[key]
