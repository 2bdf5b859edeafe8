"""Mix two scorings of one query's candidates: each min-max normalised, then a weighted sum.

Hybrid retrieval mixes the embedder with BM25 (:mod:`retriever.fusion`), two-stage retrieval mixes the
reranker with the first stage (:mod:`retriever.reranker`); both choose the weight among :data:`WEIGHTS`
on dev queries. Min-max per query because the two scores live on unrelated scales (cosine, BM25,
a sigmoid), and it needs no statistics beyond the list at hand.

Example:
    >>> weighted([(1, 0.9), (2, 0.5)], [(2, 7.0), (3, 6.0)], 0.5, k=3)
    [(1, 0.5), (2, 0.5), (3, 0.0)]
"""
from __future__ import annotations

import numpy as np

from .errors import HonedError

WEIGHTS = tuple(round(w / 10, 1) for w in range(11))   # the weights a dev split chooses among (0, 0.1, …, 1)


def _minmax(ranking: list[tuple[int, float]]) -> dict[int, float]:
    if not ranking:
        return {}
    scores = np.array([s for _, s in ranking], dtype=np.float64)
    lo, span = scores.min(), scores.max() - scores.min()
    return {label: float((s - lo) / span) if span > 0 else 1.0 for (label, _), s in zip(ranking, scores)}


def weighted(a: list[tuple[int, float]], b: list[tuple[int, float]], weight: float,
             k: int) -> list[tuple[int, float]]:
    """``weight · a + (1 − weight) · b`` over each list's min-max normalised scores (a label missing from a
    list gets 0 there); the top `k` (label, mixed score), ties by label."""
    if not 0.0 <= weight <= 1.0:
        raise HonedError(f"a mixing weight must be in [0, 1], got {weight}")
    x, y = _minmax(a), _minmax(b)
    mixed = {label: weight * x.get(label, 0.0) + (1 - weight) * y.get(label, 0.0) for label in x.keys() | y.keys()}
    return sorted(mixed.items(), key=lambda t: (-t[1], t[0]))[:k]
