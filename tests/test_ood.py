"""The out-of-domain check: `honed eval beir --ood`, its report section, and the gate's [ood_non_regression],
on the shipped cuad-qa set (in-domain) and the SciFact fixture slice (out-of-domain), real BM25 and MiniLM."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import HONED, REPO, SCIFACT


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("ood") / "report"
    p = subprocess.run([HONED, "eval", "beir", "--data", str(REPO / "datasets" / "cuad-qa"), "--ood", str(SCIFACT),
                        "--system", "bm25", "--system", "base=minilm", "--out", str(out),
                        "--index-dir", str(out.parent / "idx")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


def _gate(tmp_path, report, toml: str):
    cfg = tmp_path / "gate.toml"
    cfg.write_text(toml)
    return subprocess.run([HONED, "gate", "--report", str(report / "report.json"), "--config", str(cfg)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})


def test_report_marks_and_checks_out_of_domain_sets(report):
    doc = json.loads((report / "report.json").read_text())
    assert doc["datasets"]["cuad-qa"]["role"] == "in-domain"
    assert doc["datasets"]["scifact-slice"]["role"] == "out-of-domain"
    [row] = doc["ood_check"]
    sig = doc["datasets"]["scifact-slice"]["significance"]["base"]["NDCG@10"]
    assert row["dataset"] == "scifact-slice" and row["system"] == "base" and row["delta"] == sig["delta"]
    assert row["significant_drop"] == (sig["delta"] < 0 and sig["p_value"] < 0.05)
    assert row["ci_below_zero"] == (sig["ci_high"] < 0) and row["wins"] + row["ties"] + row["losses"] == 30
    md = (report / "report.md").read_text()
    assert "## Out-of-domain check" in md and "scifact-slice (test: 30 queries, 155 docs · out-of-domain)" in md


def test_gate_ood_rule_judges_only_the_out_of_domain_sets(tmp_path, report):
    doc = json.loads((report / "report.json").read_text())
    delta = doc["ood_check"][0]["delta"]
    for max_drop in (abs(delta) + 0.01, max(0.0, -delta - 0.01)):
        p = _gate(tmp_path, report, f'candidate = "base"\nbaseline = "bm25"\n'
                                    f'[ood_non_regression."NDCG@10"]\nmax_drop = {max_drop}\n')
        assert p.returncode == (0 if delta >= -max_drop else 1), p.stdout + p.stderr
        assert "scifact-slice" in p.stdout and "cuad-qa" not in p.stdout
    # thresholds with no `datasets` apply to the in-domain sets only
    p = _gate(tmp_path, report, 'candidate = "base"\n[thresholds]\n"NDCG@10" = 0.0\n')
    assert p.returncode == 0 and "cuad-qa" in p.stdout and "scifact-slice" not in p.stdout


def test_gate_ood_rule_without_ood_data_fails_and_bad_keys_are_refused(tmp_path, report):
    doc = json.loads((report / "report.json").read_text())
    del doc["datasets"]["scifact-slice"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "report.json").write_text(json.dumps(doc))
    p = _gate(tmp_path, plain, 'candidate = "base"\nbaseline = "bm25"\n[ood_non_regression."NDCG@10"]\nmax_drop = 0.02\n')
    assert p.returncode == 1 and "no out-of-domain dataset" in p.stdout
    p = _gate(tmp_path, report, 'candidate = "base"\nbaseline = "bm25"\n[ood_non_regression."NDCG@10"]\nmax_dorp = 1\n')
    assert p.returncode == 2 and "ood_non_regression" in p.stderr and "max_dorp" in p.stderr


def test_significant_only_lets_a_noisy_drop_pass_but_not_a_significant_one(tmp_path, report):
    doc = json.loads((report / "report.json").read_text())
    row = doc["ood_check"][0]
    assert row["delta"] != 0
    # orient the pair so the candidate loses: the gate recomputes the paired test from per-query scores
    cand, base = ("base", "bm25") if row["delta"] < 0 else ("bm25", "base")
    drop = abs(row["delta"])
    for significant_only in ("true", "false"):
        p = _gate(tmp_path, report, f'candidate = "{cand}"\nbaseline = "{base}"\n[ood_non_regression."NDCG@10"]\n'
                                    f'max_drop = {drop - 0.001}\nsignificant_only = {significant_only}\n')
        fails = significant_only == "false" or row["p_value"] < 0.05
        assert p.returncode == (1 if fails else 0), p.stdout


def test_max_ci_drop_passes_only_when_the_interval_rules_the_drop_out(tmp_path, report):
    doc = json.loads((report / "report.json").read_text())
    sig = doc["datasets"]["scifact-slice"]["significance"]["base"]["NDCG@10"]
    # orient the pair so the candidate loses; the paired bootstrap of the negated differences mirrors the interval
    cand, base, low = ("base", "bm25", sig["ci_low"]) if sig["delta"] < 0 else ("bm25", "base", -sig["ci_high"])
    assert low < -0.002
    for bound, code in ((-low + 0.002, 0), (-low - 0.002, 1)):
        p = _gate(tmp_path, report, f'candidate = "{cand}"\nbaseline = "{base}"\n[ood_non_regression."NDCG@10"]\n'
                                    f'max_drop = 1.0\nmax_ci_drop = {bound}\n')
        assert p.returncode == code, p.stdout
        assert ("rules out" if code == 0 else "does not rule out") in p.stdout
