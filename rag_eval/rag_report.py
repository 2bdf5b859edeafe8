"""Write a RAG evaluation report: the paired comparison first, absolute scores second.

``report.json`` (schema ``honed.rag-report/2``), ``report.md``, ``rag-paired.png``
(each metric's mean per-query delta against the baseline with its 95% bootstrap CI)
and ``rag-metrics.png`` (absolute means per system). The folder is written atomically.

Example:
    >>> from honed.rag_eval.rag_report import write_rag_report
    >>> write_rag_report(doc, "reports/rag")     # doctest: +SKIP
    PosixPath('reports/rag/report.md')
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from honed.retriever.atomic import atomic_dir

from .rag_metrics import JUDGE_TRUST_MIN, JUDGED, metric_order


def _fmt(v, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def _paired_plot(doc: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, m, c["tests"][m]) for name, c in doc["comparison"].items() for m in metric_order(doc)
            if m in c["tests"]]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    deltas = [t["delta"] for _, _, t in rows]
    err = [[t["delta"] - t["ci_low"] for _, _, t in rows], [t["ci_high"] - t["delta"] for _, _, t in rows]]
    colors = ["tab:green" if t["ci_low"] > 0 else "tab:red" if t["ci_high"] < 0 else "tab:gray" for _, _, t in rows]
    ax.barh(y, deltas, xerr=err, color=colors, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [f"{name}: {m}" + (" (judged)" if m in JUDGED else "") for name, m, _ in rows], fontsize=8)
    ax.set_xlabel(f"mean per-query delta vs {doc['baseline']} (95% CI)")
    ax.set_title(f"Paired RAG comparison ({doc['n']} queries)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _metrics_plot(doc: dict, metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["systems"])
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(metrics)), 3.6))
    width = 0.8 / max(len(names), 1)
    for i, nme in enumerate(names):
        vals = [doc["systems"][nme]["metrics"].get(m) or 0 for m in metrics]
        ax.bar(np.arange(len(metrics)) + i * width, vals, width, label=nme)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(names) - 1) / 2, metrics, fontsize=7, rotation=15)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(f"RAG metrics ({doc['n']} queries, judge {doc['judge']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_row(metric: str, t: dict) -> list[str]:
    """One metric's paired test as a table row: metric (* when judged), means, Δ, CI, w/t/l, p, n."""
    return [metric + (" *" if metric in JUDGED else ""), _fmt(t["mean_a"]), _fmt(t["mean_b"]), f"{t['delta']:+.3f}",
            f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]", f"{t['wins']}/{t['ties']}/{t['losses']}",
            f"{t['p_value']:.3g}", str(t["n"])]


def paired_rows(doc: dict, system: str) -> list[list[str]]:
    """One system's comparison rows (also printed by the CLI), in the report's metric order."""
    tests = doc["comparison"][system]["tests"]
    return [test_row(m, tests[m]) for m in metric_order(doc) if m in tests]


def write_rag_report(doc: dict, out: str | os.PathLike, force: bool = False) -> Path:
    out = Path(out)
    order = metric_order(doc)
    with atomic_dir(out, kind="rag-report", force=force) as tmp:
        has_paired = _paired_plot(doc, tmp / "rag-paired.png")
        _metrics_plot(doc, order, tmp / "rag-metrics.png")
        (tmp / "report.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        L = [f"# RAG evaluation: {doc['dataset']}", "",
             f"{doc['n']} test queries ({doc['with_reference']} with a reference answer, {doc['with_decision']} with "
             f"a labelled yes/no), top-{doc['top_k']} contexts, generator `{doc['llm']}`, judge `{doc['judge']}`, "
             f"embedder `{doc['embedder']}`.", ""]
        if doc.get("llama_cpp"):      # native code takes CPU-specific paths: say which ran the local model
            b = doc["llama_cpp"]
            L += [f"Machine: {doc.get('machine', '?')}; llama-cpp-python {b['llama_cpp_python']}, extra buffers "
                  f"{'on' if b['extra_buffers'] else 'off'}; build: `{b['system_info']}`.", ""]
        if doc["judge"] == "none":
            L += ["> **No judge** (`--judge none`): only the metrics that need none were computed.", ""]
        elif not doc["judge_trustworthy"]:
            L += [f"> **Judge flagged as untrustworthy**: it ranked answers against their own contexts above "
                  f"swapped-context ones less than {JUDGE_TRUST_MIN:.0%} of the time. The metrics that need no "
                  f"judge come first; treat the judged ones (*) as noise.", ""]
        cal = doc.get("judge_calibration")
        if cal:
            L += ["## Judge calibration", "",
                  f"Against {cal['n']} human faithfulness labels (`{cal['path']}`, {cal['positives']} faithful): "
                  f"accuracy **{_fmt(cal['accuracy'])}** (95% CI {_fmt(cal['accuracy_ci'][0])}–"
                  f"{_fmt(cal['accuracy_ci'][1])}), Cohen's kappa **{_fmt(cal['kappa'])}**"
                  + (f" (95% CI {_fmt(cal['kappa_ci'][0])}–{_fmt(cal['kappa_ci'][1])})" if cal["kappa_ci"] else "")
                  + f"; {cal['unscored']} not scored; judge faithfulness ≥ {cal['threshold']} read as faithful. "
                  "Kappa near 0 means the judge agrees with people no more than chance: read the judged "
                  "metrics (*) below with that in mind.", "",
                  "| | judge faithful | judge unfaithful |", "|---|---:|---:|",
                  f"| human faithful | {cal['confusion']['human 1 / judge 1']} | {cal['confusion']['human 1 / judge 0']} |",
                  f"| human unfaithful | {cal['confusion']['human 0 / judge 1']} | "
                  f"{cal['confusion']['human 0 / judge 0']} |", ""]
        for m in doc.get("constant_metrics", []):
            L += [f"> **{m} is the same for every answer** of every system: it does not tell answers apart "
                  f"here (with this judge), so its numbers below carry no information.", ""]
        if has_paired:
            L += [f"## Paired comparison against `{doc['baseline']}`", "",
                  "Same questions through each retriever; Δ is the mean per-query difference, CI a 95% bootstrap "
                  "interval, w/t/l the queries won, tied and lost, p a two-sided Wilcoxon signed-rank test, n the "
                  "queries both systems have a score for. Judged metrics are marked *.", ""]
            for name in doc["comparison"]:
                L += [f"| {name} vs {doc['baseline']} | {doc['baseline']} | {name} | Δ | 95% CI | w/t/l | p | n |",
                      "|---|---:|---:|---:|---|---|---:|---:|"]
                L += ["| " + " | ".join(r) + " |" for r in paired_rows(doc, name)] + [""]
            L += ["![paired](rag-paired.png)", ""]
        L += ["## Scores per system", "",
              "| system | " + " | ".join(m + (" *" if m in JUDGED else "") for m in order)
              + " | judge sanity | s/sample (answer + judge + other) |",
              "|---|" + "---:|" * len(order) + "---|---:|"]
        for nme, s in doc["systems"].items():
            js, sp = s["judge_sanity"], s["seconds_per_sample_split"]
            L.append(f"| {nme} | " + " | ".join(_fmt(s["metrics"].get(m)) for m in order)
                     + f" | {_fmt(js['accuracy'])} over {js['pairs']} pairs | {s['seconds_per_sample']} "
                     f"({sp['answer']} + {sp['judge']} + {sp['unjudged']}) |")
        nan = {nme: ", ".join(f"{m} {v:.0%}" for m, v in s["nan_rate"].items() if v) or "none"
               for nme, s in doc["systems"].items()}
        L += ["", "NaN rates (the metric could not be computed): "
              + "; ".join(f"{nme}: {v}" for nme, v in nan.items()) + ".", "",
              "![metrics](rag-metrics.png)", "", f"Cache: {doc['cache']['hits']} hits, {doc['cache']['misses']} misses."]
        if doc.get("judge_seconds"):
            L += ["", "Judge time by call (uncached calls, sanity check included): "
                  + ", ".join(f"{k} {v} s" for k, v in doc["judge_seconds"].items()) + "."]
        L.append("")
        (tmp / "report.md").write_text("\n".join(L))
    return out / "report.md"
