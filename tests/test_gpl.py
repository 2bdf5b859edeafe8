"""GPL-style adaptation: the packaged LLM writes queries for an unlabelled corpus, a teacher labels margins."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import HONED, TINY


def test_adapt_refuses_a_missing_corpus_in_one_line(tmp_path):
    p = subprocess.run([HONED, "adapt", "--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "nowhere" in p.stderr
    assert not (tmp_path / "r.synthetic.jsonl").exists()


def test_adapt_refuses_an_unknown_loss_before_the_llm(tmp_path):
    p = subprocess.run([HONED, "adapt", "--corpus", str(tmp_path), "--out", str(tmp_path / "r"), "--loss", "cosine"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--loss cosine" in p.stderr
    assert not (tmp_path / "r.synthetic.jsonl").exists()


@pytest.mark.slow
@pytest.mark.llm
def test_adapt_trains_on_synthetic_queries_only_and_reuses_them(tiny_data, tmp_path):
    """Real Qwen queries for 6 SciFact abstracts, negatives from the whole corpus, MarginMSE from a teacher."""
    from honed.retriever.finetune.gpl import adapt_to_corpus, synthetic_pairs_file
    from honed.retriever.finetune.pairs import read_pairs

    out = tmp_path / "runs" / "gpl"
    # a teacher of a handful of triples is likely weaker than the base: allowed, the plumbing is what is tested
    overrides = {**TINY, "teacher_epochs": 1, "track": False, "dev_fraction": 0.3, "allow_weaker_teacher": True}
    # a pool of 24 (the 6 sources + 18 random) keeps the mpnet filter's encoding to seconds
    res = adapt_to_corpus(tiny_data, out, split="train", max_docs=6, per_doc=3, filter_pool=24, **overrides)
    pairs_file = synthetic_pairs_file(out)
    pairs = read_pairs(pairs_file)
    assert pairs and all(p.source == "synthetic" and p.positive_id for p in pairs)
    stats = json.loads(pairs_file.with_suffix(".stats.json").read_text())
    dropped = stats["length"] + stats["copied"] + stats["duplicate"] + stats["inconsistent"]
    assert stats["docs"] == 6 and stats["kept"] == len(pairs) == stats["candidates"] - dropped
    assert all(3 <= len(p.query.split()) <= 25 for p in pairs)     # the LLM's JSON parsed into real queries
    assert stats["filter_model"] == "mpnet"      # not the model being tuned: an unbiased synthetic dev split
    assert stats["filter_pool"] == 24
    m = res.manifest
    assert m["params"]["loss"] == "distill" and m["params"]["data"] is None
    assert m["params"]["corpus"] == str(tiny_data) and m["params"]["pairs"] == [str(pairs_file)]
    # a teacher trained on a handful of triples is no judge of quality: that it was trained and scored is the point
    assert 0 <= m["eval"]["teacher"]["dev_ndcg@10"] <= 1 and m["timing"]["teacher_s"] > 0
    # negatives come from the whole corpus, not only from the 6 abstracts that have queries
    assert m["data"]["mining"]["corpus"] > 6
    assert (out / "honed.json").exists()

    # the teacher (this test is the suite's one run of teacher training + MarginMSE distillation)
    t = m["eval"]["teacher"]
    assert 0 <= t["dev_ndcg@10_before"] <= 1 and t["weaker_than_base"] == (t["dev_ndcg@10"] < res.base_dev_ndcg)
    assert any("loss" in h for h in json.loads((out / "log_history.json").read_text()))

    mtime = pairs_file.stat().st_mtime_ns       # the rerun also trains the other way: mnrl, no teacher
    again = adapt_to_corpus(tiny_data, out, split="train", max_docs=6, loss="mnrl",   # 1 step, no mining: what
                            **{**overrides, "force": True, "max_steps": 1, "num_negatives": 0})   # is checked is reuse
    assert pairs_file.stat().st_mtime_ns == mtime, "a rerun reuses the synthetic pairs"
    assert again.manifest["data"]["fingerprint"] == m["data"]["fingerprint"]
    assert again.manifest["params"]["loss"] == "mnrl" and again.manifest["params"]["teacher"] is None
    assert "teacher_s" not in again.manifest["timing"]


def test_an_unlabelled_corpus_joins_the_mining_corpus_and_guards_its_eval_queries(scifact_dir, tmp_path):
    from honed.retriever.data import load_beir
    from honed.retriever.data.beir import doc_text
    from honed.retriever.finetune import Pair, write_pairs
    from honed.retriever.finetune.config import FinetuneConfig
    from honed.retriever.finetune.train import collect_pairs

    test = load_beir(scifact_dir, "test")
    did = sorted(test.corpus)[0]
    write_pairs(tmp_path / "synth.jsonl", [Pair("a synthetic question", doc_text(test.corpus[did]), None, did,
                                                source="synthetic")])
    cfg = FinetuneConfig(pairs=[str(tmp_path / "synth.jsonl")], corpus=str(scifact_dir), corpus_split="test")
    pairs, corpus, eval_queries, _ = collect_pairs(cfg)
    assert len(pairs) == 1 and set(test.corpus) <= set(corpus) and len(corpus) == len(test.corpus)
    assert set(test.queries.values()) <= set(eval_queries)       # the corpus's own test queries stay out of training
