"""Paired significance of per-query differences between two systems.

Wilcoxon signed-rank (scipy) on per-query scores, plus win/tie/loss counts and
a bootstrap 95% CI of the mean difference: the test TREC-style evaluations use
for "is B really better than A on these queries?".

Example:
    >>> from honed.rag_eval.significance import paired_test
    >>> paired_test({"q1": 0.2, "q2": 0.5}, {"q1": 0.4, "q2": 0.5}).wins
    1
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from honed.retriever.errors import HonedError


@dataclass
class PairedTest:
    metric: str
    n: int
    mean_a: float
    mean_b: float
    delta: float               # mean(b - a)
    ci_low: float
    ci_high: float
    wins: int                  # queries where b > a
    ties: int
    losses: int
    p_value: float             # two-sided Wilcoxon signed-rank; 1.0 when every pair ties
    test: str = "wilcoxon"

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values`."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_test(a: dict[str, float], b: dict[str, float], metric: str = "NDCG@10",
                eps: float = 1e-9) -> PairedTest:
    """Compare per-query scores of system B against baseline A on the queries both have."""
    from scipy.stats import wilcoxon

    common = sorted(set(a) & set(b))
    if not common:
        raise HonedError("paired test: the two systems share no query id")
    x = np.array([a[q] for q in common], dtype=float)
    y = np.array([b[q] for q in common], dtype=float)
    d = y - x
    wins, losses = int((d > eps).sum()), int((d < -eps).sum())
    nonzero = np.abs(d) > eps
    p = float(wilcoxon(d[nonzero]).pvalue) if nonzero.sum() > 0 else 1.0
    lo, hi = bootstrap_ci(d)
    return PairedTest(metric=metric, n=len(common), mean_a=float(x.mean()), mean_b=float(y.mean()),
                      delta=float(d.mean()), ci_low=lo, ci_high=hi, wins=wins,
                      ties=len(common) - wins - losses, losses=losses, p_value=p)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n (better than normal-approx at small n).

    Votes (win rate) and clicks (CTR, interleaving preference) use it: one home for both."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)
