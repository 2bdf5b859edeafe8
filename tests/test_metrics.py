"""Metric correctness on hand-computed qrels/runs, and the significance path."""
from __future__ import annotations

import math

import pytest

from honed.rag_eval.metrics import evaluate_run
from honed.rag_eval.significance import paired_test
from honed.retriever.errors import HonedError


def test_hand_computed_ndcg_recall_mrr():
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d9": 2}}
    run = {"q1": {"d3": 3.0, "d1": 2.0, "d2": 1.0}, "q2": {"d9": 1.0}}
    m = evaluate_run(qrels, run, k_values=[1, 3, 10])
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m.per_query["q1"]["NDCG@10"] == pytest.approx(ndcg_q1, abs=1e-4)
    assert m.per_query["q2"]["NDCG@10"] == pytest.approx(1.0)
    assert m.aggregate["NDCG@10"] == pytest.approx((ndcg_q1 + 1) / 2, abs=1e-4)
    assert m.aggregate["Recall@1"] == pytest.approx(0.5)       # q1: 0/2, q2: 1/1
    assert m.aggregate["MRR@10"] == pytest.approx((0.5 + 1) / 2)
    assert m.aggregate["P@3"] == pytest.approx((2 / 3 + 1 / 3) / 2, abs=1e-4)


def test_missing_or_empty_queries_count_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    m = evaluate_run(qrels, {"q1": {"d1": 1.0}, "q2": {}}, k_values=[10])
    assert m.aggregate["NDCG@10"] == pytest.approx(1 / 3, abs=1e-4)
    assert m.n_empty == 2


def test_run_qrels_id_mismatch_is_an_error():
    with pytest.raises(HonedError, match="share no query id"):
        evaluate_run({"q1": {"d1": 1}}, {"Q1": {"d1": 1.0}})


def test_paired_test_counts_and_direction():
    a = {f"q{i}": 0.2 for i in range(30)}
    b = {f"q{i}": 0.2 + (0.3 if i < 25 else -0.1 if i < 28 else 0.0) for i in range(30)}
    t = paired_test(a, b)
    assert (t.wins, t.ties, t.losses) == (25, 2, 3)
    assert t.delta == pytest.approx((25 * 0.3 - 3 * 0.1) / 30)
    assert t.p_value < 0.001 and t.ci_low > 0
    same = paired_test(a, a)
    assert same.p_value == 1.0 and same.ties == 30
