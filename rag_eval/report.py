"""Write evaluation reports: ``report.json`` (stable schema), ``report.md`` and PNG plots.

The folder is written atomically: a reader sees the old report or the new one.

Example:
    >>> from honed.rag_eval.report import write_beir_report
    >>> paths = write_beir_report(results, "reports/demo")    # doctest: +SKIP
    >>> paths.markdown
    PosixPath('reports/demo/report.md')
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from honed.retriever.atomic import atomic_dir

from .significance import bootstrap_ci, paired_test

SCHEMA = "honed.report/1"
HEADLINE = ("NDCG@10", "Recall@100", "MRR@10", "MAP@10", "P@10")
TESTED = ("NDCG@10", "Recall@100")
ANSWERS_DIR = "answers"     # a retrieval report's RAG leg, in its own folder (a RAG report of its own)


@dataclass
class ReportPaths:
    folder: Path
    json: Path
    markdown: Path
    summary_table: object  # a rich Table for the console


def report_dict(results, baseline: str | None = None) -> dict:
    """The JSON-able report: datasets × systems × metrics, per-query scores, significance."""
    from honed.retriever import __version__

    doc = {"schema": SCHEMA, "kind": "beir",
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "honed_version": __version__,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "datasets": {}}
    for res in results:
        names = list(res.systems)
        base = baseline if baseline in res.systems else names[0]
        doc["baseline"] = base
        d = {"path": res.path, "split": res.split, "role": res.role,
             "n_queries": res.n_queries, "n_docs": res.n_docs,
             "qrels_negative_grades": res.negative_grades, "qrels": res.qrels, "queries": res.queries, "systems": {}, "significance": {}}
        for name, sr in res.systems.items():
            d["systems"][name] = {
                "kind": sr.system.kind, "model": sr.system.model, "fusion": sr.system.hybrid,
                "rerank": sr.system.rerank,
                "model_fingerprint": sr.model_fingerprint,
                "seconds": round(sr.seconds, 2), "n_empty": sr.metrics.n_empty,
                "metrics": sr.metrics.aggregate, "per_query": sr.metrics.per_query,
                # each query's top 10, for the dashboard's drill-down (why a query was won or lost)
                "top10": {q: [[d, round(s, 5)] for d, s in sorted(r.items(), key=lambda x: -x[1])[:10]]
                          for q, r in sr.run.items()},
            }
            if name != base:
                d["significance"][name] = {
                    m: paired_test({q: v[m] for q, v in res.systems[base].metrics.per_query.items()},
                                   {q: v[m] for q, v in sr.metrics.per_query.items()}, metric=m).to_dict()
                    for m in TESTED}
        doc["datasets"][res.name] = d
    doc["ood_check"] = ood_check(doc)
    return doc


def ood_check(doc: dict, alpha: float = 0.05) -> list[dict]:
    """Per out-of-domain dataset and system: nDCG@10 against the baseline, and whether it fell significantly."""
    rows = []
    for name, d in doc["datasets"].items():
        if d.get("role") != "out-of-domain":
            continue
        for system, tests in d["significance"].items():
            t = tests["NDCG@10"]
            rows.append({"dataset": name, "system": system, "baseline": doc["baseline"],
                         "baseline_ndcg@10": d["systems"][doc["baseline"]]["metrics"]["NDCG@10"],
                         "ndcg@10": d["systems"][system]["metrics"]["NDCG@10"], "delta": t["delta"],
                         "ci": [t["ci_low"], t["ci_high"]], "p_value": t["p_value"],
                         "wins": t["wins"], "ties": t["ties"], "losses": t["losses"],
                         "significant_drop": t["delta"] < 0 and t["p_value"] < alpha,
                         # with few changed queries the exact Wilcoxon test cannot reach alpha (4 changed:
                         # p ≥ 0.125), while the paired bootstrap CI can already exclude zero: say so
                         "ci_below_zero": t["ci_high"] < 0})
    return rows


def _plots(doc: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for ds_name, d in doc["datasets"].items():
        names = list(d["systems"])
        means, errs = [], [[], []]
        for n in names:
            vals = np.array([v["NDCG@10"] for v in d["systems"][n]["per_query"].values()])
            lo, hi = bootstrap_ci(vals)
            means.append(vals.mean())
            errs[0].append(vals.mean() - lo)
            errs[1].append(hi - vals.mean())
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
        ax.bar(names, means, yerr=errs, capsize=6, color=["#9aa5b1"] + ["#2f6fde"] * (len(names) - 1))
        for i, m in enumerate(means):
            ax.text(i, m / 2, f"{m:.3f}", ha="center", color="white", fontweight="bold")
        ax.set_ylabel("nDCG@10 (95% bootstrap CI)")
        ax.set_title(f"{ds_name} ({d['split']}, {d['n_queries']} queries)")
        ax.set_ylim(0, 1)
        fig.tight_layout()
        fname = f"{ds_name}-ndcg10.png"
        fig.savefig(folder / fname, dpi=110)
        plt.close(fig)
        made.append(fname)

        base = doc["baseline"]
        for n in d["significance"]:
            deltas = [d["systems"][n]["per_query"][q]["NDCG@10"] - v["NDCG@10"]
                      for q, v in d["systems"][base]["per_query"].items()]
            fig, ax = plt.subplots(figsize=(5, 3.2))
            ax.hist(deltas, bins=21, range=(-1, 1), color="#2f6fde")
            ax.axvline(0, color="black", lw=1)
            ax.set_xlabel(f"per-query nDCG@10: {n} − {base}")
            ax.set_ylabel("queries")
            s = d["significance"][n]["NDCG@10"]
            ax.set_title(f"{ds_name}: {s['wins']} wins / {s['ties']} ties / {s['losses']} losses")
            fig.tight_layout()
            fname = f"{ds_name}-delta-{n}.png"
            fig.savefig(folder / fname, dpi=110)
            plt.close(fig)
            made.append(fname)
    return made


def report_markdown(doc: dict, plots: list[str]) -> str:
    lines = ["# Retrieval evaluation", "",
             f"Created {doc['created']} on {doc['machine']}; honed {doc['honed_version']}. "
             f"Baseline for significance: **{doc['baseline']}**.", ""]
    if doc.get("ood_check"):
        lines += ["## Out-of-domain check", "",
                  "Datasets the tuned model was not trained for: fine-tuning should not make retrieval worse "
                  "there. A drop is flagged when it is significant (paired Wilcoxon, p < 0.05), and marked when the "
                  "paired bootstrap CI is below zero but too few queries changed for the test.", "",
                  f"| dataset | system | nDCG@10 ({doc['baseline']} → system) | Δ | 95% CI | p | |",
                  "|---|---|---|---:|---|---:|---|"]
        for r in doc["ood_check"]:
            lines.append(f"| {r['dataset']} | {r['system']} | {r['baseline_ndcg@10']:.4f} → {r['ndcg@10']:.4f} "
                         f"| {r['delta']:+.4f} | [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] | {r['p_value']:.2g} | "
                         + _ood_verdict(r) + " |")
        lines.append("")
    if doc.get("answers"):
        lines += answers_markdown(doc["answers"])
    for ds_name, d in doc["datasets"].items():
        role = " · out-of-domain" if d.get("role") == "out-of-domain" else ""
        lines += [f"## {ds_name} ({d['split']}: {d['n_queries']} queries, {d['n_docs']:,} docs{role})", "",
                  "| system | " + " | ".join(HEADLINE) + " | time (s) |",
                  "|---|" + "---:|" * (len(HEADLINE) + 1)]
        for name, s in d["systems"].items():
            lines.append(f"| {name} | " + " | ".join(f"{s['metrics'][m]:.4f}" for m in HEADLINE)
                         + f" | {s['seconds']:.1f} |")
        if d["significance"]:
            lines += ["", f"Paired Wilcoxon signed-rank vs **{doc['baseline']}** (per query):", "",
                      "| system | metric | Δ mean | 95% CI | wins / ties / losses | p |",
                      "|---|---|---:|---|---|---:|"]
            for name, tests in d["significance"].items():
                for m, t in tests.items():
                    lines.append(f"| {name} | {m} | {t['delta']:+.4f} | [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] "
                                 f"| {t['wins']} / {t['ties']} / {t['losses']} | {t['p_value']:.2g} |")
        lines += [""] + [f"![{p}]({p})" for p in plots if p.startswith(ds_name + "-")] + [""]
    return "\n".join(lines)


def answers_markdown(a: dict) -> list[str]:
    """The answers section: each system's paired comparison with the baseline on the judge-free metrics."""
    from .rag_report import test_row

    lines = [f"## Answers: {a['dataset']} ({a['n']} questions)", "",
             f"Each retriever's top {a['top_k']} passages go to the same generator (`{a['llm']}`, greedy); its answer "
             f"is scored against the reference answer and the judged passages"
             + (" without a judge" if a["judge"] == "none" else f", judge `{a['judge']}`")
             + f". Paired per question against **{a['baseline']}** (95% bootstrap CI, Wilcoxon p). "
             f"Every answer: [{a['report']}]({a['report']}).", ""]
    for name, tests in a["tests"].items():
        lines += [f"| {name} vs {a['baseline']} | {a['baseline']} | {name} | Δ | 95% CI | w/t/l | p | n |",
                  "|---|---:|---:|---:|---|---|---:|---:|"]
        lines += ["| " + " | ".join(test_row(m, t)) + " |" for m, t in tests.items()]
        lost = [m for m, t in tests.items() if t["delta"] < 0 and t["p_value"] < 0.05]
        lines += ["", f"**{name} answers significantly worse on {', '.join(lost)}.**" if lost else
                  f"No significant loss of {name}'s answers on any metric (p < 0.05)."]
    return lines + ["", f"![answers]({ANSWERS_DIR}/rag-paired.png)", ""]


def _ood_verdict(r: dict) -> str:
    if r["significant_drop"]:
        return "**significant drop**"
    if r.get("ci_below_zero"):
        return (f"**drop**: CI below zero, but only {r['wins'] + r['losses']} queries changed "
                f"(too few for the Wilcoxon test)")
    return "no significant drop"


def _summary_table(doc: dict):
    from honed.retriever.display import DataTable

    t = DataTable("dataset", "system", "nDCG@10", "Recall@100", "Δ nDCG@10", "p")
    for ds_name, d in doc["datasets"].items():
        shown = ds_name + (" (out-of-domain)" if d.get("role") == "out-of-domain" else "")
        for name, s in d["systems"].items():
            sig = d["significance"].get(name, {}).get("NDCG@10")
            t.add_row(shown, name, f"{s['metrics']['NDCG@10']:.4f}", f"{s['metrics']['Recall@100']:.4f}",
                      f"{sig['delta']:+.4f}" if sig else "—", f"{sig['p_value']:.2g}" if sig else "—")
    return t


def answers_summary(rag_doc: dict, folder: str = ANSWERS_DIR) -> dict:
    """What a retrieval report keeps of a RAG report (:func:`rag_eval.rag.evaluate_rag`): the set, the
    generator, and each system's paired tests against the baseline; the samples stay in ``folder``."""
    return {"report": f"{folder}/report.md", "dataset": rag_doc["dataset"], "n": rag_doc["n"],
            "top_k": rag_doc["top_k"], "llm": rag_doc["llm"], "judge": rag_doc["judge"],
            "baseline": rag_doc["baseline"],
            "tests": {name: c["tests"] for name, c in rag_doc["comparison"].items()}}


def write_beir_report(results, out: str | os.PathLike, baseline: str | None = None,
                      force: bool = False, answers: dict | None = None) -> ReportPaths:
    """Write report.json, report.md and plots for `results` into the folder `out`; with `answers` (a RAG
    report's dict), its full report goes to ``out/answers`` and its paired comparison into this one."""
    doc = report_dict(results, baseline)
    out = Path(out)
    with atomic_dir(out, kind="report", force=force) as tmp:
        if answers is not None:
            from .rag_report import write_rag_report

            write_rag_report(answers, tmp / ANSWERS_DIR)
            doc["answers"] = answers_summary(answers)
        plots = _plots(doc, tmp)
        doc["plots"] = plots
        (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(report_markdown(doc, plots), encoding="utf-8")
    return ReportPaths(out, out / "report.json", out / "report.md", _summary_table(doc))


def log_report_to_mlflow(doc: dict, report_dir: str | os.PathLike, runs_dir: str | os.PathLike = "runs") -> str | None:
    """Log an evaluation report as an MLflow run, linked (tag + parent) to the model's training run.

    The link is found through the ``honed.model_fingerprint`` tag each training
    run carries; returns the eval run id.
    """
    import mlflow

    from honed.retriever.finetune.tracking import start_run

    fps = {s.get("model_fingerprint") for d in doc["datasets"].values() for s in d["systems"].values()} - {None}
    with start_run(runs_dir, f"eval-{Path(report_dir).name}") as run:
        client = mlflow.tracking.MlflowClient()
        linked = []
        for fp in sorted(fps):
            hits = client.search_runs([run.info.experiment_id], f"tags.`honed.model_fingerprint` = '{fp}'")
            linked += [h.info.run_id for h in hits if h.info.run_id != run.info.run_id]
        mlflow.set_tags({"honed.kind": "eval", "honed.report": str(Path(report_dir).resolve()),
                         "honed.linked_model_runs": ",".join(linked)})
        if len(linked) == 1:
            mlflow.set_tag("mlflow.parentRunId", linked[0])
        for ds, d in doc["datasets"].items():
            for sysname, s in d["systems"].items():
                mlflow.log_metrics({f"{ds}.{sysname}.{m.replace('@', '_at_')}": float(v)
                                    for m, v in s["metrics"].items()})
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        return run.info.run_id
