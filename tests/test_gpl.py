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


@pytest.mark.slow
def test_adapt_trains_on_synthetic_queries_only_and_reuses_them(tiny_data, tmp_path):
    """Real Qwen queries for 10 SciFact abstracts, negatives from the whole corpus, MarginMSE from a teacher."""
    from honed.retriever.finetune.gpl import adapt_to_corpus, synthetic_pairs_file
    from honed.retriever.finetune.pairs import read_pairs

    out = tmp_path / "runs" / "gpl"
    overrides = {**TINY, "teacher_epochs": 1, "track": False, "dev_fraction": 0.3}
    res = adapt_to_corpus(tiny_data, out, split="train", max_docs=10, per_doc=3, **overrides)
    pairs_file = synthetic_pairs_file(out)
    pairs = read_pairs(pairs_file)
    assert pairs and all(p.source == "synthetic" and p.positive_id for p in pairs)
    stats = json.loads(pairs_file.with_suffix(".stats.json").read_text())
    assert stats["docs"] == 10 and stats["kept"] == len(pairs)
    m = res.manifest
    assert m["params"]["loss"] == "distill" and m["params"]["data"] is None
    assert m["params"]["corpus"] == str(tiny_data) and m["params"]["pairs"] == [str(pairs_file)]
    assert m["eval"]["teacher"]["dev_ndcg@10"] > 0 and m["timing"]["teacher_s"] > 0
    # negatives come from the whole corpus, not only from the 10 abstracts that have queries
    assert m["data"]["mining"]["corpus"] > 10
    assert (out / "honed.json").exists()

    mtime = pairs_file.stat().st_mtime_ns
    again = adapt_to_corpus(tiny_data, out, split="train", max_docs=10, **{**overrides, "force": True})
    assert pairs_file.stat().st_mtime_ns == mtime, "a rerun reuses the synthetic pairs"
    assert again.manifest["data"]["fingerprint"] == m["data"]["fingerprint"]
