"""`honed diagnose` end to end: the session's real tuned run against the real MiniLM on the SciFact slice,
with logged queries from a real feedback store and an out-of-domain set."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import HONED, REPO

pytestmark = pytest.mark.slow   # encodes with two real models: make test-full


def test_diagnose_writes_ranked_findings_with_evidence_and_commands(tiny_data, tuned_run, tmp_path):
    from honed.app.store import FeedbackStore, Vote

    store = FeedbackStore(tmp_path / "fb.db")
    for q in ("what does the liability cap exclude", "termination for convenience notice days",
              "what does the liability cap exclude"):
        store.record(Vote(session_id="s", query=q, system="tuned", baseline="base", candidate="tuned",
                          target="answer", vote=1, answer="…"))
    assert store.logged_queries() == ["what does the liability cap exclude", "termination for convenience notice days"]

    out = tmp_path / "diag"
    p = subprocess.run([HONED, "diagnose", "--data", str(tiny_data), "--model", str(tuned_run), "--concepts",
                        "clusters:3", "--ood", str(REPO / "datasets" / "cuad-qa"), "--db", str(tmp_path / "fb.db"),
                        "--out", str(out), "--index-dir", str(tmp_path / "idx")],
                       capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((out / "diagnosis.json").read_text())
    assert "diagnosis.md" in p.stdout and doc["kind"] == "diagnosis" and doc["seconds"] > 0

    # ranked: most severe first, every finding with its evidence and a command that exists
    sev = [f["severity"] for f in doc["findings"]]
    assert sev == sorted(sev, reverse=True) and all(0 <= s <= 1 for s in sev)
    commands = set()
    for f in doc["findings"]:
        assert f["area"] in ("data", "evaluation", "model") and f["evidence"] and f["action"].startswith("honed ")
        commands.add(f["action"].split()[1])
    helps = subprocess.run([HONED, "--help"], capture_output=True, text=True).stdout
    assert all(c in helps for c in commands), commands

    ev = doc["evidence"]
    # data: the logged (contract) queries are unlike the SciFact test queries, and say so
    logged = ev["logged_vs_test_queries"]
    assert logged["n"] == 2 and logged["vocabulary_covered"] < 0.8
    assert any(f["title"] == "Users' queries do not look like the test queries" for f in doc["findings"])
    assert ev["leakage"]["n_test_queries_leaked"] >= 0 and 0 < ev["test_vs_train_queries"]["nearest_cosine_p50"] <= 1
    # evaluation: the in-domain set and the out-of-domain one, each with its paired test
    sets = ev["datasets"]
    assert sets["cuad-qa"]["role"] == "out-of-domain" and sets["tiny"]["role"] == "in-domain"
    assert {"delta", "p_value", "ci_low", "ci_high"} <= set(sets["tiny"]["paired"])
    assert 0 <= sets["tiny"]["label_noise"]["unjudged_first_rate"] <= 1
    # the gain split by whether training saw the test query's passage (SciFact keeps its ids in both folders)
    from honed.retriever.data import load_beir

    trained = {d for rel in load_beir(tiny_data, "train").qrels.values() for d in rel}
    test_qrels = load_beir(tiny_data, "test").qrels
    split = sets["tiny"]["by_trained_passage"]
    assert split["trained_passage"]["n"] == sum(1 for rel in test_qrels.values() if set(rel) & trained)
    assert split["trained_passage"]["n"] + split["other"]["n"] == len(test_qrels)
    # where an out-of-domain loss lives: the tuned model's queries against the base model's passages and the
    # reverse, from the indexes the evaluation built (on the finding too, when the set was lost)
    from honed.rag_eval.audit import load_splits
    from honed.rag_eval.diagnose import forgetting_side

    qa = load_splits(str(REPO / "datasets" / "cuad-qa"), ("test",))["test"]
    sides = forgetting_side(qa, "cuad-qa", tmp_path / "idx")
    assert set(sides) == {"queries tuned, passages base", "queries base, passages tuned"}
    assert all(0 <= v <= 1 for v in sides.values())
    assert sides != {k: sets["cuad-qa"]["ndcg@10"]["base"] for k in sides}   # a real swap, not the base again
    assert forgetting_side(qa, "cuad-qa", tmp_path / "no-indexes") is None
    for f in doc["findings"]:
        if f["title"].startswith("The tuned model forgets out of domain"):
            assert f["evidence"]["ndcg@10_by_side"] == sides and "the loss is in" in f["detail"]
    conf = doc["confusion"]["tiny"]
    assert conf["source"].startswith("k-means clusters (k=3)") and set(conf["confused_rate"]) == {"base", "tuned"}
    # model: the run's own dev curve
    curve = ev["training_curve"]
    assert curve["steps"] and len(curve["dev_ndcg@10"]) == len(curve["steps"]) and curve["base_dev_ndcg@10"] > 0

    md = (out / "diagnosis.md").read_text()
    assert md.startswith("# Diagnosis") and "## Confusions on tiny" in md and "Act: `honed " in md
    for png in doc["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert {"confusion-tiny.png", "training-curve.png"} <= set(doc["plots"])

    # a folder that is not a diagnosis is never overwritten unasked, and is refused before any work
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("mine")
    refused = subprocess.run([HONED, "diagnose", "--data", str(tiny_data), "--model", str(tuned_run),
                              "--out", str(mine)], capture_output=True, text=True)
    assert refused.returncode == 2 and "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (mine / "notes.md").read_text() == "mine"
