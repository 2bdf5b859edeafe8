"""Retrieval metrics through beir's ``EvaluateRetrieval`` (pytrec_eval underneath).

Example:
    >>> from honed.rag_eval.metrics import evaluate_run
    >>> qrels = {"q1": {"d1": 1}}
    >>> run = {"q1": {"d1": 0.9, "d2": 0.5}}
    >>> evaluate_run(qrels, run, k_values=[1, 10]).aggregate["NDCG@10"]
    1.0
"""
from __future__ import annotations

from dataclasses import dataclass

from honed.retriever.errors import HonedError

DEFAULT_K = (1, 3, 5, 10, 100)
# A placeholder hit for queries with no results: they must score 0, not be
# dropped (pytrec_eval, and so beir, average only over queries present in the run).
_NO_HIT = "__honed_no_hit__"


@dataclass
class RunMetrics:
    """Aggregate metrics plus per-query scores (for significance tests and plots)."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]   # query id → {"NDCG@10": …, …}
    n_queries: int
    n_empty: int


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 k_values=DEFAULT_K) -> RunMetrics:
    """nDCG, MAP, Recall, P and MRR at `k_values` over every judged query.

    Queries judged in `qrels` but missing or empty in `run` count as zero.
    A run that shares no query id with the qrels is an error (almost always a
    wrong file), not a silent 0.0.
    """
    import pytrec_eval
    from beir.retrieval.evaluation import EvaluateRetrieval

    if not qrels:
        raise HonedError("qrels are empty: nothing to evaluate")
    if run and not set(run) & set(qrels):
        ex_run, ex_q = next(iter(run)), next(iter(qrels))
        raise HonedError(f"run and qrels share no query id (run has e.g. {ex_run!r}, qrels {ex_q!r})")
    k_values = sorted(set(int(k) for k in k_values))
    full = {}
    n_empty = 0
    for q in qrels:
        hits = {d: float(s) for d, s in (run.get(q) or {}).items()}
        if not hits:
            n_empty += 1
            hits = {_NO_HIT: 0.0}
        full[q] = hits
    ndcg, _map, recall, prec = EvaluateRetrieval.evaluate(qrels, {q: dict(h) for q, h in full.items()},
                                                          k_values, ignore_identical_ids=False)
    mrr = EvaluateRetrieval.evaluate_custom(qrels, full, k_values, metric="mrr")
    aggregate = {**ndcg, **_map, **recall, **prec, **mrr}

    # Per-query values for the same measures (beir returns only means).
    measures = {f"ndcg_cut.{','.join(map(str, k_values))}", f"recall.{','.join(map(str, k_values))}"}
    per = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(full)
    per_query = {
        q: {**{f"NDCG@{k}": per[q][f"ndcg_cut_{k}"] for k in k_values},
            **{f"Recall@{k}": per[q][f"recall_{k}"] for k in k_values}}
        for q in qrels
    }
    return RunMetrics(aggregate=aggregate, per_query=per_query, n_queries=len(qrels), n_empty=n_empty)
