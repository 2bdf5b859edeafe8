"""Concept confusions on the shipped cuad-clauses test split: labels, pair rates, the comparison, the report pieces.

The runs here are written out by hand (which passage a system ranks where) because the thing under
test is the reading of a ranked list, not a model; the end-to-end diagnosis with real models is in
test_diagnose.py.
"""
from __future__ import annotations

import subprocess

import pytest

from honed.rag_eval.confusion import (UNLABELLED, compare_confusions, concept_confusions, confusion_markdown,
                                      plot_confusions)
from honed.retriever.data.concepts import concept_labels, parse_concepts
from honed.retriever.data import load_beir
from honed.retriever.errors import HonedError

from conftest import CUAD_CLAUSES, HONED


@pytest.fixture(scope="module")
def cuad():
    return load_beir(CUAD_CLAUSES, "test")


@pytest.fixture(scope="module")
def labels(cuad):
    return concept_labels(cuad)


def _picks(cuad, labels, q):
    """(first relevant passage of q, a passage of another concept only, an unlabelled passage)."""
    c = labels.query[q]
    rel = sorted(d for d, g in cuad.qrels[q].items() if g > 0)
    other = next(d for d in sorted(labels.docs) if c not in labels.docs[d])
    unlabelled = next(d for d in sorted(cuad.corpus) if d not in labels.docs)
    return rel[0], other, unlabelled


def test_labels_come_from_the_queries_category_and_reach_the_passages_through_the_qrels(cuad, labels):
    assert labels.source == "query metadata 'category'"
    assert labels.query["cap-on-liability-4"] == "Cap On Liability" and len(labels.query) == len(cuad.queries)
    for q, c in labels.query.items():
        assert all(c in labels.docs[d] for d, g in cuad.qrels[q].items() if g > 0)
    # the same concepts from the query ids, and contracts as concepts from the passages' metadata
    by_id = concept_labels(cuad, r"id:^(.+)-\d+$")
    assert by_id.query["cap-on-liability-4"] == "cap-on-liability"
    assert len(set(by_id.query.values())) == len(set(labels.query.values()))
    by_contract = concept_labels(cuad, "doc:contract")
    q = "cap-on-liability-4"
    contracts = [cuad.corpus[d]["metadata"]["contract"] for d, g in cuad.qrels[q].items() if g > 0]
    assert by_contract.query[q] == min(set(contracts), key=lambda c: (-contracts.count(c), c))


@pytest.mark.parametrize("how, message", [
    ("bogus", "--concepts must be auto"), ("query:", "--concepts must be auto"), ("clusters:1", "K≥2"),
    ("id:(", "not a regular expression"), ("id:abc", "needs one group")])
def test_malformed_rules_are_refused_before_any_work(how, message):
    with pytest.raises(HonedError, match=message):
        parse_concepts(how)


def test_rules_that_do_not_fit_the_data_are_one_line_errors(cuad):
    with pytest.raises(HonedError, match="queries have no metadata field 'module'"):
        concept_labels(cuad, "query:module")
    with pytest.raises(HonedError, match="no passage has a metadata field 'author'"):
        concept_labels(cuad, "doc:author")
    with pytest.raises(HonedError, match=r"matches only 0 of 68 query ids"):
        concept_labels(cuad, r"id:^(zzz)")
    with pytest.raises(HonedError, match="needs the base model"):
        concept_labels(cuad, "clusters")


def test_a_passage_of_another_concept_above_the_first_relevant_one_is_a_confusion(cuad, labels):
    q, q2 = "cap-on-liability-4", "governing-law-4"
    rel, other, unlabelled = _picks(cuad, labels, q)
    rel2 = sorted(d for d, g in cuad.qrels[q2].items() if g > 0)[0]
    run = {q: {other: 0.9, unlabelled: 0.8, rel: 0.7}, q2: {rel2: 0.9, other: 0.1}}
    per_query = {q: {"NDCG@10": 0.5}, q2: {"NDCG@10": 1.0}}
    res = concept_confusions(cuad, run, labels, per_query)
    assert res["queries"] == 2 and res["confused_rate"] == 0.5
    c = labels.query[q]
    pairs = {(p["concept"], p["confused_with"]): p for p in res["pairs"]}
    assert set(pairs) == {(c, o) for o in labels.docs[other]}
    p = pairs[(c, labels.docs[other][0])]
    assert p["rate"] == 1.0 and p["of"] == 1
    assert p["examples"][0] == {**p["examples"][0], "query": q, "doc": other, "rank": 1, "first_relevant_rank": 3}
    assert res["per_concept"][c] == {"queries": 1, "confused_rate": 1.0, "unlabelled_above_rate": 1.0,
                                     "ndcg@10": 0.5}
    assert res["per_concept"][labels.query[q2]]["confused_rate"] == 0.0
    assert all(UNLABELLED not in (p["concept"], p["confused_with"]) for p in res["pairs"])
    # no relevant passage in the top 10: everything listed counts as above it
    far = concept_confusions(cuad, {q: {other: 0.9}}, labels)
    assert far["pairs"][0]["examples"][0]["first_relevant_rank"] is None


def test_comparison_names_what_tuning_made_worse(cuad, labels, tmp_path):
    q = "cap-on-liability-4"
    rel, other, _ = _picks(cuad, labels, q)
    clean = concept_confusions(cuad, {q: {rel: 0.9, other: 0.1}}, labels, {q: {"NDCG@10": 1.0}})
    confused = concept_confusions(cuad, {q: {other: 0.9, rel: 0.1}}, labels, {q: {"NDCG@10": 0.63}})
    cmp = compare_confusions({"base": clean, "tuned": confused}, "base")
    assert cmp["top_pairs"] == []                       # the baseline confuses nothing here
    grown = cmp["grown"]["tuned"]
    assert grown and grown[0]["base"] == 0.0 and grown[0]["tuned"] == 1.0 and grown[0]["delta"] == 1.0
    back = compare_confusions({"base": confused, "tuned": clean}, "base")
    assert back["top_pairs"][0]["base"] == 1.0 and back["top_pairs"][0]["tuned"] == 0.0 and not back["grown"]["tuned"]

    by_sys = {"base": confused, "tuned": clean}
    plot_confusions(by_sys, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    md = confusion_markdown(back, by_sys, labels.source)
    assert "| Cap On Liability |" in md and "| 1.00 | 0.00 |" in md and "0.630 | 1.000" in md


def test_cli_refuses_a_bad_rule_in_one_line_before_loading_a_model(tmp_path):
    p = subprocess.run([HONED, "diagnose", "--data", str(CUAD_CLAUSES), "--model", "minilm", "--concepts", "bogus",
                        "--out", str(tmp_path / "d")], capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--concepts" in p.stderr
    assert not (tmp_path / "d").exists()


def test_confusable_negatives_come_first_in_the_order_of_the_base_models_confusions():
    from honed.retriever.finetune.mining import base_confusions, prefer_confusable

    query_concept = {"q1": "Cap", "q2": "Cap", "q3": "Law"}
    doc_concepts = {"uncapped": ("Uncapped",), "law": ("Law",), "cap": ("Cap",), "both": ("Cap", "Law")}
    dense = {"q1": ["plain", "uncapped", "law"], "q2": ["uncapped", "both"], "q3": ["cap"]}
    confused = base_confusions(["q1", "q2", "q3"], dense, query_concept, doc_concepts)
    # a passage that also carries the query's own concept is no confusion ("both" for a Cap query)
    assert confused == {"Cap": {"Uncapped": 1.0, "Law": 0.5}, "Law": {"Cap": 1.0}}
    pool = ["plain", "law", "other", "uncapped"]        # hardest first
    assert prefer_confusable(pool, "Cap", doc_concepts, confused) == ["uncapped", "law", "plain", "other"]
    assert prefer_confusable(pool, None, doc_concepts, confused) == pool
    assert prefer_confusable(pool, "Unseen", doc_concepts, confused) == pool


@pytest.mark.parametrize("kw, message", [
    (dict(negatives="confused"), "--negatives must be one of hard, confusable"),
    (dict(negatives="confusable", concepts="bogus"), "--concepts must be auto"),
    (dict(negatives="confusable", data=None, pairs=["p.jsonl"]), "needs --data"),
    (dict(negatives="confusable", num_negatives=0), "needs --num-negatives"),
])
def test_confusable_negatives_settings_are_checked_before_any_work(kw, message, tmp_path):
    from honed.retriever.finetune import FinetuneConfig, finetune

    with pytest.raises(HonedError, match=message):
        finetune(FinetuneConfig(**{"data": str(CUAD_CLAUSES), "out": str(tmp_path / "r"), **kw}))
    assert not (tmp_path / "r").exists()


def test_hard_slice_keeps_every_gold_passage_and_the_strongest_bm25_distractors(scifact_dir, tmp_path):
    from honed.retriever.bm25 import bm25_search

    p = subprocess.run([HONED, "data", "slice", "--source", str(scifact_dir), "--out", str(tmp_path / "s"),
                        "--queries", "10", "--distractors", "2"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    full, cut = load_beir(scifact_dir, "test"), load_beir(tmp_path / "s", "test")
    qids = sorted(full.qrels)[:10]
    assert sorted(cut.queries) == qids and cut.qrels == {q: full.qrels[q] for q in qids}
    run = bm25_search(full.corpus, {q: full.queries[q] for q in qids}, k=60)
    want = {d for q in qids for d in full.qrels[q]}
    for q in qids:
        want |= set([d for d, _ in sorted(run[q].items(), key=lambda kv: -kv[1]) if d not in full.qrels[q]][:2])
    assert set(cut.corpus) == want and "10 queries" in " ".join(p.stdout.split())   # rich wraps long paths
    again = subprocess.run([HONED, "data", "slice", "--source", str(scifact_dir), "--out", str(tmp_path / "s")],
                           capture_output=True, text=True)
    assert again.returncode == 0      # its own earlier output (a honed dataset folder) is replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused = subprocess.run([HONED, "data", "slice", "--source", str(scifact_dir), "--out", str(other)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "--force" in refused.stderr and (other / "notes.txt").exists()


@pytest.mark.parametrize("q_tuned, p_tuned, where", [(0.745, 0.714, "how it reads this domain's passages."),
                                                      (0.700, 0.744, "how it reads this domain's queries."),
                                                      (0.730, 0.730, "both sides.")])
def test_the_side_an_out_of_domain_loss_lives_in_is_named(q_tuned, p_tuned, where):
    """Base 0.746, tuned 0.715: swapping only the passages (or only the queries) back to the base tells which."""
    from honed.rag_eval.diagnose import _side_detail

    text = _side_detail({"queries tuned, passages base": q_tuned, "queries base, passages tuned": p_tuned},
                        {"base": 0.746, "tuned": 0.715})
    assert text.endswith(f"the loss is in {where}")
