"""`honed app`, `honed dashboard`: the Streamlit pages for stakeholders."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

from .common import ADDRESS, FEEDBACK_DB, PORT, REPORTS, RUNS_DIR, app, start_streamlit

@app.command("app")
def app_cmd(baseline: str = typer.Option(..., help="index folder, or alias:NAME (MLflow registry, e.g. alias:champion)"),
            candidate: str = typer.Option(..., help="index folder, or alias:NAME (e.g. alias:challenger)"),
            corpus: Optional[Path] = typer.Option(None, help="BEIR folder the alias: systems search (test corpus)"),
            db: Optional[str] = FEEDBACK_DB,
            port: int = PORT,
            address: str = ADDRESS,
            top_k: int = typer.Option(5, help="passages per system"),
            answers: bool = typer.Option(True, help="generate answers with the LLM (off: retrieval only)"),
            llm: str = typer.Option("qwen", help="answer generator: GGUF (packaged name or path) or an OpenAI-compatible URL#model"),
            blind: bool = typer.Option(True, help="randomise and hide which side is which until the first vote"),
            max_tokens: int = typer.Option(96, help="answer length cap"),
            reports: List[Path] = REPORTS,
            runs_dir: Path = RUNS_DIR) -> None:
    """Start the side-by-side comparison app (Streamlit) with its results dashboard; votes go to the feedback store."""
    require_extra("app", "honed app")
    from honed.app.store import feedback_url

    if baseline == candidate:
        raise HonedError("--baseline and --candidate are the same system; compare two different ones")
    for name, spec in (("baseline", baseline), ("candidate", candidate)):
        if spec.startswith("alias:") and corpus is None:
            raise HonedError(f"--{name} {spec} needs --corpus (the BEIR folder whose test corpus the app searches)")
        if not spec.startswith("alias:") and not (Path(spec) / "manifest.json").exists():
            raise HonedError(f"--{name}: {spec} is not an index folder (no manifest.json)")
    if answers:
        from honed.retriever.llm.generator import is_url_spec
        from honed.retriever.models import resolve_model

        if not is_url_spec(llm):
            resolve_model(llm)      # a missing GGUF fails here in one line, not in the browser
    cfg = {"baseline": baseline, "candidate": candidate, "corpus": str(corpus) if corpus else None,
           "feedback": feedback_url(db), "top_k": top_k, "answers": answers, "llm": llm, "blind": blind,
           "max_tokens": max_tokens, "reports": [str(r) for r in reports], "runs_dir": str(runs_dir)}
    start_streamlit(cfg, address, port, "app")


@app.command("dashboard")
def dashboard_cmd(reports: List[Path] = REPORTS, runs_dir: Path = RUNS_DIR, db: Optional[str] = FEEDBACK_DB,
                  port: int = PORT, address: str = ADDRESS) -> None:
    """Start the results dashboard alone: model versions, reports, training curves, feedback, per-query drill-down."""
    require_extra("app", "honed dashboard")
    from honed.app.store import feedback_url

    cfg = {"dashboard_only": True, "feedback": feedback_url(db), "reports": [str(r) for r in reports],
           "runs_dir": str(runs_dir)}
    start_streamlit(cfg, address, port, "dashboard")
