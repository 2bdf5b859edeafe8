"""Annotation into eval sets: pooling over real systems, labels in the real SQLite store, agreement, export, leak guard.

The corpus is the committed SciFact slice (tests/fixtures/scifact-slice); pools come
from real BM25 and the real packaged MiniLM over a real FAISS index.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.app import annotate as an
from honed.app.store import FeedbackStore, Vote
from honed.retriever.errors import HonedError

SLICE = Path(__file__).parent / "fixtures" / "scifact-slice"
QUERIES = ["aspirin and colorectal cancer risk", "telomere G-quadruplex stabilisation", "endoplasmic reticulum stress"]


@pytest.fixture
def store(tmp_path):
    return FeedbackStore(tmp_path / "fb.db")


@pytest.fixture
def pooled(store, tmp_path):
    qfile = tmp_path / "queries.txt"
    qfile.write_text("\n".join(QUERIES) + "\n\n")
    assert an.add_queries(store, "sf", an.read_queries(qfile), "file") == 3
    assert an.add_queries(store, "sf", an.read_queries(qfile), "file") == 0        # idempotent
    n = an.ensure_pools(store, "sf", SLICE, ["bm25", "base=minilm"], depth=4, index_dir=tmp_path / "idx")
    assert n == 3
    return store


def test_pool_is_the_deduplicated_union_in_one_fixed_hidden_order(pooled, tmp_path):
    pool = an.get_pool(pooled, "sf", "q1")
    ids = [p.doc_id for p in pool]
    assert len(ids) == len(set(ids)) and 4 <= len(ids) <= 8          # union of two top-4s, no duplicates
    assert {s for p in pool for s in p.systems} == {"bm25", "base"}
    assert all(p.text for p in pool)
    # pooled once: opening it again (another annotator) gives the same order
    assert an.ensure_pools(pooled, "sf", SLICE, ["bm25"], depth=4, index_dir=tmp_path / "idx") == 0
    assert [p.doc_id for p in an.get_pool(pooled, "sf", "q1")] == ids
    # the order is a shuffle, not either system's ranking
    assert an.pool_query({"a": ["d1", "d2", "d3", "d4", "d5"]}, 5, seed="x") != \
        an.pool_query({"a": ["d1", "d2", "d3", "d4", "d5"]}, 5, seed="y")


def test_two_annotators_agreement_adjudication_and_export(pooled, tmp_path):
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.retriever.data.beir import load_beir

    grades = {"alice": [3, 0, 1, 0], "bob": [3, 0, 2, 0]}
    docs = {qid: [p.doc_id for p in an.get_pool(pooled, "sf", qid)][:4] for qid in ("q1", "q2")}
    for qid in docs:
        for who, gs in grades.items():
            for d, g in zip(docs[qid], gs):
                an.record_label(pooled, "sf", qid, d, who, g, note="checked")
    an.record_label(pooled, "sf", "q1", docs["q1"][0], "alice", 2)    # a change of mind: the latest counts
    ag = an.agreement(pooled, "sf")
    assert ag["annotators"] == ["alice", "bob"] and ag["items"] == 8 and ag["items_multiply_labelled"] == 8
    pair = ag["pairs"][0]
    assert pair["items"] == 8
    from sklearn.metrics import cohen_kappa_score

    labels = an.label_matrix(pooled, "sf")
    a = [v["alice"] for _, v in sorted(labels.items())]
    b = [v["bob"] for _, v in sorted(labels.items())]
    assert pair["kappa"] == round(cohen_kappa_score(a, b, labels=[0, 1, 2, 3]), 4)
    assert pair["agreement"] == round(sum(x == y for x, y in zip(a, b)) / 8, 4)

    dis = an.disagreements(pooled, "sf")
    assert len(dis) == 3 and all(d["adjudicated"] is None and d["text"] for d in dis)
    an.record_label(pooled, "sf", dis[0]["query_id"], dis[0]["doc_id"], "carol", 1, kind=an.ADJUDICATION)
    qrels, how = an.final_qrels(pooled, "sf")
    assert how == {"unanimous": 5, "adjudicated": 1, "unresolved_tie": 2}
    assert qrels[dis[0]["query_id"]][dis[0]["doc_id"]] == 1
    assert qrels[dis[1]["query_id"]][dis[1]["doc_id"]] == min(dis[1]["grades"].values())   # conservative tie

    v1 = an.export_eval_set(pooled, "sf", SLICE, tmp_path / "evalsets" / "sf", min_annotators=2)   # depth recorded
    v2 = an.export_eval_set(pooled, "sf", SLICE, tmp_path / "evalsets" / "sf", pool_depth=4, min_annotators=2)
    assert (v1.name, v2.name) == ("v1", "v2")                          # a new version, never an overwrite
    ds = load_beir(v1, "test")
    assert set(ds.queries) == {"q1", "q2"} and ds.queries["q1"] == QUERIES[0]   # q3 has no labels yet
    assert sum(len(r) for r in ds.qrels.values()) == 8
    card = json.loads((v1 / "card.json").read_text())
    assert card["annotators"] == ["alice", "bob"] and card["pool_depth"] == 4
    assert card["agreement"]["pairs"][0]["kappa"] == pair["kappa"] and card["resolution"]["adjudicated"] == 1
    assert "Cohen's kappa" in (v1 / "README.md").read_text()
    res = evaluate_systems([str(v1)], [parse_system("bm25")])
    m = res[0].systems["bm25"].metrics
    assert res[0].n_queries == 2 and set(m.per_query) == {"q1", "q2"} and 0 < m.aggregate["NDCG@10"] <= 1


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories → κ = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert an.fleiss_kappa(ratings, categories=range(5)) == pytest.approx(0.2099, abs=1e-4)
    assert an.fleiss_kappa([[1, 1], [2, 2, 2]]) is None               # unequal rater counts: undefined


def test_queries_from_the_log_and_synthetic_review_with_leak_guard(store, tmp_path):
    from honed.retriever.finetune.pairs import Pair, write_pairs

    for q in ("termination for convenience", "Termination for convenience?", "governing law"):
        store.record(Vote(session_id="s", query=q, system="a", baseline="a", candidate="b", target="answer", vote=1))
    logged = an.logged_queries(store)
    assert [t for _, t in logged] == ["termination for convenience", "governing law"]   # normalised duplicates merge
    an.add_queries(store, "mix", logged, "log")

    corpus = [json.loads(line) for line in (SLICE / "corpus.jsonl").read_text().splitlines()[:3]]
    write_pairs(tmp_path / "synth.jsonl", [Pair(f"synthetic question {i}", d["text"], positive_id=d["_id"],
                                                source="synthetic") for i, d in enumerate(corpus)])
    an.add_queries(store, "mix", an.synthetic_queries(tmp_path / "synth.jsonl"), "synthetic")
    syn = [q for q in an.set_queries(store, "mix") if q["source"] == "synthetic"]
    an.review_synthetic(store, "mix", syn[0]["query_id"], "rita", True, edited_text="an edited question")
    an.review_synthetic(store, "mix", syn[1]["query_id"], "rita", False)
    an.review_synthetic(store, "mix", syn[2]["query_id"], "rita", True)
    pairs, stats = an.reviewed_pairs(store, "mix")
    assert [p.query for p in pairs] == ["an edited question", "synthetic question 2"]
    assert stats["rejected"] == 1 and stats["pending_review"] == 0 and stats["accepted"] == 2

    # an exported eval set freezes its queries and judged passages: the third pair's passage is judged there
    frozen = tmp_path / "frozen"
    (frozen / "qrels").mkdir(parents=True)
    (frozen / "corpus.jsonl").write_text((SLICE / "corpus.jsonl").read_text())
    (frozen / "queries.jsonl").write_text(json.dumps({"_id": "x", "text": "An edited question"}) + "\n")
    (frozen / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nx\t{corpus[2]['_id']}\t1\n")
    pairs, stats = an.reviewed_pairs(store, "mix", eval_data=[frozen])
    assert pairs == [] and stats["dropped_eval_query"] == 1 and stats["dropped_eval_doc"] == 1


def test_finetune_leak_guard_drops_frozen_queries_passages_and_negatives(tmp_path):
    from honed.retriever.finetune.pairs import Pair
    from honed.retriever.finetune.train import exclude_frozen

    frozen = tmp_path / "frozen"
    (frozen / "qrels").mkdir(parents=True)
    (frozen / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, "text": t}) for d, t in
                                                   [("e1", "judged passage one"), ("e2", "judged passage two")]))
    (frozen / "queries.jsonl").write_text(json.dumps({"_id": "x", "text": "frozen question"}) + "\n")
    (frozen / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nx\te1\t2\nx\te2\t0\n")
    pairs = [Pair("Frozen question!", "some passage", positive_id="p1"),
             Pair("free question", "Judged passage ONE", positive_id="other-id"),
             Pair("another question", "fine passage", positive_id="p2", negatives=["judged passage two", "neg"],
                  negative_ids=["e2", "n1"])]
    corpus = {"p1": "some passage", "e1": "judged passage one", "p2": "fine passage", "z": "judged passage two"}
    kept, left, stats = exclude_frozen(pairs, corpus, [str(frozen)])
    assert [p.query for p in kept] == ["another question"] and kept[0].negatives == ["neg"]
    assert stats == {"dropped_eval_query": 1, "dropped_eval_doc": 1, "dropped_eval_negatives": 1,
                     "dropped_eval_passages": 2}
    assert set(left) == {"p1", "p2"}
    with pytest.raises(HonedError, match="nothing is left to train on"):
        exclude_frozen(pairs[:2], corpus, [str(frozen)])


def test_bad_input_is_one_clear_error(store, tmp_path):
    with pytest.raises(HonedError, match="annotator name"):
        an.record_label(store, "sf", "q1", "d1", " ", 2)
    with pytest.raises(HonedError, match="grade must be one of"):
        an.record_label(store, "sf", "q1", "d1", "alice", 4)
    with pytest.raises(HonedError, match="set name"):
        an.add_queries(store, "../evil", [("q", "x")], "file")
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"_id": "1", "text": "ok"}\n{"text": "no id"}\n')
    with pytest.raises(HonedError, match=r"q.jsonl:2"):
        an.read_queries(bad)
    with pytest.raises(HonedError, match="nothing to export"):
        an.export_eval_set(store, "empty", SLICE, tmp_path / "out")
    assert not (tmp_path / "out").exists()


LABELLER = """
import sys
from honed.app.store import FeedbackStore
from honed.app.annotate import record_label
store = FeedbackStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    record_label(store, "sf", f"q{i % 5}", f"d{i}", sys.argv[2], i % 4, note="concurrent")
"""


def test_concurrent_annotators_lose_no_label(tmp_path):
    """4 annotators label at once into one SQLite file: every label lands (the store's guarantees, as for votes)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'fb.db'}"
    FeedbackStore(url)
    procs = [subprocess.Popen([sys.executable, "-c", LABELLER, url, f"ann{w}", "40"]) for w in range(4)]
    assert [p.wait(180) for p in procs] == [0] * 4
    labels = an.latest_labels(FeedbackStore(url), "sf")
    assert len(labels) == 160 and {w for (_, _, w) in labels} == {"ann0", "ann1", "ann2", "ann3"}
    ag = an.agreement(FeedbackStore(url), "sf")
    assert ag["items_multiply_labelled"] == 40 and ag["fleiss_raters"] == 4
    assert all(p["agreement"] == 1.0 and p["kappa"] == 1.0 for p in ag["pairs"])   # all gave the same grades
