"""Standard errors, intervals and paired differences, against values worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from schemas.errors import SyphusError
from syphus.eval.benchmarks import BENCHMARKS
from syphus.eval.samples import BenchResult
from syphus.eval.stats import compare, mean_metric, proportion, sum_metric, wilson_interval
from tests.paths import REAL_DATA


def test_wilson_interval_matches_published_values():
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_proportion_mean_and_sum():
    p = proportion("accuracy", [1, 1, 1, 0], scale=100)
    assert (p.value, p.stderr, p.n) == (75.0, pytest.approx(100 * math.sqrt(0.75 * 0.25 / 4)), 4)
    assert p.ci95[0] < 75 < p.ci95[1] <= 100
    m = mean_metric("score", [1.0, 0.5, 0.0])
    assert (m.value, m.stderr) == (pytest.approx(0.5), pytest.approx(0.5 / math.sqrt(3)))
    assert m.ci95 == (
        pytest.approx(0.5 - 1.96 * m.stderr, abs=1e-3),
        pytest.approx(0.5 + 1.96 * m.stderr, abs=1e-3),
    )
    s = sum_metric("total", [mean_metric("a", [100.0, 200.0]), mean_metric("b", [50.0, 50.0])])
    assert (s.value, s.stderr) == (pytest.approx(200.0), pytest.approx(50.0))


def _score(name, replies):
    ss = list(BENCHMARKS[name].read(REAL_DATA / name))
    return BENCHMARKS[name].score(ss, replies if isinstance(replies, dict) else {s.id: replies for s in ss})


def test_compare_mmbench_pairs_rows_and_circular_groups():
    a = _score(
        "mmbench", {"0": "A", "1000000": "D", "2000000": "C", "3000000": "B", "1": "B", "1000001": "B"}
    )
    b = _score("mmbench", "A")
    diffs = {(m.name, m.category): m for m in compare(a, b)}
    acc = diffs[("accuracy", None)]
    assert (acc.value, acc.n) == (pytest.approx(0.5), 6)
    assert acc.stderr == pytest.approx(math.sqrt(0.7) / math.sqrt(6))
    circ = diffs[("circular_accuracy", None)]
    assert (circ.value, circ.n, circ.stderr) == (pytest.approx(0.5), 2, pytest.approx(0.5))
    assert diffs[("accuracy", "attribute_recognition")].value == pytest.approx(0.75)  # b gets only index 0
    assert diffs[("accuracy", "image_topic")].value == pytest.approx(
        0.0
    )  # each right once, on different rows


def test_compare_mme_pairs_images_and_sums_category_differences():
    replies = [
        "Yes.",
        "No",
        "yes",
        "Yes, there is.",
        "There are three green circles.",
        "No.",
        "I am not sure.",
        "no",
    ]
    ss = list(BENCHMARKS["mme"].read(REAL_DATA / "mme"))
    a = BENCHMARKS["mme"].score(ss, {s.id: p for s, p in zip(ss, replies, strict=True)})
    b = _score("mme", "Yes")  # every image scores 50: one question of two right
    diffs = {(m.name, m.category): m for m in compare(a, b)}
    assert diffs[("score", "existence")].value == pytest.approx(75.0)  # (150 + 0) / 2
    assert diffs[("score", "count")].value == pytest.approx(150.0)
    assert diffs[("score", "code_reasoning")].value == pytest.approx(0.0)
    assert diffs[("perception", None)].value == pytest.approx(225.0)
    assert diffs[("cognition", None)].value == pytest.approx(0.0)


def test_compare_uses_only_shared_samples_and_refuses_different_benchmarks():
    a = _score("scienceqa_img", {"0": "B", "1": "B", "2": "A", "3": "B"})
    b = _score("scienceqa_img", {"0": "A", "1": "B"})
    acc = compare(a, b)[0]
    assert (acc.value, acc.n) == (pytest.approx(0.5), 2)
    with pytest.raises(SyphusError, match="different benchmarks"):
        compare(a, _score("seedbench", "A"))


def test_results_round_trip_through_json():
    r = _score("mmbench", "B")
    back = BenchResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r
    assert compare(back, r)[0].value == 0.0


def test_a_malformed_results_file_is_a_one_line_error_naming_it():
    with pytest.raises(SyphusError, match=r"^results/m/mme.json: missing field 'bench'"):
        BenchResult.from_json({"metrics": []}, where="results/m/mme.json")
    with pytest.raises(SyphusError, match=r"results/m/mme.json: malformed field"):
        bad = {"name": "acc", "value": "high", "stderr": 0, "ci95": [0, 1], "n": 1}
        BenchResult.from_json({"bench": "mme", "metrics": [bad]}, where="results/m/mme.json")
    with pytest.raises(SyphusError, match="expected a JSON object"):
        BenchResult.from_json([], where="x.json")
