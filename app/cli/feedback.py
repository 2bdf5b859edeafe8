"""`honed feedback`, `honed retrain`: votes and clicks into training pairs, and gated promotion."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from honed.retriever.display import DataTable, shown, styled
from honed.retriever.errors import HonedError
from honed.retriever.extras import require_extra

from .common import FEEDBACK_DB, FORCE_FILE, app, check_new_file, console

feedback_app = typer.Typer(help="Votes from the app: export as training pairs, status and trigger.",
                            no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(out: Path = typer.Option(..., help="pairs JSONL to write (feed to `honed finetune --pairs`)"),
                    db: Optional[str] = FEEDBACK_DB,
                    eval_data: List[str] = typer.Option([], help="frozen eval dataset(s): their test queries and "
                                                                 "judged documents never enter training"),
                    guard_model: str = typer.Option("minilm", help="model scoring skipped results for the "
                                                                   "false-negative guard (e.g. the champion's run)"),
                    long_dwell_s: float = typer.Option(30.0, help="a click with this much dwell is a positive"),
                    relative_margin: float = typer.Option(0.05, help="guard: a negative scores ≤ (1 − margin) × "
                                                                     "the median positive"),
                    force: bool = FORCE_FILE) -> None:
    """Votes and clicks → training pairs (votes: up = positive, down = negative; clicks: see `honed.app.clicks`)."""
    check_new_file(out, force)
    from honed.app.clicks import ClickModel, click_pairs
    from honed.app.feedback import feedback_pairs
    from honed.app.store import FeedbackStore
    from honed.retriever.finetune.pairs import write_pairs

    if long_dwell_s <= 0 or not 0 <= relative_margin < 1:
        raise HonedError("--long-dwell-s must be > 0 and --relative-margin within [0, 1)")
    store = FeedbackStore(db, create=False)
    pairs, stats = feedback_pairs(store, eval_data=eval_data)
    console.print("votes: " + " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in stats.items()))
    if store.has_impressions():
        more, cstats = click_pairs(store, guard_model, eval_data=eval_data,
                                   click_model=ClickModel(long_dwell_s, relative_margin))
        pairs += more
        console.print("clicks: " + " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in cstats.items()))
    write_pairs(out, pairs)
    console.print(f"[green]✓[/] {len(pairs)} pairs → {out}")


@feedback_app.command("status")
def feedback_status_cmd(db: Optional[str] = FEEDBACK_DB,
                        eval_data: List[str] = typer.Option([], help="frozen eval dataset(s) (excluded from pairs)"),
                        min_new_pairs: int = typer.Option(50, help="trigger: new pairs since the last retrain"),
                        min_production_win_rate: float = typer.Option(0.4, help="trigger: baseline win rate floor"),
                        min_comparisons: int = typer.Option(20, help="compared queries before the win rate counts"),
                        ctr_drop: Optional[float] = typer.Option(None, help="trigger: the service's champion CTR "
                                                                           "fell this much (e.g. 0.05) …"),
                        ctr_window: str = typer.Option("24h", help="… over the last window vs the one before"),
                        ctr_min_impressions: int = typer.Option(100, help="impressions per window before CTR counts"),
                        as_json: bool = typer.Option(False, "--json", help="print JSON (for CI / cron)")) -> None:
    """Votes, win rate and the service's CTR/MRR per arm with 95% CIs; exit 3 if retraining should start."""
    from dataclasses import asdict

    from honed.app.feedback import TriggerConfig, feedback_status
    from honed.app.store import FeedbackStore
    from honed.retriever.finetune.budget import parse_duration

    if ctr_drop is not None and not 0 < ctr_drop < 1:
        raise HonedError(f"--ctr-drop must be within (0, 1), got {ctr_drop}")
    trig = TriggerConfig(min_new_pairs, min_production_win_rate, min_comparisons, ctr_drop,
                         parse_duration(ctr_window, "--ctr-window"), ctr_min_impressions)
    st = feedback_status(FeedbackStore(db, create=False), trig, eval_data=eval_data)
    if as_json:
        print(json.dumps(asdict(st), indent=2))
    else:
        t = DataTable("", "")
        t.add_row("votes (rows / effective)", f"{st.votes} / {st.effective_votes}")
        t.add_row("sessions · queries", f"{st.sessions} · {st.queries}")
        t.add_row("answer · passage votes", f"{st.by_target['answer']} · {st.by_target['passage']}")
        t.add_row("training pairs (new since last retrain)", f"{st.pairs} ({st.new_pairs})")
        rate = "—" if st.candidate_win_rate is None else \
            f"{st.candidate_win_rate:.2f}  95% CI [{st.win_rate_ci[0]:.2f}, {st.win_rate_ci[1]:.2f}]"
        t.add_row("candidate win rate", f"{rate}  ({st.candidate_wins}/{st.ties}/{st.baseline_wins} w/t/l)")
        for arm, m in (st.clicks or {}).get("arms", {}).items():
            t.add_row(f"service · {arm}", f"{m['impressions']} impressions · CTR {_with_ci(m['ctr'], m['ctr_ci'])}"
                                          f" · MRR {_with_ci(m['mrr'], m['mrr_ci'])}")
        if st.clicks and "interleaving" in st.clicks:
            il = st.clicks["interleaving"]
            t.add_row("service · interleaved", f"challenger preferred {_with_ci(il['challenger_preference'], il['preference_ci'])}"
                      f" ({il['challenger_wins']}/{il['ties']}/{il['champion_wins']} w/t/l, sign test p "
                      f"{il['sign_test_p'] if il['sign_test_p'] is not None else '—'})")
        if st.ctr_trigger:
            c = st.ctr_trigger
            t.add_row("champion CTR (window before → last)",
                      f"{c['previous']['ctr']} → {c['last']['ctr']}" if c["enough_impressions"] else
                      f"fewer than {ctr_min_impressions} impressions in a window "
                      f"({c['previous']['impressions']} → {c['last']['impressions']})")
        t.add_row("last retrain", st.last_retrain or "never")
        t.add_row("retrain trigger", (styled("[yellow]FIRED[/]: ") + "; ".join(st.trigger_reasons))
                  if st.trigger_fired else "not fired")
        console.print(t)
    if st.trigger_fired:
        raise typer.Exit(3)


def _with_ci(value, ci) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


@app.command("retrain")
def retrain_cmd(data: Path = typer.Option(Path("datasets/cuad-clauses"), help="BEIR folder: train split + frozen test"),
                out: Path = typer.Option(..., help="run folder for the new model"),
                from_feedback: bool = typer.Option(True, help="add the feedback store's pairs to the training data"),
                db: Optional[str] = FEEDBACK_DB,
                config: Path = typer.Option(Path("gate.toml"), help="gate TOML deciding promotion"),
                finetune_config: Optional[Path] = typer.Option(None, help="TOML with a [finetune] table"),
                max_steps: int = typer.Option(-1, help="fine-tuning step budget (-1: epochs)")) -> None:
    """Fine-tune on train + feedback pairs, evaluate, and promote to champion only if the gate passes."""
    require_extra("train", "honed retrain")
    from honed.app.retrain import retrain_from_feedback
    from honed.app.store import FeedbackStore
    from honed.rag_eval.gate import load_gate_config
    from honed.retriever.finetune.config import read_finetune_table

    if not from_feedback:
        raise HonedError("retrain without feedback is `honed finetune`; --from-feedback is what this command adds")
    load_gate_config(config)     # a bad gate file is refused before the store is opened (which creates it)
    overrides = read_finetune_table(finetune_config) if finetune_config else {}
    if max_steps > 0:
        overrides["max_steps"] = max_steps
    res = retrain_from_feedback(data, out, FeedbackStore(db, create=False), gate_config=config,
                                finetune_overrides=overrides)
    for c in res.gate:
        console.print(f"  {'[green]pass[/]' if c.passed else '[red]FAIL[/]'} {c.rule} {c.metric}: {shown(c.detail)}")
    console.print(f"{'[green]promoted[/]' if res.promoted else '[yellow]not promoted[/]'}: "
                  f"honed-retriever v{res.version} — {res.reason}")
    if res.report:
        console.print(f"report: {res.report}")
