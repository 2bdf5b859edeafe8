"""Close the loop: feedback pairs + original pairs → fine-tune → evaluate → gate → promote.

The new model is registered as ``challenger`` either way (so it can be
inspected side by side in the app); it becomes ``champion`` only when
``honed gate`` passes on the frozen eval set against the current champion
(or the base model when there is none yet).

Example:
    >>> from honed.app.retrain import retrain_from_feedback
    >>> out = retrain_from_feedback("datasets/cuad-clauses", out="runs/retrain-1")   # doctest: +SKIP
    >>> out.promoted, out.version                                                    # doctest: +SKIP
    (True, '2')
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from honed.retriever.errors import HonedError

from .feedback import feedback_pairs
from .store import FeedbackStore


@dataclass
class RetrainResult:
    out: Path
    version: str | None
    promoted: bool
    gate: list = field(default_factory=list)     # rag_eval.gate.GateCheck
    report: Path | None = None
    pairs: dict = field(default_factory=dict)
    reason: str = ""


def retrain_from_feedback(data: str | os.PathLike, out: str | os.PathLike, store: FeedbackStore | None = None,
                          gate_config: str | os.PathLike = "gate.toml", runs_dir: str | os.PathLike = "runs",
                          index_dir: str | os.PathLike = "indexes", report_dir: str | os.PathLike | None = None,
                          finetune_overrides: dict | None = None, min_pairs: int = 1) -> RetrainResult:
    """Fine-tune on `data`'s train split plus every feedback pair, gate against the champion, promote on pass."""
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.gate import gate_passed, load_gate_config, run_gate
    from honed.rag_eval.report import write_beir_report
    from honed.retriever.finetune.pairs import write_pairs
    from honed.retriever.finetune import finetune
    from honed.retriever.finetune.config import finetune_config

    from .registry import alias_version, promote, register_model

    console = Console()
    store = store or FeedbackStore()
    cfg = load_gate_config(gate_config)   # read now: a bad gate file should fail before an hour of training
    out = Path(out)
    last_id = store.last_vote_id()
    pairs, stats = feedback_pairs(store, eval_data=[data])
    console.print(f"feedback: {stats['pairs']} pairs ({stats['dropped_eval_query']} dropped as eval queries, "
                  f"{stats['dropped_eval_doc']} as eval documents, {stats['conflicts']} conflicting votes)")
    champion = alias_version("champion", runs_dir)
    baseline_model = champion.tags["honed.model_dir"] if champion is not None else "minilm"
    if store.has_impressions():
        from .clicks import click_pairs

        more, cstats = click_pairs(store, baseline_model, eval_data=[data])
        pairs += more
        stats = {**stats, "clicks": cstats}
        console.print(f"clicks: {cstats['pairs']} pairs from {cstats['impressions']} impressions "
                      f"({cstats['negatives_guarded_out']} skipped results guarded out as likely positives)")
    if len(pairs) < min_pairs:
        raise HonedError(f"{store.url}: {len(pairs)} usable feedback pairs, fewer than {min_pairs}; nothing to retrain on")
    pairs_file = Path(runs_dir) / f"{out.name}-feedback-pairs.jsonl"
    pairs_file.parent.mkdir(parents=True, exist_ok=True)
    write_pairs(pairs_file, pairs)

    console.print(f"fine-tuning from {baseline_model} on {data} (train) + {pairs_file}")
    ft = finetune(finetune_config(finetune_overrides or {}, "finetune overrides", data=str(data),
                                  pairs=[str(pairs_file)], out=str(out), base=str(baseline_model)))
    version = register_model(out, runs_dir, alias="challenger", tags={"honed.feedback_pairs": len(pairs)})
    if ft.status != "ok":
        store.record_retrain({"out": str(out), "version": version, "promoted": False, "reason": ft.reason}, last_id)
        return RetrainResult(out, version, False, [], None, stats, ft.reason)

    console.print(f"evaluating {cfg['candidate']} (new) vs {cfg['baseline']} ({baseline_model}) on {data} (test)")
    systems = [parse_system(f"{cfg['baseline']}={baseline_model}"), parse_system(f"{cfg['candidate']}={out}")]
    results = evaluate_systems([str(data)], systems, split="test", index_dir=index_dir)
    paths = write_beir_report(results, report_dir or Path("reports") / out.name, baseline=cfg["baseline"])
    checks = run_gate(paths.json, gate_config)
    passed = gate_passed(checks)
    if passed:
        promote(version, runs_dir)
    reason = "gate passed: promoted to champion" if passed else \
        "gate failed: kept as challenger (" + "; ".join(f"{c.rule} {c.metric}" for c in checks if not c.passed) + ")"
    store.record_retrain({"out": str(out), "version": version, "promoted": passed, "reason": reason,
                          "report": str(paths.json), "pairs": stats}, last_id)
    return RetrainResult(out, version, passed, checks, paths.markdown, stats, reason)
