"""The data audit sees a planted leak and a planted topic skew in real SciFact queries."""
from __future__ import annotations

import dataclasses
import json

import pytest

from honed.rag_eval.audit import audit_dataset, passages_trained_on
from honed.retriever.finetune.pairs import normalise_text
from honed.retriever.data import load_beir, write_beir


@pytest.fixture(scope="module")
def planted(tmp_path_factory, scifact_dir):
    train, test = load_beir(scifact_dir, "train"), load_beir(scifact_dir, "test")
    tr_q = sorted(train.qrels)[:45]
    te_q = sorted(test.qrels)[:25]
    leak_src = te_q[0]
    queries_tr = {q: train.queries[q] for q in tr_q}
    qrels_tr = {q: train.qrels[q] for q in tr_q}
    # planted exact leak: a test query re-cased and re-punctuated
    queries_tr["leak-exact"] = test.queries[leak_src].upper().rstrip(".") + "!"
    qrels_tr["leak-exact"] = test.qrels[leak_src]
    # planted skew: 20 train queries on one topic the test split never asks about
    for i in range(20):
        queries_tr[f"zf-{i}"] = f"Zebrafish fin regeneration requires gene {i} signalling in blastema cells."
        qrels_tr[f"zf-{i}"] = train.qrels[tr_q[i]]
    docs = sorted({d for r in list(qrels_tr.values()) + [test.qrels[q] for q in te_q] for d in r})
    corpus = {d: train.corpus[d] for d in docs}
    root = tmp_path_factory.mktemp("planted")
    write_beir(root / "train", corpus, queries_tr, {"train": qrels_tr})
    write_beir(root / "test", corpus, {q: test.queries[q] for q in te_q}, {"test": {q: test.qrels[q] for q in te_q}})
    out = root / "report"
    return audit_dataset(root, out, max_docs=30), out, leak_src


def test_leak_is_reported(planted):
    summary, out, leak_src = planted
    exact = summary["leakage"]["exact"]
    assert [(e["test"], e["train"]) for e in exact] == [(leak_src, "leak-exact")]
    assert summary["leakage"]["n_test_queries_leaked"] >= 1
    assert "leak-exact" in (out / "report.md").read_text()


def test_skewed_cluster_is_reported(planted):
    summary, out, _ = planted
    t = summary["topics"]
    planted_words = {"zebrafish", "regeneration", "blastema", "fin", "signalling blastema"}
    zf = [c for c in t["clusters"] if planted_words & set(c["top_terms"])]
    assert zf and zf[0]["train"] >= 20 and zf[0]["test"] == 0
    assert zf[0]["cluster"] in t["skewed_clusters"]
    assert json.loads((out / "summary.json").read_text())["topics"]["skewed_clusters"] == t["skewed_clusters"]
    for png in summary["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_lengths_and_noise_sections(planted):
    summary, _, _ = planted
    s = summary["splits"]["test"]
    assert s["queries"] == 25 and s["passage_lengths"]["tokens_max"] > s["passage_lengths"]["tokens_p50"] > 50
    n = summary["label_noise"]
    assert n["positives"] >= 25 and 1 <= n["median_rank"] <= n["pool_size"]


def test_test_queries_whose_passage_training_saw(planted):
    summary, out, leak_src = planted
    train, test = load_beir(out.parent, "train"), load_beir(out.parent, "test")
    # independently of the text match: both folders hold SciFact's own ids, so ids say which abstracts trained
    trained = {d for rel in train.qrels.values() for d in rel}
    expected = {q for q, rel in test.qrels.items() if set(rel) & trained}
    assert leak_src in expected and 0 < len(expected) < len(test.qrels)
    assert passages_trained_on(train, test) == {q: q in expected for q in test.qrels}
    assert summary["leakage"]["passages"] == {"test_queries": 25, "with_trained_passage": len(expected)}
    assert f"training positive: **{len(expected)}** of 25" in (out / "report.md").read_text()
    # a test folder with its own corpus ids (another build of the same passages) matches by text
    renamed = dataclasses.replace(test, corpus={f"t-{d}": v for d, v in test.corpus.items()},
                                  qrels={q: {f"t-{d}": g for d, g in rel.items()} for q, rel in test.qrels.items()})
    assert passages_trained_on(train, renamed) == passages_trained_on(train, test)


def test_the_diagnosis_says_when_the_gain_is_on_trained_passages(planted):
    from honed.rag_eval.diagnose import MIN_SPLIT_QUERIES, gain_by_trained_passage, trained_passage_finding

    summary, out, _ = planted
    seen = passages_trained_on(load_beir(out.parent, "train"), load_beir(out.parent, "test"))
    n_seen = sum(seen.values())
    # a model that gains 0.4 only where training saw the passage, against one that gains 0.1 everywhere
    base = {q: {"NDCG@10": 0.3} for q in seen}
    memo = {q: {"NDCG@10": 0.7 if s else 0.3} for q, s in seen.items()}
    even = {q: {"NDCG@10": 0.4} for q in seen}
    split = gain_by_trained_passage(seen, base, memo)
    assert (split["trained_passage"]["n"], split["other"]["n"]) == (n_seen, len(seen) - n_seen)
    assert split["trained_passage"]["delta"] == pytest.approx(0.4) and split["other"]["delta"] == 0.0
    assert trained_passage_finding(gain_by_trained_passage(seen, base, even), "d") is None
    if min(n_seen, len(seen) - n_seen) < MIN_SPLIT_QUERIES:     # too few on a side to say anything
        assert trained_passage_finding(split, "d") is None
    many = {f"q{i}": i % 2 == 0 for i in range(40)}
    f = trained_passage_finding(gain_by_trained_passage(many, {q: {"NDCG@10": 0.3} for q in many},
                                                        {q: {"NDCG@10": 0.7 if s else 0.3} for q, s in many.items()}),
                                "datasets/x")
    assert f["area"] == "evaluation" and f["severity"] == 0.8 and "+0.400 on the 20" in f["title"]
    assert f["action"].startswith("honed data synth --corpus datasets/x")


def test_normalise_text():
    assert normalise_text("Vitamin-D, and  BONES?") == "vitamin d and bones"


def test_a_dev_split_unlike_the_test_split_is_named(tmp_path):
    """The dev split a run holds out of cuad-clauses' train queries (mostly one contract's questions) against its
    test split (clause types over other contracts): the run's warning names both ways they differ, and the
    diagnosis of a run that recorded it says so; the test queries against themselves differ in none."""
    from conftest import CUAD_CLAUSES
    from honed.rag_eval.diagnose import dev_split_finding
    from honed.retriever.finetune.pairs import dev_unlike_test, pairs_from_qrels, split_dev

    train, test = load_beir(CUAD_CLAUSES, "train"), load_beir(CUAD_CLAUSES, "test")
    _, dev = split_dev(pairs_from_qrels(train))
    queries, rel = {p.query_id: p.query for p in dev}, {}
    for p in dev:
        rel.setdefault(p.query_id, set()).add(p.positive_id)
    check = dev_unlike_test(queries, rel, test)
    assert (check["dev_queries"], check["test_queries"]) == (100, 68)
    assert check["unlike"] == ["1 vs 8 relevant passages per query (median)", "12 vs 6 words per query (median)"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "honed.json").write_text(json.dumps({"data": {"source": str(CUAD_CLAUSES), "dev_vs_test": check}}))
    f = dev_split_finding(run, CUAD_CLAUSES, str(run))
    assert f["area"] == "evaluation" and f["title"].endswith("cuad-clauses: " + "; ".join(check["unlike"]))
    assert f["action"].startswith(f"honed finetune --data {CUAD_CLAUSES} --out {run}-dev")

    own = {q: {d for d, g in r.items() if g > 0} for q, r in test.qrels.items()}
    same = dev_unlike_test({q: test.queries[q] for q in own}, own, test)
    assert same["unlike"] == []
    (run / "honed.json").write_text(json.dumps({"data": {"source": str(CUAD_CLAUSES), "dev_vs_test": same}}))
    assert dev_split_finding(run, CUAD_CLAUSES, str(run)) is None
