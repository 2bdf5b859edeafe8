"""The results dashboard: model versions, evaluation reports, training curves, feedback, diagnoses, drill-down.

Everything it shows comes from :mod:`honed.app.dashboard`; passages and queries are
shown as plain text (``st.text``, dataframes), never as Markdown or HTML.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from honed.app import dashboard as db
from honed.retriever.display import markdown_literal

from .common import feedback_store


def render(cfg: dict) -> None:
    st.title("Results dashboard")
    reports = db.find_reports(cfg.get("reports") or ["reports"])
    versions = db.model_versions(cfg.get("runs_dir", "runs"))
    st.caption(f"{len(reports)} reports under {', '.join(map(str, cfg.get('reports') or ['reports']))} · "
               f"{len(versions)} registered model versions in `{cfg.get('runs_dir', 'runs')}`")
    _versions(versions, reports)
    beir = [r for r in reports if r.kind == "beir"]
    _reports(reports)
    _curves(db.run_folders(reports, versions))
    if cfg.get("feedback"):
        _feedback(cfg)
    diagnoses = db.find_diagnoses(cfg.get("reports") or ["reports"])
    if diagnoses:
        _diagnoses(diagnoses)
    if beir:
        _drilldown(beir)


def _diagnoses(diagnoses) -> None:
    st.header("Diagnosis and concept confusions")
    rep = diagnoses[st.selectbox("Diagnosis", range(len(diagnoses)), key="dg_rep",
                                 format_func=lambda i: f"{diagnoses[i].path.parent.name}: "
                                                       f"{diagnoses[i].doc.get('model', '?')}")]
    doc = rep.doc
    st.caption(f"`{markdown_literal(str(rep.path))}` · {markdown_literal(doc.get('model', ''))} vs "
               f"{markdown_literal(doc.get('baseline', ''))} on {markdown_literal(doc.get('data', ''))}")
    st.dataframe(db.finding_rows(doc), hide_index=True)
    if not doc.get("confusion"):
        return
    dataset = st.selectbox("Concept confusions on", list(doc["confusion"]), key="dg_ds")
    st.text(f"concepts: {doc['confusion'][dataset]['source']}")
    png = rep.path.parent / f"confusion-{dataset}.png"
    if png.is_file():
        st.image(str(png), caption=png.name)
    pairs, concepts = db.confusion_rows(doc, dataset)
    st.caption("The pairs the baseline confuses most: share of the concept's queries with a passage of the other "
               "concept above their first relevant passage")
    st.dataframe(pairs, hide_index=True)
    st.caption("nDCG@10 per concept")
    st.dataframe(concepts, hide_index=True, height=240)


def _versions(versions, reports) -> None:
    st.header("Model versions")
    if not versions:
        st.info("No registered model versions yet (`honed retrain` registers each retrained model in MLflow).")
        return
    st.dataframe(versions, hide_index=True)
    ev = db.version_evidence(versions, reports)
    if ev:
        st.caption("Each version's scores in the reports that evaluated it, paired per query against the champion.")
        st.dataframe(ev, hide_index=True)


def _reports(reports) -> None:
    st.header("Evaluation reports")
    if not reports:
        st.info("No reports found: run `honed demo` or `honed eval beir … --out reports/NAME`.")
        return
    rep = reports[st.selectbox("Report", range(len(reports)), format_func=lambda i: reports[i].label, key="dash_rep")]
    st.caption(f"`{rep.path}` · {rep.doc.get('machine', '')}")
    if rep.kind == "beir":
        st.dataframe(db.metric_rows(rep.doc), hide_index=True)
        for row in rep.doc.get("ood_check", []):
            flag = "significant drop" if row.get("significant_drop") else "no significant drop"
            st.text(f"out-of-domain {row['dataset']}: {row['system']} vs {row['baseline']} — {flag}")
        a = rep.doc.get("answers")
        if a:     # the demo's RAG leg: the same questions answered from each retriever's passages
            st.subheader(f"Answers: {a['dataset']} ({a['n']} questions, judge {a['judge']})")
            st.dataframe(db.answer_rows(a), hide_index=True)
    else:
        cal = rep.doc.get("judge_calibration")
        if cal:
            st.text(f"judge agreement with {cal['n']} human labels: accuracy {cal['accuracy']:.3f}, "
                    f"Cohen's kappa {cal['kappa'] if cal['kappa'] is not None else '—'}")
        else:
            st.text("judge not calibrated: judged metrics (*) are advisory")
        st.dataframe(db.rag_rows(rep.doc), hide_index=True)
    pngs = sorted(rep.path.parent.glob("*.png"))
    for row in range(0, len(pngs), 3):        # the report's own plots, three to a row
        for col, png in zip(st.columns(3), pngs[row:row + 3]):
            col.image(str(png), caption=png.name)


def _curves(runs: dict[str, Path]) -> None:
    st.header("Training curves")
    if not runs:
        st.info("No run folder with a training log is named by these reports or versions.")
        return
    name = st.selectbox("Run", list(runs), key="dash_run")
    c = db.training_curve(runs[name])
    cols = st.columns(2)
    with cols[0]:
        st.caption("dev nDCG@10 by step" + (f" (base {c['base_dev_ndcg']:.3f}, best step {c['best_step']})"
                                            if c["base_dev_ndcg"] is not None else ""))
        if c["dev_ndcg"]:
            st.line_chart({"dev nDCG@10": dict(c["dev_ndcg"])})
    with cols[1]:
        st.caption("training loss by step")
        if c["loss"]:
            st.line_chart({"loss": dict(c["loss"])})


def _feedback(cfg) -> None:
    st.header("Feedback")
    ev = db.feedback_evidence(feedback_store(cfg["feedback"]))
    cols = st.columns(3)
    cols[0].metric("compared queries (answer votes)", ev["comparisons"])
    rate, ci = ev["win_rate"], ev["win_rate_ci"]
    cols[1].metric("candidate win rate", "—" if rate is None else f"{rate:.2f}",
                   help="ties count half; Wilson 95% interval below")
    cols[2].metric("95% interval", "—" if not ci else f"{ci[0]:.2f}–{ci[1]:.2f}")
    if ev["clicks"]:
        st.caption("The service's impressions, per arm")
        st.json(ev["clicks"], expanded=False)


def _drilldown(reports) -> None:
    st.header("Per-query drill-down")
    rep = reports[st.selectbox("Report ", range(len(reports)), format_func=lambda i: reports[i].label, key="dd_rep")]
    doc = rep.doc
    dataset = st.selectbox("Dataset", list(doc["datasets"]), key="dd_ds")
    systems = list(doc["datasets"][dataset]["systems"])
    base = doc.get("baseline") if doc.get("baseline") in systems else systems[0]
    others = [s for s in systems if s != base]
    if not others:
        return
    system = st.selectbox(f"System (against {base})", others, index=len(others) - 1, key="dd_sys")
    rows = db.query_deltas(doc, dataset, system, base)
    st.caption("nDCG@10 per query, biggest losses first")
    st.dataframe(rows, hide_index=True, height=240)
    qid = st.selectbox("Query", [r["query_id"] for r in rows], key="dd_q",
                       format_func=lambda q: next(f"{r['Δ']:+.3f} · {q} · {r['query'][:80]}" for r in rows
                                                  if r["query_id"] == q))
    row = next(r for r in rows if r["query_id"] == qid)
    st.text(f"Query {qid}: {row['query']}")
    if "top10" not in doc["datasets"][dataset]["systems"][system]:
        st.info("This report holds no rankings (written by an older honed): rerun `honed eval beir` to see them.")
        return
    cols = st.columns(2)
    for col, name in zip(cols, (base, system)):
        with col:
            st.subheader(f"{name} · nDCG@10 {row[name]:.3f}")
            for h in db.ranking(doc, dataset, name, qid):
                mark = ("✓ relevant (grade %d)" % h["grade"]) if h["grade"] else \
                    ("✗ judged not relevant" if h["grade"] == 0 else "· not judged")
                with st.container(border=True):
                    st.caption(f"#{h['rank']} · {markdown_literal(h['doc_id'])} · score {h['score']:.3f} · {mark}")
                    if h["text"]:
                        st.text(h["text"][:600])
