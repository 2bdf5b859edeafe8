"""`honed data`: build, audit and synthesise datasets."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from honed.retriever.extras import require_extra
from honed.retriever.finetune.config import FILTER_POOL

from .common import FORCE, FORCE_FILE, app, check_new_file, console

data_app = typer.Typer(help="Build and audit datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("build-cuad")
def data_build_cuad(source: Path = typer.Option(..., help="CUAD v1 folder (master_clauses.csv, full_contract_txt/)"),
                    out: Path = typer.Option(Path("datasets/cuad-clauses"), help="output folder"),
                    n_train: int = typer.Option(120, help="train contracts"),
                    n_test: int = typer.Option(40, min=1, help="test contracts"),
                    force: bool = FORCE) -> None:
    """Build the cuad-clauses BEIR dataset (train/test split by contract)."""
    from honed.retriever.data.cuad import build_cuad

    with console.status("building cuad-clauses …"):
        stats = build_cuad(source, out, n_train=n_train, n_test=n_test, force=force)
    for split in ("train", "test"):
        s = stats[split]
        console.print(f"{split}: {s['contracts']} contracts, {s['passages']} passages, "
                      f"{s['queries']} queries, {s['judgements']} judgements")
    console.print(f"quotes not located: {stats['quotes_unlocated']}/{stats['quotes_total']}; card: {out / 'README.md'}")


@data_app.command("slice")
def data_slice(source: Path = typer.Option(..., help="BEIR dataset folder to cut from"),
               out: Path = typer.Option(..., help="output folder"),
               split: str = typer.Option("test", help="which split's queries"),
               queries: Optional[int] = typer.Option(None, min=1, help="the first N judged queries (default: all)"),
               distractors: int = typer.Option(2, min=0, help="unjudged BM25 passages per query, from the whole corpus"),
               force: bool = FORCE) -> None:
    """A small slice that stays hard: every gold passage plus each query's top BM25 distractors."""
    from honed.retriever.data.slices import hard_slice

    s = hard_slice(source, out, split=split, queries=queries, distractors=distractors, force=force)
    console.print(f"{out}: {s['queries']} queries, {s['passages']} passages ({s['gold']} gold, "
                  f"{s['distractors']} BM25 distractors) of {s['source_passages']}")


@data_app.command("audit")
def data_audit(data: Path = typer.Argument(..., help="BEIR dataset folder"),
               out: Path = typer.Option(None, help="report folder (default reports/audit-<name>)"),
               model: str = typer.Option("minilm", help="model for embeddings and ranks"),
               near_threshold: float = typer.Option(0.95, help="cosine at which two queries are near-duplicates"),
               clusters: Optional[int] = typer.Option(None, help="k for the topic map (default: from size)"),
               max_docs: int = typer.Option(2000, min=1, help="random passages in the label-noise pool"),
               force: bool = FORCE) -> None:
    """Leakage, coverage, lengths, label-noise hints and topic skew of a dataset."""
    require_extra("train", "honed data audit")
    from honed.rag_eval.audit import audit_dataset

    out = out or Path("reports") / f"audit-{data.resolve().name}"
    s = audit_dataset(data, out, model=model, near_threshold=near_threshold, k=clusters, max_docs=max_docs,
                      force=force)
    if "leakage" in s:
        lk = s["leakage"]
        console.print(f"leakage: {len(lk['exact'])} exact, {len(lk['near'])} near-duplicate train/test query pairs")
        console.print(f"         {lk['passages']['with_trained_passage']} of {lk['passages']['test_queries']} test queries "
                      "look for a passage that is a training positive")
        console.print(f"topics: JS divergence {s['topics']['js_divergence']}, skewed clusters {s['topics']['skewed_clusters']}")
    console.print(f"label-noise suspects: {len(s['label_noise']['suspects'])}/{s['label_noise']['positives']}")
    console.print(f"report: {out / 'report.md'}")


@data_app.command("synth")
def data_synth(corpus: Path = typer.Option(..., help="BEIR folder or corpus.jsonl (no labels needed)"),
               out: Path = typer.Option(..., help="pairs JSONL to write (feed to `honed finetune --pairs`)"),
               split: str = typer.Option("train", help="which corpus of a per-split dataset"),
               per_doc: int = typer.Option(3, help="queries asked per passage"),
               max_docs: Optional[int] = typer.Option(None, help="sample this many passages"),
               llm: str = typer.Option("qwen", help="query writer: GGUF (packaged name or path) or an "
                                            "OpenAI-compatible URL#model (key from $OPENAI_API_KEY)"),
               filter_model: str = typer.Option("minilm", help="embedder for the round-trip filter"),
               filter_pool: int = typer.Option(FILTER_POOL, min=2, help="passages each query is ranked among in the "
                                                                 "round-trip filter (its sources + random ones)"),
               force: bool = FORCE_FILE) -> None:
    """Synthetic queries from the local LLM, filtered (length, echo, duplicates, round-trip)."""
    require_extra("eval", "honed data synth")
    check_new_file(out, force)
    from honed.retriever.finetune.gpl import write_synthetic_pairs

    stats = write_synthetic_pairs(corpus, out, split=split, max_docs=max_docs, per_doc=per_doc, llm=llm,
                                  filter_model=filter_model, filter_pool=filter_pool)
    console.print(f"{stats['kept']} of {stats['candidates']} queries kept from {stats['docs']} passages "
                  f"(dropped: length {stats['length']}, copied {stats['copied']}, duplicate {stats['duplicate']}, "
                  f"round-trip {stats['inconsistent']}; unparseable {stats['unparseable']}) → {out}")
