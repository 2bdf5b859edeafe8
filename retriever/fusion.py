"""Query an artifact densely, lexically (BM25) or both, fusing the two rankings into one (hybrid).

Two fusions of the dense and the BM25 top-``depth`` lists:

- ``rrf``: reciprocal rank fusion, score = Σ 1 / (60 + rank) over the lists a document is in. It needs no
  tuning and ignores the two scores' scales: the default;
- ``weighted``: each list's scores min-max normalised over that list, then ``w · dense + (1 − w) · bm25``
  (a document missing from a list gets 0 there), with ``w`` chosen on a dev split
  (:func:`honed.rag_eval.fusion.choose_fusion`) and recorded in the artifact by :func:`record_fusion`.

Written here rather than taken from LlamaIndex's ``QueryFusionRetriever`` because the plain query path
(``honed search``, the HTTP service, the slim install) imports no LlamaIndex, and fusing store labels
before any document is read keeps a query to one store lookup.

Example:
    >>> rrf([[(1, 0.9), (2, 0.5)], [(2, 7.0), (3, 6.0)]], k=2)
    [(2, 0.0325...), (1, 0.0163...)]
    >>> from honed.retriever.index import load_index                            # doctest: +SKIP
    >>> idx = load_index("indexes/cuad-hybrid")                                  # doctest: +SKIP
    >>> search_modes(idx, enc.encode_queries(["cap on liability"]), ["cap on liability"], 5, "hybrid")  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .errors import HonedError
from .mixing import weighted

MODES = ("dense", "bm25", "hybrid")
FUSIONS = ("rrf", "weighted")
RRF_K = 60        # the constant of Cormack, Clarke and Büttcher (2009), used unchanged by most systems
DEPTH = 100       # how deep each list is read before fusing


def rrf(rankings: list[list[tuple[int, float]]], k: int, rrf_k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked (label, score) lists; the top `k` (label, fused score)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (label, _) in enumerate(ranking, start=1):
            fused[label] = fused.get(label, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda x: (-x[1], x[0]))[:k]


def fuse(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], k: int,
         fusion: dict | None = None) -> list[tuple[int, float]]:
    """Fuse one query's two lists the way `fusion` says (``{"fusion": "weighted", "weight": w}``); RRF without it."""
    if fusion and fusion.get("fusion") == "weighted":
        return weighted(dense, lexical, float(fusion["weight"]), k)
    return rrf([dense, lexical], k)


def check_mode(index, mode: str) -> None:
    """Refuse a mode the artifact cannot serve, in one line naming the fix."""
    if mode not in MODES:
        raise HonedError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "dense" and index.bm25 is None:
        raise HonedError(f"{index.path}: has no BM25 index, so mode {mode!r} cannot run; rebuild it with "
                         "`honed index build --bm25` (or build_index(..., bm25=True))")


def search_modes(index, query_vectors: np.ndarray | None, queries: list[str], k: int, mode: str = "dense",
                 allowed: np.ndarray | None = None, fusion: dict | None = None,
                 depth: int = DEPTH) -> list[list[tuple[int, float]]]:
    """Top-k (label, score) per query in `mode`: dense (FAISS), bm25, or hybrid (both, fused).

    `fusion` overrides the artifact's recorded one (:attr:`Index.hybrid`; RRF when none was recorded).
    `query_vectors` may be None for ``mode="bm25"``.
    """
    from .index import search

    check_mode(index, mode)
    if mode == "dense":
        return search(index, query_vectors, k, allowed=allowed)
    with index.lock:
        index.refresh()
        lexical = index.bm25.search(queries, max(k, depth) if mode == "hybrid" else k, allowed=allowed)
    if mode == "bm25":
        return lexical
    dense = search(index, query_vectors, max(k, depth), allowed=allowed)
    how = fusion if fusion is not None else index.hybrid
    return [fuse(d, b, k, how) for d, b in zip(dense, lexical)]


def record_fusion(index, fusion: str, weight: float | None = None, evidence: dict | None = None) -> dict:
    """Record in the artifact (its store's meta, atomically) how ``mode="hybrid"`` fuses, with the evidence."""
    if fusion not in FUSIONS:
        raise HonedError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if fusion == "weighted" and (weight is None or not 0.0 <= weight <= 1.0):
        raise HonedError(f"a weighted fusion needs a weight in [0, 1], got {weight!r}")
    check_mode(index, "hybrid")
    value = {"fusion": fusion, "weight": weight if fusion == "weighted" else None, **(evidence or {})}
    with index.lock:
        index.store.set_meta({"hybrid": value})
        index.hybrid = value
    return value
