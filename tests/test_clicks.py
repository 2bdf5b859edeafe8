"""Implicit feedback: the click model, its false-negative guard, per-arm CTR/MRR, and the CTR trigger,
on a real SQLite feedback store and the real MiniLM (the guard scores with it)."""
from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from conftest import HONED

LIABILITY = "The total liability of either party shall not exceed the fees paid in the twelve months before the claim."
# the same clause as another contract words it: a relevant result the user skipped because one was enough
LIABILITY_2 = "The total liability of either party shall not exceed the fees paid in the twelve months preceding the claim."
TERMINATION = "Either party may terminate this agreement for convenience on ninety days' written notice."
GOVERNING = "This agreement is governed by the laws of the State of New York."
NOTICE = "Notices must be delivered in writing to the addresses set out above."


def _shown(*docs):
    return [{"doc_id": d, "rank": i, "score": 1.0 - i / 10, "arm": "champion", "text": t}
            for i, (d, t) in enumerate(docs, 1)]


def _impression(store, imp_id, query, docs, arm="champion", created_at=None):
    store.record_impression(imp_id, "s-" + imp_id, query, arm, "v1", len(docs), _shown(*docs),
                            created_at=created_at)


@pytest.fixture
def store(tmp_path):
    from honed.app.store import FeedbackStore

    return FeedbackStore(tmp_path / "fb.db")


def test_click_model_positive_skip_above_and_guard(store, minilm):
    from honed.app.clicks import ClickModel, click_pairs, judge_impression

    docs = [("gov", GOVERNING), ("liab2", LIABILITY_2), ("term", TERMINATION), ("liab", LIABILITY),
            ("notice", NOTICE)]
    _impression(store, "i1", "cap on liability", docs)
    store.record_interaction("i1", "click", "liab", dwell_ms=45_000)     # satisfied click at rank 4
    store.record_interaction("i1", "click", "term", dwell_ms=2_000)      # short click: neither
    imp = store.impressions_with_interactions()[0]
    pos, neg = judge_impression(imp, ClickModel())
    assert [h["doc_id"] for h in pos] == ["liab"]
    # skipped above the click: gov and liab2 (term was clicked; notice is below)
    assert [h["doc_id"] for h in neg] == ["gov", "liab2"]
    pairs, stats = click_pairs(store, minilm)
    assert len(pairs) == 1 and pairs[0].positive == LIABILITY and pairs[0].source == "clicks"
    # liab2 scores like the clicked passage (0.47 vs 0.46 with MiniLM): the guard keeps it out of the negatives
    assert pairs[0].negative_ids == ["gov"] and stats["negatives_guarded_out"] == 1


def test_short_clicks_and_no_clicks_make_no_pairs_and_thumbs_count(store, minilm):
    from honed.app.clicks import click_pairs

    docs = [("gov", GOVERNING), ("liab", LIABILITY), ("notice", NOTICE)]
    _impression(store, "a", "cap on liability", docs)
    store.record_interaction("a", "click", "liab", dwell_ms=3_000)
    _impression(store, "b", "cap on liability", docs)
    assert click_pairs(store, minilm)[0] == []
    _impression(store, "c", "which law governs", docs)
    store.record_interaction("c", "thumb", "gov", value=1)
    store.record_interaction("c", "thumb", "notice", value=-1)
    pairs, _ = click_pairs(store, minilm)
    assert [(p.positive_id, p.negative_ids) for p in pairs] == [("gov", ["notice"])]


def test_eval_queries_and_judged_documents_never_become_pairs(store, minilm, scifact_dir, scifact_test):
    from honed.app.clicks import click_pairs

    qid = sorted(scifact_test.qrels)[0]
    gold = next(iter(scifact_test.qrels[qid]))
    _impression(store, "e1", scifact_test.queries[qid], [("x", GOVERNING)])
    store.record_interaction("e1", "dwell", "x", dwell_ms=60_000)
    _impression(store, "e2", "some other question", [(gold, scifact_test.corpus[gold]["text"])])
    store.record_interaction("e2", "dwell", gold, dwell_ms=60_000)
    pairs, stats = click_pairs(store, minilm, eval_data=[scifact_dir])
    assert pairs == [] and stats["dropped_eval_query"] == 1 and stats["dropped_eval_doc"] == 1


def test_ctr_and_mrr_per_arm_with_intervals(store):
    from honed.app.clicks import click_metrics

    docs = [("a", GOVERNING), ("b", LIABILITY), ("c", NOTICE)]
    for i in range(10):   # champion: 4 of 10 clicked, first clicks at rank 1,1,2,3
        _impression(store, f"c{i}", "q", docs)
    for i, d in zip(range(4), "aabc"):
        store.record_interaction(f"c{i}", "click", d)
    for i in range(5):    # challenger: all clicked at rank 1
        _impression(store, f"h{i}", "q", docs, arm="challenger")
        store.record_interaction(f"h{i}", "click", "a")
    m = click_metrics(store)["arms"]
    assert m["champion"]["ctr"] == 0.4 and m["champion"]["mrr"] == pytest.approx((1 + 1 + 0.5 + 1 / 3) / 10, abs=1e-4)
    lo, hi = m["champion"]["ctr_ci"]
    assert lo < 0.4 < hi and 0 < lo and hi < 1
    assert m["challenger"]["ctr"] == 1.0 and m["challenger"]["mrr_ci"] == (1.0, 1.0)


def test_ctr_drop_fires_the_retrain_trigger(tmp_path, store):
    from honed.app.clicks import CtrTrigger, ctr_drop

    now = dt.datetime.now(dt.timezone.utc)
    docs = [("a", GOVERNING), ("b", LIABILITY)]
    for i in range(20):   # yesterday: 12 of 20 clicked; today: 4 of 20
        for day, clicked in ((1.5, i < 12), (0.5, i < 4)):
            iid = f"d{day}-{i}"
            _impression(store, iid, "q", docs, created_at=(now - dt.timedelta(days=day)).isoformat())
            if clicked:
                store.record_interaction(iid, "click", "a")
    res = ctr_drop(store, CtrTrigger(drop=0.2, window_s=86400, min_impressions=20), now=now)
    assert res["previous"]["ctr"] == 0.6 and res["last"]["ctr"] == 0.2 and res["fired"]
    assert not ctr_drop(store, CtrTrigger(drop=0.5, window_s=86400, min_impressions=20), now=now)["fired"]
    assert not ctr_drop(store, CtrTrigger(drop=0.2, window_s=86400, min_impressions=21), now=now)["fired"]
    # the CLI: exit 3 with the reason, and JSON for cron
    p = subprocess.run([HONED, "feedback", "status", "--db", str(store.url.split(":///")[1]), "--ctr-drop", "0.2",
                        "--ctr-min-impressions", "20", "--json"], capture_output=True, text=True)
    assert p.returncode == 3, p.stderr
    st = json.loads(p.stdout)
    assert st["trigger_fired"] and "champion CTR fell 0.400" in st["trigger_reasons"][0]
    assert st["clicks"]["arms"]["champion"]["impressions"] == 40
    bad = subprocess.run([HONED, "feedback", "status", "--db", str(tmp_path / "x.db"), "--ctr-window", "soon"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--ctr-window" in bad.stderr


def test_feedback_export_writes_click_pairs(tmp_path, store):
    _impression(store, "x1", "cap on liability", [("gov", GOVERNING), ("liab", LIABILITY)])
    store.record_interaction("x1", "dwell", "liab", dwell_ms=40_000)
    out = tmp_path / "pairs.jsonl"
    p = subprocess.run([HONED, "feedback", "export", "--db", str(tmp_path / "fb.db"), "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"negative_ids": ["gov"], "negatives": [GOVERNING], "positive": LIABILITY,
                     "positive_id": "liab", "query": "cap on liability", "source": "clicks"}]
    assert "clicks:" in p.stdout and "pairs: 1" in p.stdout
