"""`honed eval beir|rag`, `honed gate`, `honed demo`: measure retrievers and decide a release."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from honed.retriever.display import DataTable, styled
from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

from .common import FORCE, app, console

eval_app = typer.Typer(help="Evaluate retrievers.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("beir")
def eval_beir(data: List[str] = typer.Option(..., help="BEIR dataset folder, or a BEIR name to download (repeatable)"),
              system: List[str] = typer.Option(..., help="NAME=MODEL, or bm25 (repeatable)"),
              split: str = typer.Option("test"),
              out: Path = typer.Option(..., help="report folder"),
              ood: List[str] = typer.Option([], help="out-of-domain dataset(s): same evaluation, checked for a "
                                                     "significant drop (repeatable)"),
              max_queries: Optional[int] = typer.Option(None, min=1, help="evaluate on the first N queries"),
              index_dir: Path = typer.Option(Path("indexes"), help="where per-system indexes are cached"),
              track: bool = typer.Option(False, help="log the report to MLflow, linked to the model's training run"),
              workers: Optional[str] = typer.Option(None, help="encode corpora with one process per device: "
                                                               "cuda:0,cuda:1 | cuda:all | cpu:N"),
              force: bool = FORCE) -> None:
    """Retrieval metrics of several systems side by side; writes report.json/report.md/plots."""
    require_extra("eval", "honed eval beir")
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.retriever.encoder import parse_workers
    from honed.rag_eval.report import log_report_to_mlflow, write_beir_report
    from honed.retriever.atomic import check_writable

    systems = [parse_system(s) for s in system]
    check_writable(out, "report", force)     # before the evaluation, not after
    results = evaluate_systems([str(d) for d in data], systems, split=split,
                               max_queries=max_queries, index_dir=index_dir, ood=ood, workers=parse_workers(workers))
    paths = write_beir_report(results, out, force=force)
    console.print(paths.summary_table)
    for r in json.loads(paths.json.read_text())["ood_check"]:
        if r["significant_drop"] or r["ci_below_zero"]:
            console.print(f"[yellow]out-of-domain: {r['system']} loses {r['delta']:+.4f} nDCG@10 against "
                          f"{r['baseline']} on {r['dataset']} (p={r['p_value']:.2g})[/]")
    console.print(f"report: {paths.markdown}")
    if track:
        run_id = log_report_to_mlflow(json.loads(paths.json.read_text()), out)
        console.print(f"MLflow eval run: {run_id}")


@app.command("gate")
def gate_cmd(report: Path = typer.Option(..., help="report.json from `honed eval`"),
             config: Path = typer.Option(..., help="gate TOML (thresholds, non_regression)")) -> None:
    """Release gate: exit 0 if every check passes, 1 with a table of failures otherwise."""
    from honed.rag_eval.gate import run_gate

    checks = run_gate(report, config)
    t = DataTable("dataset", "rule", "metric", "value", "limit", "result", "detail")
    for c in checks:
        if c.rule == "not_measured":
            t.add_row(c.dataset, c.rule, c.metric, "—", "—", "not measured", c.detail)
            continue
        result = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        t.add_row(c.dataset, c.rule, c.metric, f"{c.value:.4g}", f"{c.limit:.4g}",
                  styled(f"{result} (advisory)" if c.advisory else result), c.detail)
    console.print(t)
    failed = [c for c in checks if not c.passed and not c.advisory]
    if failed:
        console.print(f"[red]gate failed[/]: {len(failed)} of {len(checks)} checks")
        raise typer.Exit(1)
    console.print(f"[green]gate passed[/]: {len(checks)} checks")


@eval_app.command("rag")
def eval_rag(data: Path = typer.Option(..., help="BEIR dataset folder (test split); a query's metadata.answer "
                                                 "(or long_answer) is its reference answer, metadata.decision its yes/no"),
             system: List[str] = typer.Option(..., help="NAME=MODEL (dense; repeatable; the first is the baseline)"),
             llm: str = typer.Option("qwen", help="answer generator: GGUF (packaged name or path) or an "
                                                  "OpenAI-compatible URL#model"),
             judge: str = typer.Option("qwen", help="local GGUF, an OpenAI-compatible URL#model, or none (judge-free "
                                                  "metrics only: reference similarity, ROUGE-L, yes/no, context ids)"),
             n: int = typer.Option(20, min=1, help="test queries to run"),
             top_k: int = typer.Option(3, min=1, help="contexts per answer"),
             out: Path = typer.Option(..., help="report folder"),
             calibration: Optional[str] = typer.Option(None, help="human-labelled faithfulness triples the judge is "
                                                                   "checked against (default: the shipped "
                                                                   "datasets/judge-calibration when present; none: skip)"),
             calibration_n: Optional[int] = typer.Option(None, min=1, help="use only the first N calibration triples"),
             index_dir: Path = typer.Option(Path("indexes"), help="where per-system indexes are cached"),
             force: bool = FORCE) -> None:
    """End-to-end RAG scored with ragas; paired comparison of the retrievers, judge sanity and calibration, NaN rates."""
    require_extra("eval", "honed eval rag")
    from honed.rag_eval.beir_eval import parse_system
    from honed.rag_eval.rag import JUDGED, evaluate_rag, metric_order
    from honed.rag_eval.rag_report import paired_rows

    systems = {}
    for spec in system:
        s = parse_system(spec)
        if s.model is None:
            raise HonedError("--system bm25 has no dense index to plug into the RAG pipeline; use NAME=MODEL")
        if s.name in systems:
            raise HonedError(f"--system {s.name} is given twice")
        systems[s.name] = s.model
    from honed.rag_eval.calibration import check_calibration_path

    cal_path = check_calibration_path(calibration) if judge.lower() != "none" or calibration else None
    doc = evaluate_rag(data, systems, n=n, out=out, llm=llm, judge=judge, top_k=top_k, force=force,
                       index_dir=index_dir, calibration=cal_path, calibration_n=calibration_n)
    order = metric_order(doc)
    t = DataTable("metric (* judged)", *doc["systems"], title=f"generator {doc['llm']}, judge {doc['judge']}")
    for m in order:
        t.add_row(m + (" *" if m in JUDGED else ""), *[f"{s['metrics'][m]:.3f}" if s["metrics"].get(m) is not None
                                                     else "—" for s in doc["systems"].values()])
    t.add_row("judge sanity", *[f"{s['judge_sanity']['accuracy']}" for s in doc["systems"].values()])
    t.add_row("s/sample", *[str(s["seconds_per_sample"]) for s in doc["systems"].values()])
    console.print(t)
    for name in doc["comparison"]:
        p = DataTable("metric", doc["baseline"], name, "Δ", "95% CI", "w/t/l", "p", "n",
                  title=f"{name} vs {doc['baseline']}, paired per query")
        for r in paired_rows(doc, name):
            p.add_row(*r)
        console.print(p)
    cal = doc.get("judge_calibration")
    if cal:
        kappa = "—" if cal["kappa"] is None else f"{cal['kappa']:.3f}"
        kci = f" (95% CI {cal['kappa_ci'][0]:.2f}–{cal['kappa_ci'][1]:.2f})" if cal["kappa_ci"] else ""
        console.print(f"judge agreement with {cal['n']} human labels ({escape(cal['path'])}): accuracy "
                      f"{cal['accuracy']:.3f} (95% CI {cal['accuracy_ci'][0]:.2f}–{cal['accuracy_ci'][1]:.2f}), "
                      f"Cohen's kappa {kappa}{kci}", highlight=False)
    elif doc["judge"] == "none":
        console.print("no judge (--judge none): only the judge-free metrics were computed")
    else:
        console.print("[yellow]judge not calibrated (no --calibration set): judged metrics (*) are advisory[/]")
    if not doc["judge_trustworthy"] and doc["judge"] != "none":
        console.print("[yellow]judge flagged as untrustworthy (sanity accuracy < 0.7): read the judge-free metrics[/]")
    for m in doc["constant_metrics"]:
        console.print(f"[yellow]{m} is the same for every answer: it does not tell answers apart here[/]")
    console.print(f"report: {out / 'report.md'}")


@app.command("demo")
def demo(data: Path = typer.Option(Path("datasets/cuad-clauses"), help="shipped dataset"),
         out: Path = typer.Option(Path("reports/demo"), help="report folder"),
         run_dir: Path = typer.Option(Path("runs/demo"), help="where the tuned model goes"),
         max_steps: int = typer.Option(60, min=1, help="fine-tuning step budget"),
         artifact: Path = typer.Option(Path("artifacts/cuad-clauses-tuned"), help="where the packaged retriever goes"),
         ood: List[Path] = typer.Option([Path("datasets/scifact-ood")],
                                        help="out-of-domain set(s) the report checks for a drop (repeatable)"),
         answers: Path = typer.Option(Path("datasets/cuad-qa"), help="questions with reference answers: base and "
                                      "tuned retrieval answer them with the local LLM, compared in the report"),
         no_answers: bool = typer.Option(False, "--no-answers",
                                         help="skip the answers (~5 min on 2 cores)")) -> None:
    """The main job on the shipped dataset: fine-tune, evaluate vs BM25 and the base model, answer, report, package."""
    require_extra("eval", "honed demo")
    from honed.rag_eval.demo import run_demo

    for flag, paths in (("--ood", ood), ("--answers", [] if no_answers else [answers])):
        missing = [str(o) for o in paths if not o.is_dir()]
        if missing:
            raise HonedError(f"{flag}: {', '.join(missing)} is not a folder (run the demo from the repository root, "
                             f"or pass {flag} DIR)")
    report = run_demo(data, out, run_dir=run_dir, artifact=artifact, finetune_overrides={"max_steps": max_steps},
                      ood=[str(o) for o in ood], answers=None if no_answers else str(answers))
    console.print(f"\n[bold]Report:[/] {report}  (Markdown with PNG plots; JSON beside it)")
    console.print(f"[bold]Tuned model:[/] {run_dir}  (training curve: {run_dir / 'training.png'})")
    console.print(f"[bold]Ship it:[/] {artifact}  (model + ONNX + FAISS + documents + this evaluation; "
                  f"`honed index info {artifact}`)")
    console.print(f"[bold]Try it:[/] honed search {artifact} \"limitation of liability\"")
    if not no_answers:
        console.print(f"[bold]Answers:[/] {out / 'answers' / 'report.md'}  (every question, both retrievers' answers)")
    console.print(f"[bold]Judged answers (optional, ~25 min):[/] honed eval rag --data {answers} --system base=minilm "
                  f"--system tuned={run_dir} --n 29 --judge qwen --out reports/rag")
    console.print(f"[bold]Why it wins or loses (~1 min):[/] honed diagnose --data {data} --model {run_dir} "
                  "--also datasets/cuad-qa --ood datasets/scifact-ood")
    console.print("[bold]Compare in the app:[/] honed app --baseline indexes/cuad-clauses-test-base "
                  "--candidate indexes/cuad-clauses-test-tuned   (then open http://127.0.0.1:8501)")
    console.print(f"[bold]Results dashboard:[/] honed dashboard --reports {out}   (per-query drill-down, training "
                  "curve; also a page of the app)")
