"""The release gate's pass and fail exits on a real report (built from real per-query scores)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from honed.rag_eval.gate import run_gate
from honed.retriever.errors import HonedError


def _report(tmp_path, base_scores, cand_scores):
    pq = lambda xs: {f"q{i}": {"NDCG@10": x, "Recall@100": min(1.0, x + 0.2)} for i, x in enumerate(xs)}
    mean = lambda xs: sum(xs) / len(xs)
    doc = {"schema": "honed.report/1", "kind": "beir", "baseline": "base", "datasets": {"cuad": {
        "path": "x", "split": "test", "n_queries": len(base_scores), "n_docs": 10, "significance": {},
        "systems": {"base": {"metrics": {"NDCG@10": mean(base_scores)}, "per_query": pq(base_scores)},
                    "tuned": {"metrics": {"NDCG@10": mean(cand_scores)}, "per_query": pq(cand_scores)}}}}}
    p = tmp_path / "report.json"
    p.write_text(json.dumps(doc))
    return p


GATE = """candidate = "tuned"
baseline = "base"
[thresholds]
"NDCG@10" = 0.5
[non_regression."NDCG@10"]
max_drop = 0.0
require_significant = true
alpha = 0.05
"""


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "honed.app.cli", "gate", *args], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_gate_passes_on_a_significant_gain(tmp_path):
    base = [0.3 + 0.01 * (i % 5) for i in range(40)]
    cand = [b + 0.3 for b in base]
    cfg = tmp_path / "gate.toml"
    cfg.write_text(GATE)
    checks = run_gate(_report(tmp_path, base, cand), cfg)
    assert [c.rule for c in checks] == ["threshold", "max_drop", "significant"] and all(c.passed for c in checks)
    p = _cli("--report", str(tmp_path / "report.json"), "--config", str(cfg))
    assert p.returncode == 0 and "gate passed" in p.stdout


def test_gate_fails_on_regression_with_a_readable_table(tmp_path):
    base = [0.6 + 0.01 * (i % 5) for i in range(40)]
    cand = [b - 0.05 for b in base]
    cfg = tmp_path / "gate.toml"
    cfg.write_text(GATE)
    failed = [c for c in run_gate(_report(tmp_path, base, cand), cfg) if not c.passed]
    assert {c.rule for c in failed} == {"max_drop", "significant"}
    p = _cli("--report", str(tmp_path / "report.json"), "--config", str(cfg))
    assert p.returncode == 1 and "FAIL" in p.stdout and "gate failed: 2 of 3 checks" in p.stdout


def test_gate_bad_inputs(tmp_path):
    rep = _report(tmp_path, [0.5] * 5, [0.6] * 5)
    cfg = tmp_path / "gate.toml"
    cfg.write_text('candidate = "nope"\n[thresholds]\n"NDCG@10" = 0.1\n')
    with pytest.raises(HonedError, match="system 'nope' is not in the report"):
        run_gate(rep, cfg)
    cfg.write_text('candidate = "tuned"\n[thresholds]\n"nDCG@10" = 0.1\n')
    with pytest.raises(HonedError, match="metric 'nDCG@10' not in report"):
        run_gate(rep, cfg)
    cfg.write_text('candidate = "tuned"\ncandidat = 1\n')
    with pytest.raises(HonedError, match="unknown key"):
        run_gate(rep, cfg)
    cfg.write_text('candidate = "tuned"\n[thresholds]\n"NDCG@10" = 0.1\n')
    p = _cli("--report", str(tmp_path / "missing.json"), "--config", str(cfg))
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and "report not found" in p.stderr
