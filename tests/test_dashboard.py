"""The results dashboard: its data on a real report (real BM25 and MiniLM on the SciFact slice), its page, and the demo.

The last test reads the demo's own report and run (`make test-demo`, after `make ci-gate`):
it is marked `demo` and runs in neither the fast nor the slow tier, because a test must not
depend on outputs a previous job left behind unless the job that made them is named.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import SCIFACT, StreamlitCli, chromium
from honed.app import dashboard as db

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.report import write_beir_report

    root = tmp_path_factory.mktemp("dash")
    res = evaluate_systems([str(SCIFACT)], [parse_system("bm25"), parse_system("base=minilm")],
                           index_dir=root / "idx")
    write_beir_report(res, root / "reports" / "slice", baseline="bm25")
    return root / "reports"


def test_report_rows_deltas_and_rankings(report_dir):
    reports = db.find_reports([report_dir, report_dir / "slice" / "report.json"])   # found once
    assert len(reports) == 1 and reports[0].kind == "beir"
    doc = reports[0].doc
    rows = db.metric_rows(doc)
    base = next(r for r in rows if r["system"] == "base")
    assert base["NDCG@10"] == round(doc["datasets"]["scifact-slice"]["systems"]["base"]["metrics"]["NDCG@10"], 4)
    assert "Δ nDCG@10 vs bm25" in base and base["w/t/l"].count("/") == 2

    deltas = db.query_deltas(doc, "scifact-slice", "base", "bm25")
    assert [r["Δ"] for r in deltas] == sorted(r["Δ"] for r in deltas)       # biggest losses first
    assert len(deltas) == doc["datasets"]["scifact-slice"]["n_queries"] and all(r["query"] for r in deltas)
    worst = deltas[0]
    top = db.ranking(doc, "scifact-slice", "base", worst["query_id"])
    qrels = doc["datasets"]["scifact-slice"]["qrels"][worst["query_id"]]
    assert len(top) == 10 and [h["rank"] for h in top] == list(range(1, 11))
    assert all(h["grade"] == qrels.get(h["doc_id"]) and h["text"] for h in top)
    assert [h["score"] for h in top] == sorted((h["score"] for h in top), reverse=True)


def test_training_curve_from_a_run_folder(tmp_path):
    # the two files a fine-tune writes (sentence-transformers' log history and honed.json), in their formats
    (tmp_path / "log_history.json").write_text(json.dumps([
        {"loss": 2.1, "step": 10}, {"eval_dev_cosine_ndcg@10": 0.61, "step": 20}, {"loss": 1.4, "step": 20}]))
    (tmp_path / "honed.json").write_text(json.dumps({"status": "ok", "eval": {"base_dev_ndcg@10": 0.42,
                                                                               "best_step": 20}}))
    c = db.training_curve(tmp_path)
    assert c["loss"] == [(10, 2.1), (20, 1.4)] and c["dev_ndcg"] == [(20, 0.61)] and c["base_dev_ndcg"] == 0.42


def test_dashboard_page_renders(report_dir, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("HONED_APP_CONFIG", json.dumps({"dashboard_only": True, "reports": [str(report_dir)],
                                                       "runs_dir": str(tmp_path / "runs"),
                                                       "feedback": f"sqlite:///{tmp_path / 'fb.db'}"}))
    at = AppTest.from_file(str(REPO / "app" / "ui.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    heads = [h.value for h in at.header]
    assert heads == ["Model versions", "Evaluation reports", "Training curves", "Feedback", "Per-query drill-down"]
    captions = " ".join(c.value for c in at.caption)
    assert "relevant (grade 1)" in captions                 # the drill-down marks judged passages


def test_dashboard_shows_a_diagnosis_with_its_confusions(report_dir, tmp_path, monkeypatch):
    """A diagnosis folder (findings, confusions on real cuad-clauses labels) beside a report: its own section."""
    from streamlit.testing.v1 import AppTest

    from honed.rag_eval.confusion import compare_confusions, concept_confusions, plot_confusions
    from honed.rag_eval.diagnose import finding
    from honed.retriever.data import load_beir
    from honed.retriever.data.concepts import concept_labels

    ds = load_beir(REPO / "datasets" / "cuad-clauses", "test")
    labels = concept_labels(ds)
    q = "cap-on-liability-4"
    rel = sorted(d for d, g in ds.qrels[q].items() if g > 0)[0]
    other = next(d for d in sorted(labels.docs) if labels.query[q] not in labels.docs[d])
    by_sys = {"base": concept_confusions(ds, {q: {other: 0.9, rel: 0.5}}, labels, {q: {"NDCG@10": 0.63}}),
              "tuned": concept_confusions(ds, {q: {rel: 0.9, other: 0.5}}, labels, {q: {"NDCG@10": 1.0}})}
    diag = tmp_path / "reports" / "diagnose"
    diag.mkdir(parents=True)
    plot_confusions(by_sys, diag / "confusion-cuad-clauses.png")
    doc = {"kind": "diagnosis", "model": "runs/demo", "baseline": "minilm", "data": "datasets/cuad-clauses",
           "findings": [finding("evaluation", 0.9, "The tuned model confuses which [contract] a passage is from",
                                {"x": 1}, "honed data synth --corpus datasets/cuad-qa")],
           "confusion": {"cuad-clauses": {"source": labels.source, "compare": compare_confusions(by_sys, "base"),
                                          "per_concept": {s: v["per_concept"] for s, v in by_sys.items()}}}}
    (diag / "diagnosis.json").write_text(json.dumps(doc))
    monkeypatch.setenv("HONED_APP_CONFIG", json.dumps({"dashboard_only": True,
                                                       "reports": [str(report_dir), str(tmp_path / "reports")],
                                                       "runs_dir": str(tmp_path / "runs")}))
    at = AppTest.from_file(str(REPO / "app" / "ui.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert "Diagnosis and concept confusions" in [h.value for h in at.header]
    frames = [f.value for f in at.dataframe]
    findings = next(f for f in frames if "finding" in f.columns)
    assert findings["finding"].tolist() == ["The tuned model confuses which [contract] a passage is from"]
    pairs = next(f for f in frames if "outranked by" in f.columns)
    assert pairs["query concept"].tolist()[0] == "Cap On Liability" and pairs["base"].tolist()[0] == 1.0
    assert pairs["tuned"].tolist()[0] == 0.0
    assert any(t.value == f"concepts: {labels.source}" for t in at.text)


@pytest.mark.demo
def test_dashboard_on_the_demo_in_a_real_browser(tmp_path):
    """`make test-demo`: the dashboard on the demo's report (HONED_DEMO_REPORT) and run, screenshot kept."""
    from playwright.sync_api import sync_playwright

    report = Path(os.environ.get("HONED_DEMO_REPORT", "reports/ci"))
    runs = Path(os.environ.get("HONED_DEMO_RUNS", "runs"))
    if not (report / "report.json").is_file():
        pytest.fail(f"{report}/report.json is missing: run `make ci-gate` (the demo) first")
    diagnosis = report.parent / f"{report.name}-diagnose"        # `make ci-gate` runs `honed diagnose` into it
    if not (diagnosis / "diagnosis.json").is_file():
        pytest.fail(f"{diagnosis}/diagnosis.json is missing: run `make ci-gate` first")
    app = StreamlitCli(["dashboard", "--reports", str(report), "--reports", str(diagnosis), "--runs-dir", str(runs)],
                       tmp_path / "dash.log")
    try:
        app.wait_healthy(120)
        with sync_playwright() as pw:
            browser = chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 4200})
            page.goto(app.url)
            page.get_by_text("Per-query drill-down").wait_for(timeout=120_000)
            page.get_by_text("dev nDCG@10 by step").wait_for(timeout=60_000)     # the demo run's training curve
            page.get_by_text("out-of-domain scifact-ood").first.wait_for(timeout=60_000)
            page.get_by_text("Answers: datasets/cuad-qa (29 questions").wait_for(timeout=60_000)   # the RAG leg
            page.get_by_text("✓ relevant", exact=False).first.wait_for(timeout=60_000)
            # `make ci-gate` ran `honed diagnose` on the demo into the report folder: its section and heatmap
            page.get_by_text("Diagnosis and concept confusions").wait_for(timeout=60_000)
            page.get_by_text("concepts: query metadata 'category'").wait_for(timeout=60_000)
            page.get_by_text("confusion-cuad-clauses.png").first.wait_for(timeout=60_000)   # the heatmap's caption
            page.wait_for_timeout(3000)                                         # charts and plots finish drawing
            # beside the report folder, not in it: the demo refuses to replace a folder holding files it did not write
            shot = report.parent / f"{report.name}-dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("HONED_SCREENSHOT"):
                shutil.copy(shot, os.environ["HONED_SCREENSHOT"])
            browser.close()
    finally:
        app.stop()
