"""`honed annotate`: human relevance labels into versioned eval sets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from honed.retriever.display import DataTable
from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

from .common import ADDRESS, FEEDBACK_DB, PORT, REPORTS, RUNS_DIR, app, check_new_file, console, start_streamlit

annotate_app = typer.Typer(help="Human relevance labels into versioned eval sets (and answer labels for the judge).",
                           invoke_without_command=True)
app.add_typer(annotate_app, name="annotate")
SET = typer.Option(..., "--set", help="name of the eval set being labelled (letters, digits, . _ -)")


@annotate_app.callback()
def annotate_cmd(ctx: typer.Context,
                 set_name: Optional[str] = typer.Option(None, "--set", help="name of the eval set being labelled"),
                 data: Optional[Path] = typer.Option(None, help="BEIR folder (or corpus.jsonl) whose corpus is searched"),
                 system: List[str] = typer.Option(["bm25", "base=minilm"], help="systems to pool: bm25 or NAME=MODEL "
                                                                                 "(repeatable; the candidate, the "
                                                                                 "baseline and BM25)"),
                 depth: int = typer.Option(10, min=1, help="pool depth: top-k of every system"),
                 queries: List[Path] = typer.Option([], help="queries to add: queries.jsonl or one per line (repeatable)"),
                 from_log: bool = typer.Option(False, "--from-log", help="add the queries people asked in the app and "
                                                                         "the service (the feedback store's log)"),
                 synthetic: List[Path] = typer.Option([], help="synthetic pairs (honed data synth) to review (repeatable)"),
                 answers: List[Path] = typer.Option([], help="RAG report.json (or calibration JSONL) whose answers "
                                                             "to label for the judge's calibration (repeatable)"),
                 out: Optional[Path] = typer.Option(None, help="where exported versions go (default evalsets/SET)"),
                 index_dir: Path = typer.Option(Path("indexes"), help="cache of the pooled systems' indexes"),
                 db: Optional[str] = FEEDBACK_DB, port: int = PORT, address: str = ADDRESS,
                 reports: List[Path] = REPORTS, runs_dir: Path = RUNS_DIR) -> None:
    """Label relevance in the app: pool the systems' top passages per query, grade 0-3, adjudicate, export."""
    require_extra("app", "honed annotate")
    if ctx.invoked_subcommand is not None:
        return
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore, feedback_url

    if not set_name:
        raise HonedError("--set NAME is required (the eval set being labelled)")
    an.check_set_name(set_name)
    if data is None:
        raise HonedError("--data DIR is required (the BEIR folder whose corpus the systems search)")
    if not (data / "corpus.jsonl").is_file() and not (data.is_file() and data.suffix == ".jsonl"):
        raise HonedError(f"--data {data}: no corpus.jsonl")
    store = FeedbackStore(db)
    added = {"file": sum(an.add_queries(store, set_name, an.read_queries(q), "file") for q in queries)}
    if from_log:
        added["log"] = an.add_queries(store, set_name, an.logged_queries(store), "log")
    added["synthetic"] = sum(an.add_queries(store, set_name, an.synthetic_queries(f), "synthetic") for f in synthetic)
    if answers:
        an.answer_items([str(a) for a in answers])     # a bad report fails here, not in the browser
    total = len(an.set_queries(store, set_name))
    console.print(f"set {set_name}: {total} queries ({', '.join(f'{v} new from {k}' for k, v in added.items() if v) or 'none new'})")
    if total == 0 and not answers:
        raise HonedError(f"set {set_name!r} has no queries: pass --queries FILE, --from-log or --synthetic FILE")
    n = an.ensure_pools(store, set_name, data, system, depth, index_dir)
    console.print(f"pooled {n} queries (top-{depth} of {', '.join(system)})")
    cfg = {"annotate": {"set": set_name, "data": str(data), "systems": system, "depth": depth,
                        "out": str(out or Path("evalsets") / set_name), "answers": [str(a) for a in answers],
                        "index_dir": str(index_dir)},
           "feedback": feedback_url(db), "reports": [str(r) for r in reports], "runs_dir": str(runs_dir)}
    start_streamlit(cfg, address, port, "annotation app")


@annotate_app.command("agreement")
def annotate_agreement(set_name: str = SET, db: Optional[str] = FEEDBACK_DB) -> None:
    """Inter-annotator agreement of a set: Cohen's kappa per pair of annotators, Fleiss' kappa, counts."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore

    store = FeedbackStore(db, create=False)
    ag = an.agreement(store, set_name)
    t = DataTable("annotators", "items", "raw agreement", "Cohen's kappa (0-3)", "kappa (grade ≥ 2)",
              title=f"{set_name}: {ag['labels']} labels on {ag['items']} passages, {len(an.disagreements(store, set_name))} disagreements")
    for p in ag["pairs"]:
        t.add_row(" / ".join(p["annotators"]), str(p["items"]), *[("—" if p[k] is None else f"{p[k]:.3f}")
                                                                 for k in ("agreement", "kappa", "kappa_binary")])
    console.print(t)
    fk = "—" if ag["fleiss_kappa"] is None else f"{ag['fleiss_kappa']:.3f}"
    console.print(f"Fleiss' kappa {fk} over {ag['fleiss_items']} items with {ag['fleiss_raters']} raters each")


@annotate_app.command("export")
def annotate_export(set_name: str = SET,
                    data: Path = typer.Option(..., help="the BEIR folder the systems searched (its corpus is copied)"),
                    out: Optional[Path] = typer.Option(None, help="versions go to OUT/v1, OUT/v2, … (default evalsets/SET)"),
                    min_annotators: int = typer.Option(1, min=1, help="export only queries with this many annotators"),
                    depth: Optional[int] = typer.Option(None, help="pool depth, for the dataset card"),
                    db: Optional[str] = FEEDBACK_DB) -> None:
    """Export a set's labels as a new version of a BEIR eval set (qrels/test.tsv) with a dataset card."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore

    path = an.export_eval_set(FeedbackStore(db, create=False), set_name, data, out or Path("evalsets") / set_name,
                              pool_depth=depth, min_annotators=min_annotators)
    card = json.loads((path / "card.json").read_text())
    console.print(f"[green]✓[/] {path}: {card['queries']} queries, {card['judged_passages']} judged passages, "
                  f"annotators {', '.join(card['annotators'])}; resolution {card['resolution']}")
    console.print(f"evaluate: honed eval beir --data {path} --system bm25 --system base=minilm --out reports/{set_name}-{path.name}")
    console.print(f"keep it out of training: honed finetune … --frozen-eval {path}")


@annotate_app.command("export-pairs")
def annotate_export_pairs(set_name: str = SET,
                          out: Path = typer.Option(..., help="pairs JSONL to write (feed to `honed finetune --pairs`)"),
                          eval_data: List[str] = typer.Option([], help="frozen eval set(s): their queries and judged "
                                                                       "passages never become training pairs"),
                          db: Optional[str] = FEEDBACK_DB) -> None:
    """Reviewed synthetic queries (accepted, as edited) with their passages as training pairs, leak-guarded."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore
    from honed.retriever.finetune.pairs import write_pairs

    check_new_file(out, False)
    pairs, stats = an.reviewed_pairs(FeedbackStore(db, create=False), set_name, eval_data)
    if not pairs:
        raise HonedError(f"set {set_name!r}: no accepted synthetic query left to export ({stats})")
    write_pairs(out, pairs)
    console.print(f"[green]✓[/] {len(pairs)} pairs → {out}  ({stats})")


@annotate_app.command("export-calibration")
def annotate_export_calibration(set_name: str = SET,
                                out: Path = typer.Option(..., help="calibration JSONL to write (for `honed eval rag "
                                                                   "--calibration`)"),
                                db: Optional[str] = FEEDBACK_DB) -> None:
    """Answer labels (faithful or not) as a judge calibration set: the majority label per answer, ties left out."""
    from honed.app import annotate as an
    from honed.app.store import FeedbackStore

    path = an.export_calibration(FeedbackStore(db, create=False), set_name, out)
    console.print(f"[green]✓[/] {path}: {sum(1 for _ in open(path, encoding='utf-8'))} labelled answers")
