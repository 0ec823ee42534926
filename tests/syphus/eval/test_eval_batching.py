"""The same answers at any batch size: every benchmark's fixture run through the tiny Otter (gates
open, so the images matter) at batch 1 and at batch 8 gives identical predictions, hence identical
scores."""

from __future__ import annotations

import pytest

from schemas.progress import no_progress
from syphus.eval.benchmarks import BENCHMARKS
from tests.paths import REAL_DATA

from .shapes_bench import SHAPES

FIXTURES = sorted(name for name in BENCHMARKS if (REAL_DATA / name).exists())


@pytest.fixture(scope="module")
def otter(otter_dir):
    from syphus.eval.models import OtterEvalModel

    return OtterEvalModel(otter_dir, 8)


def _answers(model, bench, path, batch_size):
    from syphus.eval.runner import BenchRun, predict, read_samples

    samples = read_samples(BenchRun(bench, path, {"limit": 24}))
    prompts = [bench.prompt(s) for s in samples]
    model.batch_size = batch_size
    max_new = getattr(bench, "max_new_tokens", 16)
    return predict(
        model, samples, prompts, batch_size=batch_size, max_new_tokens=min(16, max_new), journal=None,
        progress=no_progress,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["shapes", *FIXTURES])
def test_batch_8_answers_exactly_as_batch_1(name, otter, bench_data):
    bench, path = (
        (SHAPES, bench_data / "shapes") if name == "shapes" else (BENCHMARKS[name], REAL_DATA / name)
    )
    one = _answers(otter, bench, path, 1)
    eight = _answers(otter, bench, path, 8)
    assert one == eight
    if len(one) > 2:
        assert len(set(one.values())) > 1  # the answers differ between questions: the test has teeth
