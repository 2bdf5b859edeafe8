"""`honed diagnose`: why a tuned model disappoints, as ranked findings with their evidence and a command each."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from honed.retriever.display import DataTable
from honed.retriever.extras import require_extra

from .common import FORCE, app, console


@app.command("diagnose")
def diagnose_cmd(data: Path = typer.Option(..., help="BEIR dataset folder the model was tuned for (train + test)"),
                 model: str = typer.Option(..., help="the tuned model: a run folder (its training curve is read too) "
                                                     "or any model"),
                 baseline: str = typer.Option("minilm", help="the model it is compared with"),
                 concepts: str = typer.Option("auto", help="concept labels for the confusion table: auto, "
                                                           "query:FIELD, doc:FIELD, id:REGEX or clusters[:K]"),
                 also: List[str] = typer.Option([], help="another in-domain test set, such as a QA set of the same "
                                                         "domain (repeatable)"),
                 ood: List[str] = typer.Option([], help="an out-of-domain test set: forgetting (repeatable)"),
                 db: Optional[str] = typer.Option(None, help="feedback store: compare the queries users sent with "
                                                             "the test queries"),
                 out: Path = typer.Option(Path("reports/diagnose"), help="report folder"),
                 index_dir: Path = typer.Option(Path("indexes"), help="where per-system indexes are cached"),
                 force: bool = FORCE) -> None:
    """Data, then evaluation, then model: ranked findings (report.md + JSON + confusion heatmaps)."""
    require_extra("eval", "honed diagnose")
    from honed.rag_eval.diagnose import diagnose

    logged = None
    if db:
        from honed.app.store import FeedbackStore

        logged = FeedbackStore(db, create=False).logged_queries()
    doc = diagnose(data, model, baseline=baseline, out=out, concepts=concepts, also=also, ood=ood,
                   logged_queries=logged, index_dir=index_dir, force=force)
    t = DataTable("#", "area", "severity", "finding", "act", title=f"honed diagnose: {model} vs {baseline}")
    for i, f in enumerate(doc["findings"], 1):
        t.add_row(str(i), f["area"], f"{f['severity']:.2f}", f["title"], f["action"])
    console.print(t)
    if not doc["findings"]:
        console.print("no finding: the tuned model holds against the baseline on every check")
    console.print(f"report: {Path(out) / 'diagnosis.md'}  ({doc['seconds']} s)")
