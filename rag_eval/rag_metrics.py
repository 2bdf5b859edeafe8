"""The RAG report's metrics: which need a judge, in which order a report shows them, and how one is scored.

Shared by the pipeline (`rag.py`), the report (`rag_report.py`), the judge calibration and the gate,
none of which imports another for these.

Example:
    >>> metric_order({"judge_trustworthy": False, "systems": {"a": {"metrics": {"faithfulness": 1, "rouge_l": 0}}}})
    ['rouge_l', 'faithfulness']
"""
from __future__ import annotations

import asyncio
import math

import numpy as np

# Judged by the LLM, then without one. With a reference answer (see rag_eval.reference) the second
# group grows; the report leads with the judge-free metrics when the judge fails its sanity check.
JUDGED = ("faithfulness", "answer_relevancy", "answer_correctness")
UNJUDGED = ("semantic_similarity", "rouge_l", "decision_accuracy", "context_precision_ids", "context_recall_ids")
METRICS = ("faithfulness", "answer_relevancy", "context_precision_ids", "context_recall_ids")   # always present
JUDGE_TRUST_MIN = 0.7


def nanmean(xs) -> float | None:
    v = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else None


def score(coro_fn, *args, **kwargs) -> tuple[float, str | None]:
    """Run one async ragas metric; a judge failure becomes NaN with its reason, never a crash."""
    try:
        res = asyncio.run(coro_fn(*args, **kwargs))
        v = float(getattr(res, "value", res))
        # ragas returns NaN without raising when the judge finds nothing to score (e.g. no statements)
        return v, ("NaN from the metric: the judge extracted nothing to score" if math.isnan(v) else None)
    except Exception as e:  # ragas raises many types (validation, parsing, value errors)
        return float("nan"), f"{type(e).__name__}: {str(e)[:120]}"


def metric_order(doc: dict) -> list[str]:
    """The metrics a report shows, judge-free first when the judge failed its sanity check."""
    present = {m for s in doc["systems"].values() for m in s["metrics"]}
    groups = (JUDGED, UNJUDGED) if doc.get("judge_trustworthy") else (UNJUDGED, JUDGED)
    return [m for g in groups for m in g if m in present]
