"""The judge's calibration set and the gate's treatment of judged metrics.

The real judge (the packaged Qwen) scores the shipped set in the slow tier
(tests/test_rag_eval.py); here, agreement arithmetic uses stand-in judges with
known answers, because the arithmetic, not a model, is under test.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from honed.rag_eval.calibration import check_calibration_path, judge_agreement, read_calibration
from honed.retriever.errors import HonedError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "datasets" / "judge-calibration"


def test_shipped_set_is_balanced_and_paired():
    items = read_calibration(SHIPPED)
    assert len(items) == 24
    assert Counter(it["faithful"] for it in items) == {1: 12, 0: 12}
    by_context = Counter(json.dumps(it["contexts"]) for it in items)
    assert set(by_context.values()) == {2}          # each context once faithful, once not
    for ctx in by_context:
        labels = sorted(it["faithful"] for it in items if json.dumps(it["contexts"]) == ctx)
        assert labels == [0, 1]
    assert "How it was made" in (SHIPPED / "README.md").read_text()


class LabelJudge:
    """Stand-in judge: answers with a fixed function of the item (the arithmetic is under test)."""

    def __init__(self, items, fn):
        self.by_answer = {it["answer"]: fn(it) for it in items}

    async def ascore(self, user_input, response, retrieved_contexts):
        await asyncio.sleep(0)
        return self.by_answer[response]


def test_eval_rag_calibrates_on_the_shipped_set_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert check_calibration_path(None).resolve() == SHIPPED.resolve()     # `honed eval rag`'s default
    monkeypatch.chdir(tmp_path)
    assert check_calibration_path(None) is None                            # a project without the shipped set
    assert check_calibration_path("none") is None and check_calibration_path("NONE") is None
    assert check_calibration_path(tmp_path / "mine") == tmp_path / "mine"


def test_agreement_accuracy_kappa_and_intervals():
    items = read_calibration(SHIPPED)
    perfect = judge_agreement(LabelJudge(items, lambda it: float(it["faithful"])), items, n_boot=200)
    assert perfect["accuracy"] == 1.0 and perfect["kappa"] == 1.0 and perfect["accuracy_ci"] == [1.0, 1.0]
    yes_man = judge_agreement(LabelJudge(items, lambda it: 1.0), items, n_boot=200)
    assert yes_man["accuracy"] == 0.5 and yes_man["kappa"] == 0.0      # agrees as often as chance: kappa 0
    assert yes_man["confusion"] == {"human 1 / judge 1": 12, "human 1 / judge 0": 0,
                                    "human 0 / judge 1": 12, "human 0 / judge 0": 0}
    lo, hi = yes_man["accuracy_ci"]
    assert lo < 0.5 < hi
    nan_judge = judge_agreement(LabelJudge(items, lambda it: float("nan")), items, n_boot=50)
    assert nan_judge["unscored"] == 24 and nan_judge["accuracy"] == 0.0   # unscored never counts as agreement


def test_bad_calibration_files_are_one_line_errors(tmp_path):
    f = tmp_path / "cal.jsonl"
    good = {"question": "q?", "contexts": ["c"], "answer": "a", "faithful": 1}
    for bad, msg in [({**good, "faithful": True}, "'faithful' must be 0 or 1"),
                     ({**good, "contexts": "c"}, "'contexts' must be a non-empty list"),
                     ({**good, "answer": ""}, "'answer' must be a non-empty string")]:
        f.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(HonedError, match=rf"cal.jsonl:2: {msg}"):
            read_calibration(f)
    with pytest.raises(HonedError, match="no such file"):
        read_calibration(tmp_path / "missing")


def _rag_report(tmp_path, kappa=None) -> Path:
    """A RAG report as `honed eval rag` writes it (two systems, per-query samples), optionally calibrated."""
    def samples(faith, rouge):
        return [{"query_id": f"q{i}", "faithfulness": f, "rouge_l": r} for i, (f, r) in enumerate(zip(faith, rouge))]
    base = samples([0.9] * 6, [0.30] * 6)
    tuned = samples([0.5] * 6, [0.31, 0.32, 0.33, 0.34, 0.35, 0.36])
    doc = {"schema": "honed.rag-report/2", "kind": "rag", "dataset": "datasets/cuad-qa", "baseline": "base",
           "systems": {n: {"metrics": {"faithfulness": sum(x["faithfulness"] for x in s) / 6,
                                       "rouge_l": sum(x["rouge_l"] for x in s) / 6}, "samples": s}
                       for n, s in (("base", base), ("tuned", tuned))}}
    if kappa is not None:
        doc["judge_calibration"] = {"n": 24, "kappa": kappa, "accuracy": 0.8}
    p = tmp_path / f"rag-{kappa}.json"
    p.write_text(json.dumps(doc))
    return p


GATE = """candidate = "tuned"
baseline = "base"
[thresholds]
faithfulness = 0.8
[non_regression.faithfulness]
max_drop = 0.0
[non_regression.rouge_l]
max_drop = 0.0
"""


def _gate(report, cfg_text, tmp_path):
    cfg = tmp_path / "gate.toml"
    cfg.write_text(cfg_text)
    return subprocess.run([sys.executable, "-m", "honed.app.cli", "gate", "--report", str(report), "--config",
                           str(cfg)], capture_output=True, text=True, cwd=REPO)


def test_gate_on_rag_report_judged_metrics_advisory_unless_the_judge_is_calibrated(tmp_path):
    from honed.rag_eval.gate import gate_passed, run_gate

    cfg = tmp_path / "g.toml"
    cfg.write_text(GATE)
    checks = run_gate(_rag_report(tmp_path), cfg)
    judged = [c for c in checks if c.metric == "faithfulness"]
    assert judged and all(c.advisory and not c.passed for c in judged)       # failing, but only advisory
    rouge = [c for c in checks if c.metric == "rouge_l"]
    assert rouge and all(c.passed and not c.advisory for c in rouge)
    assert gate_passed(checks)
    run = _gate(_rag_report(tmp_path), GATE, tmp_path)
    assert run.returncode == 0 and "advisory" in run.stdout, run.stdout

    floor = GATE + "[judge]\nmin_kappa = 0.4\n"
    low = _gate(_rag_report(tmp_path, kappa=0.1), floor, tmp_path)        # judge below the floor: still advisory
    assert low.returncode == 0, low.stdout
    high = _gate(_rag_report(tmp_path, kappa=0.6), floor, tmp_path)       # calibrated judge: the drop fails
    assert high.returncode == 1 and "gate failed" in high.stdout, high.stdout

    bad = _gate(_rag_report(tmp_path), GATE + "[judge]\nmin_kapa = 0.4\n", tmp_path)
    assert bad.returncode == 2 and "unknown key judge.min_kapa" in bad.stderr


def test_gate_on_a_report_without_a_judge_shows_judged_rules_as_not_measured(tmp_path):
    from honed.rag_eval.gate import gate_passed, run_gate

    doc = json.loads(_rag_report(tmp_path).read_text())
    doc["judge"] = "none"          # `honed eval rag --judge none` (the demo's answers): no judged metric at all
    for s in doc["systems"].values():
        s["metrics"].pop("faithfulness")
        for x in s["samples"]:
            x.pop("faithfulness")
    (tmp_path / "none.json").write_text(json.dumps(doc))
    cfg = tmp_path / "g.toml"
    cfg.write_text(GATE)
    checks = run_gate(tmp_path / "none.json", cfg)
    assert [(c.rule, c.metric) for c in checks if c.metric == "faithfulness"] == [("not_measured", "faithfulness")]
    assert all(c.advisory for c in checks if c.rule == "not_measured")
    assert [c.passed for c in checks if c.metric == "rouge_l"] == [True] and gate_passed(checks)
    doc["systems"]["tuned"]["samples"][0]["rouge_l"] = 0.0          # the judge-free rule still fails a drop
    (tmp_path / "none.json").write_text(json.dumps(doc))
    run = _gate(tmp_path / "none.json", GATE, tmp_path)
    assert run.returncode == 1 and "gate failed: 1 of 2 checks" in run.stdout, run.stdout


def test_shipped_rag_gate_config_is_valid():
    from honed.rag_eval.gate import load_gate_config

    cfg = load_gate_config(REPO / "gate-rag.toml")
    assert cfg["judge"]["min_kappa"] == 0.4 and "faithfulness" in cfg["non_regression"]
