"""Votes → training pairs, win rate, and the retrain trigger.

- :func:`feedback_pairs`: a thumbs-up passage is a positive for its query; a
  thumbs-down passage becomes a hard negative only when the same query has a
  known positive (a down vote alone says "not this", not what is right).
  Pairs are deduplicated, and nothing of the frozen eval set enters training:
  pairs whose query is an eval query, or whose positive is a judged eval
  document, are dropped and counted (:func:`~retriever.finetune.pairs.drop_frozen`'s rule).
- :func:`feedback_status`: counts, the candidate's win rate over the baseline
  on answer votes with a Wilson interval, the service's click metrics per arm
  (:mod:`~honed.app.clicks`), and whether the retrain trigger fired: enough new
  pairs, the production side losing too many comparisons, or its CTR dropping.

Example:
    >>> from honed.app.store import FeedbackStore
    >>> from honed.app.feedback import feedback_pairs, feedback_status
    >>> store = FeedbackStore("feedback.db")                                       # doctest: +SKIP
    >>> pairs, stats = feedback_pairs(store, eval_data=["datasets/cuad-clauses"])  # doctest: +SKIP
    >>> feedback_status(store).trigger_fired                                       # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from honed.rag_eval.significance import wilson
from honed.retriever.finetune.pairs import Pair, frozen_eval_set, normalise_text

from .store import FeedbackStore


@dataclass
class TriggerConfig:
    """When to retrain: enough new pairs, or the production model losing too often."""

    min_new_pairs: int = 50
    min_production_win_rate: float = 0.4   # production = the baseline side of the app
    min_comparisons: int = 20              # queries with answer votes on both sides before the win rate counts
    ctr_drop: float | None = None          # the service's champion CTR fell this much (absolute) …
    ctr_window_s: float = 86400.0          # … over the last window against the one before it
    ctr_min_impressions: int = 100         # impressions per window before the CTR counts


@dataclass
class FeedbackStatus:
    votes: int
    effective_votes: int
    sessions: int
    queries: int
    by_target: dict
    pairs: int
    new_pairs: int
    comparisons: int
    candidate_wins: int
    baseline_wins: int
    ties: int
    candidate_win_rate: float | None
    win_rate_ci: tuple[float, float] | None
    last_retrain: str | None
    trigger_fired: bool
    trigger_reasons: list[str] = field(default_factory=list)
    clicks: dict | None = None             # the service's impressions: CTR and MRR per arm, interleaving
    ctr_trigger: dict | None = None


def feedback_pairs(store: FeedbackStore, eval_data: list[str | os.PathLike] | None = None,
                   after_id: int = 0) -> tuple[list[Pair], dict]:
    """Training pairs (``source="feedback"``) from passage votes, and counts of what was kept or dropped."""
    frozen = frozen_eval_set(tuple(str(d) for d in eval_data or ()))
    ups: dict[str, dict[str, tuple[str, str]]] = {}     # norm query → doc id → (query, text)
    downs: dict[str, dict[str, str]] = {}
    no_text = 0
    for r in store.latest_votes(after_id):
        if r["target"] != "passage":
            continue
        if not r["doc_text"]:          # a vote recorded without its passage (an old client): nothing to train on
            no_text += 1
            continue
        q = normalise_text(r["query"])
        if r["vote"] > 0:
            ups.setdefault(q, {})[r["doc_id"]] = (r["query"].strip(), r["doc_text"])
        else:
            downs.setdefault(q, {})[r["doc_id"]] = r["doc_text"]
    stats = {"positive_votes": sum(map(len, ups.values())), "negative_votes": sum(map(len, downs.values())),
             "dropped_eval_query": 0, "dropped_eval_doc": 0, "negatives_without_positive": 0, "conflicts": 0,
             "dropped_no_passage_text": no_text}
    pairs = []
    for q, pos in ups.items():
        if frozen.has_query(q):
            stats["dropped_eval_query"] += len(pos)
            continue
        negs = {d: t for d, t in downs.get(q, {}).items() if d not in pos and not frozen.has_doc(d, t)}
        # one voter's up and another's down on the same passage: it is neither a clean positive nor a negative
        conflicts = set(pos) & set(downs.get(q, {}))
        stats["conflicts"] += len(conflicts)
        for did, (query, text) in pos.items():
            if did in conflicts:
                continue
            if frozen.has_doc(did, text):
                stats["dropped_eval_doc"] += 1
                continue
            pairs.append(Pair(query, text, query_id=None, positive_id=did, negatives=list(negs.values()),
                              negative_ids=list(negs), source="feedback"))
    stats["negatives_without_positive"] = sum(len(v) for q, v in downs.items() if q not in ups)
    stats["pairs"] = len(pairs)
    return pairs, stats


def win_counts(store: FeedbackStore, after_id: int = 0) -> tuple[int, int, int]:
    """(candidate wins, baseline wins, ties) over (session, query) with answer votes on both sides."""
    per: dict[tuple[str, str], dict[str, int]] = {}
    for r in store.latest_votes(after_id):
        if r["target"] != "answer":
            continue
        side = "candidate" if r["system"] == r["candidate"] else "baseline"
        per.setdefault((r["session_id"], normalise_text(r["query"])), {})[side] = r["vote"]
    c = b = t = 0
    for sides in per.values():
        if len(sides) < 2:
            continue
        if sides["candidate"] > sides["baseline"]:
            c += 1
        elif sides["candidate"] < sides["baseline"]:
            b += 1
        else:
            t += 1
    return c, b, t


def feedback_status(store: FeedbackStore, cfg: TriggerConfig | None = None,
                    eval_data: list[str | os.PathLike] | None = None) -> FeedbackStatus:
    """Counts, win rate (ties count half) with a Wilson CI, and the retrain trigger."""
    cfg = cfg or TriggerConfig()
    latest = store.latest_votes()
    last = store.last_retrain()
    after = last["last_vote_id"] if last else 0
    pairs, _ = feedback_pairs(store, eval_data)
    new_pairs, _ = feedback_pairs(store, eval_data, after_id=after)
    c, b, t = win_counts(store)
    n = c + b + t
    rate = (c + 0.5 * t) / n if n else None
    ci = wilson(round(c + 0.5 * t), n)
    reasons = []
    if len(new_pairs) >= cfg.min_new_pairs:
        reasons.append(f"{len(new_pairs)} new feedback pairs ≥ {cfg.min_new_pairs}")
    if n >= cfg.min_comparisons and rate is not None and 1 - rate < cfg.min_production_win_rate:
        reasons.append(f"production (baseline) win rate {1 - rate:.2f} < {cfg.min_production_win_rate} "
                       f"over {n} compared queries")
    clicks = ctr = None
    if store.has_impressions():
        from .clicks import CtrTrigger, click_metrics, ctr_drop

        clicks = click_metrics(store)
        if cfg.ctr_drop is not None:
            ctr = ctr_drop(store, CtrTrigger(cfg.ctr_drop, cfg.ctr_window_s, cfg.ctr_min_impressions))
            if ctr["fired"]:
                reasons.append(ctr["reason"])
    by_target = {tg: sum(1 for r in latest if r["target"] == tg) for tg in ("answer", "passage")}
    return FeedbackStatus(
        votes=store.count(), effective_votes=len(latest), sessions=len({r["session_id"] for r in latest}),
        queries=len({normalise_text(r["query"]) for r in latest}), by_target=by_target, pairs=len(pairs),
        new_pairs=len(new_pairs), comparisons=n, candidate_wins=c, baseline_wins=b, ties=t,
        candidate_win_rate=round(rate, 4) if rate is not None else None, win_rate_ci=ci,
        last_retrain=last["created_at"] if last else None, trigger_fired=bool(reasons), trigger_reasons=reasons,
        clicks=clicks, ctr_trigger=ctr)
