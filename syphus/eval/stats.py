"""Standard errors, 95% intervals and paired differences for every metric evaluation reports.

- A proportion of 0/1 outcomes (accuracy, precision, recall, circular accuracy): binomial standard
  error sqrt(p(1-p)/n) and the Wilson score interval, which stays inside [0, 1] and behaves at small n.
- A mean of graded or composite per-unit values (MM-Vet grades, MME's per-image score): the sample
  standard deviation over units / sqrt(n), normal interval.
- A statistic that is not a mean (F1): percentile bootstrap over units with a fixed seed.
- A sum of independent category means (MME perception / cognition totals): variances add.
- A paired difference (compare): the mean of per-unit differences over the units both results
  scored, its standard error sd(d)/sqrt(n) and the normal interval.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from schemas.errors import SyphusError
from syphus.eval.samples import BenchResult, Metric

Z95 = 1.959963984540054
BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(
    name: str, outcomes: Sequence[float], *, category: str | None = None, scale: float = 1.0
) -> Metric:
    """A proportion of 0/1 outcomes, with binomial stderr and the Wilson interval; `scale` (e.g. 100)
    multiplies value, stderr and interval alike."""
    n = len(outcomes)
    k = float(sum(outcomes))
    p = k / n if n else 0.0
    se = math.sqrt(p * (1 - p) / n) if n else 0.0
    lo, hi = wilson_interval(k, n)
    return Metric(name, p * scale, se * scale, (lo * scale, hi * scale), n, category)


def mean_metric(name: str, values: Sequence[float], *, category: str | None = None) -> Metric:
    """The mean of per-unit values with stderr sd/sqrt(n) and a normal 95% interval."""
    n = len(values)
    if n == 0:
        return Metric(name, 0.0, 0.0, (0.0, 0.0), 0, category)
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n)
    return Metric(name, m, se, (m - Z95 * se, m + Z95 * se), n, category)


def sum_metric(name: str, parts: Sequence[Metric], *, category: str | None = None) -> Metric:
    """The sum of independent metrics (e.g. MME's category scores into a total): variances add."""
    value = sum(p.value for p in parts)
    se = math.sqrt(sum(p.stderr**2 for p in parts))
    return Metric(name, value, se, (value - Z95 * se, value + Z95 * se), sum(p.n for p in parts), category)


def bootstrap_metric(
    name: str,
    units: Sequence,
    statistic: Callable[[Sequence], float],
    *,
    category: str | None = None,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> Metric:
    """statistic(units) with the bootstrap standard error and percentile 95% interval over units
    resampled with replacement; the seed is fixed so a result is reproducible."""
    n = len(units)
    value = statistic(units) if n else 0.0
    if n < 2:
        return Metric(name, value, 0.0, (value, value), n, category)
    rng = random.Random(seed)
    draws = sorted(statistic([units[rng.randrange(n)] for _ in range(n)]) for _ in range(rounds))
    m = sum(draws) / rounds
    se = math.sqrt(sum((d - m) ** 2 for d in draws) / (rounds - 1))
    lo = draws[int(0.025 * rounds)]
    hi = draws[min(rounds - 1, int(math.ceil(0.975 * rounds)) - 1)]
    return Metric(name, value, se, (lo, hi), n, category)


def paired_difference(
    name: str, a: dict[str, float], b: dict[str, float], *, category: str | None = None
) -> Metric:
    """Mean of a[u] - b[u] over the units both hold, with stderr sd(d)/sqrt(n) and a normal interval."""
    shared = sorted(set(a) & set(b))
    return mean_metric(name, [a[u] - b[u] for u in shared], category=category)


def compare(a: BenchResult, b: BenchResult) -> list[Metric]:
    """Paired difference a - b over the sample ids both results scored, per metric unit (sample, image,
    circular group), each with its standard error and 95% interval.

    Always: `accuracy` (the mean of each verdict's `correct`) overall and per category. Where the
    benchmark is known and scores per unit (MME's images, MMBench's circular groups), also the
    differences of those unit scores (the benchmark's `paired`)."""
    from syphus.eval.benchmarks import BENCHMARKS

    if a.bench != b.bench:
        raise SyphusError(f"cannot compare results of different benchmarks ({a.bench} and {b.bench})")
    va = {v.sample_id: v for v in a.verdicts}
    vb = {v.sample_id: v for v in b.verdicts}
    shared = sorted(set(va) & set(vb))
    out = [
        paired_difference("accuracy", {i: va[i].correct for i in shared}, {i: vb[i].correct for i in shared})
    ]
    by_cat: dict[str, list[str]] = defaultdict(list)
    for i in shared:
        by_cat[va[i].category].append(i)
    if len(by_cat) > 1:
        for cat in sorted(by_cat):
            ids = by_cat[cat]
            out.append(
                paired_difference(
                    "accuracy", {i: va[i].correct for i in ids}, {i: vb[i].correct for i in ids}, category=cat
                )
            )
    paired = getattr(BENCHMARKS.get(a.bench), "paired", None)
    if paired is not None:
        out += paired([va[i] for i in shared], [vb[i] for i in shared])
    return out


def bootstrap_counts(
    name: str,
    counts: Sequence[int],
    statistic: Callable,
    *,
    category: str | None = None,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> Metric:
    """A statistic of cell counts (e.g. F1 from a confusion matrix) with the bootstrap standard error
    and percentile 95% interval: resampling units with replacement is a multinomial draw of the
    counts, so this costs the same for 10 units or 10 million. `statistic` takes an array whose last
    axis holds the counts and must work on a [rounds, cells] array too."""
    import numpy as np

    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    value = float(statistic(c.astype(float))) if n else 0.0
    if n < 2:
        return Metric(name, value, 0.0, (value, value), n, category)
    rng = np.random.default_rng(seed)
    draws = np.asarray(statistic(rng.multinomial(n, c / n, size=rounds).astype(float)), dtype=float)
    se = float(draws.std(ddof=1))
    lo, hi = (float(x) for x in np.percentile(draws, [2.5, 97.5]))
    return Metric(name, value, se, (lo, hi), n, category)
