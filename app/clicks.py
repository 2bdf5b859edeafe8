"""Implicit feedback from the service: clicks and dwell → training pairs, per-arm CTR and MRR, the CTR trigger.

**The click model** (documented, so a pair can be traced back to why it exists):

- A *satisfied click* is a click whose dwell reached ``long_dwell_s`` (30 s by
  default: the threshold of Fox et al., 2005, "Evaluating implicit measures to
  improve web search", used since as the standard "SAT click"), or a thumbs-up on
  a shown result. It makes the result a **positive** for the query.
- A result **skipped above** a satisfied click (shown at a better rank, never
  clicked) is a **candidate negative**, Joachims' "click > skip above" (2002).
  A thumbs-down on a result is a candidate negative too. A short click is
  neither: the user looked and left, which says too little either way.
- Candidates then pass the miner's false-negative guard
  (:func:`~honed.retriever.finetune.mining.guard_ceiling`): kept only if the
  model scores them at most (1 − ``relative_margin``) × the median score of the
  query's positives. Users skip relevant results all the time (they had seen
  enough); the guard drops the ones that look like positives.
- The frozen eval set stays out of training: pairs whose query is an eval query
  or whose positive is a judged eval document are dropped and counted,
  as for votes (:func:`~honed.app.feedback.feedback_pairs`).

Pairs are deduplicated per (query, positive); negatives from every impression
of the query are pooled.

**Online metrics per arm** (:func:`click_metrics`): click-through rate (share of
impressions with a click; Wilson 95% interval) and mean reciprocal rank of the
first click (0 for none; 95% bootstrap interval, ``scipy.stats.bootstrap``).
Interleaved impressions are scored as team-draft wins per arm instead, with a
Wilson interval on the challenger's preference and a sign test.

Example:
    >>> from honed.app.store import FeedbackStore
    >>> from honed.app.clicks import click_pairs, click_metrics
    >>> store = FeedbackStore("feedback.db")                                          # doctest: +SKIP
    >>> pairs, stats = click_pairs(store, encoder, eval_data=["datasets/cuad-clauses"])  # doctest: +SKIP
    >>> click_metrics(store)["arms"]["champion"]["ctr"]                                # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import numpy as np

from honed.retriever.finetune.pairs import Pair, frozen_eval_set, normalise_text

from honed.rag_eval.significance import wilson
from .serve.traffic import CHALLENGER, CHAMPION, winner
from .store import FeedbackStore


@dataclass
class ClickModel:
    """Thresholds of the click model (see the module docstring)."""

    long_dwell_s: float = 30.0
    relative_margin: float = 0.05


def judge_impression(imp: dict, cm: ClickModel) -> tuple[list[dict], list[dict]]:
    """(positives, candidate negatives) among an impression's shown results, by the click model."""
    shown = {h["doc_id"]: h for h in imp["shown"]}
    clicked: set[str] = set()
    satisfied: set[str] = set()
    thumbs: dict[str, int] = {}
    for act in imp["interactions"]:
        doc = act["doc_id"]
        if doc not in shown:
            continue
        if act["kind"] in ("click", "dwell"):
            clicked.add(doc)
            if act["dwell_ms"] is not None and act["dwell_ms"] >= cm.long_dwell_s * 1000:
                satisfied.add(doc)
        elif act["kind"] == "thumb" and act["value"] in (1, -1):
            thumbs[doc] = act["value"]   # the last thumb wins
    positives = (satisfied | {d for d, v in thumbs.items() if v > 0}) - {d for d, v in thumbs.items() if v < 0}
    if not positives:
        return [], []
    lowest = max(shown[d]["rank"] for d in positives)
    skipped = {d for d, h in shown.items() if h["rank"] < lowest and d not in clicked}
    negatives = (skipped | {d for d, v in thumbs.items() if v < 0}) - positives - {d for d, v in thumbs.items() if v > 0}
    by_rank = sorted(shown.values(), key=lambda h: h["rank"])
    return [h for h in by_rank if h["doc_id"] in positives], [h for h in by_rank if h["doc_id"] in negatives]


def click_pairs(store: FeedbackStore, encoder, eval_data: list[str | os.PathLike] | None = None,
                after_interaction_id: int = 0, click_model: ClickModel | None = None) -> tuple[list[Pair], dict]:
    """Training pairs (``source="clicks"``) from the service's impressions, and counts of what was kept.

    `encoder` scores candidates for the false-negative guard: an encoder, or a model reference
    (the champion's artifact model, or ``"minilm"``) loaded only when there is a candidate to guard.
    """
    from honed.retriever.finetune.mining import guard_ceiling

    cm = click_model or ClickModel()
    frozen = frozen_eval_set(tuple(str(d) for d in eval_data or ()))
    per_query: dict[str, dict] = {}
    stats = {"impressions": 0, "with_clicks": 0, "positives": 0, "candidate_negatives": 0,
             "negatives_guarded_out": 0, "dropped_eval_query": 0, "dropped_eval_doc": 0}
    for imp in store.impressions_with_interactions(after_interaction_id):
        stats["impressions"] += 1
        stats["with_clicks"] += any(a["kind"] in ("click", "dwell") for a in imp["interactions"])
        pos, neg = judge_impression(imp, cm)
        if not pos:
            continue
        q = normalise_text(imp["query"])
        if frozen.has_query(q):
            stats["dropped_eval_query"] += len(pos)
            continue
        entry = per_query.setdefault(q, {"query": imp["query"].strip(), "pos": {}, "neg": {}})
        for h in pos:
            if frozen.has_doc(h["doc_id"], h["text"]):
                stats["dropped_eval_doc"] += 1
                continue
            entry["pos"][h["doc_id"]] = h["text"]
        for h in neg:
            if not frozen.has_doc(h["doc_id"], h["text"]):
                entry["neg"][h["doc_id"]] = h["text"]
    pairs = []
    for entry in per_query.values():
        negs = {d: t for d, t in entry["neg"].items() if d not in entry["pos"]}
        stats["positives"] += len(entry["pos"])
        stats["candidate_negatives"] += len(negs)
        if not entry["pos"]:
            continue
        if negs:
            if not hasattr(encoder, "encode_queries"):
                from honed.retriever.encoder import load_encoder
                encoder = load_encoder(encoder)
            texts = list(entry["pos"].values()) + list(negs.values())
            vecs = encoder.encode_documents(texts)
            emb = dict(zip(texts, vecs))
            qv = encoder.encode_queries([entry["query"]])[0]
            ceiling = guard_ceiling(emb, qv, list(entry["pos"].values()), cm.relative_margin)
            kept = {d: t for d, t in negs.items() if float(emb[t] @ qv) <= ceiling}
            stats["negatives_guarded_out"] += len(negs) - len(kept)
            negs = kept
        for did, text in entry["pos"].items():
            pairs.append(Pair(entry["query"], text, positive_id=did, negatives=list(negs.values()),
                              negative_ids=list(negs), source="clicks"))
    stats["pairs"] = len(pairs)
    return pairs, stats


# -- online metrics ------------------------------------------------------------------------------

def _first_click_rank(imp: dict) -> int | None:
    ranks = {h["doc_id"]: h["rank"] for h in imp["shown"]}
    clicked = [ranks[a["doc_id"]] for a in imp["interactions"]
               if a["kind"] in ("click", "dwell") and a["doc_id"] in ranks]
    return min(clicked) if clicked else None


def _mean_ci(values: list[float]) -> tuple[float, float] | None:
    """95% bootstrap interval of a mean (percentile; a constant sample's interval is the value itself)."""
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    if np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    from scipy.stats import bootstrap

    res = bootstrap((arr,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                    random_state=np.random.default_rng(0))
    return round(float(res.confidence_interval.low), 4), round(float(res.confidence_interval.high), 4)


def arm_metrics(impressions: list[dict]) -> dict:
    """CTR and MRR of first clicks over a list of (non-interleaved) impressions."""
    n = len(impressions)
    firsts = [_first_click_rank(i) for i in impressions]
    clicks = sum(r is not None for r in firsts)
    rr = [1.0 / r if r else 0.0 for r in firsts]
    return {"impressions": n, "clicked": clicks, "ctr": round(clicks / n, 4) if n else None,
            "ctr_ci": wilson(clicks, n), "mrr": round(float(np.mean(rr)), 4) if n else None,
            "mrr_ci": _mean_ci(rr)}


def interleaving_metrics(impressions: list[dict]) -> dict:
    """Team-draft outcome: wins per arm, ties, and the challenger's preference with a Wilson CI and sign test."""
    from scipy.stats import binomtest

    from .serve.traffic import credit

    wins = {CHAMPION: 0, CHALLENGER: 0}
    ties = 0
    for imp in impressions:
        merged = [(h["doc_id"], h["arm"]) for h in sorted(imp["shown"], key=lambda h: h["rank"])]
        clicked = {a["doc_id"] for a in imp["interactions"] if a["kind"] in ("click", "dwell")}
        if not clicked:
            continue   # no clicks: no preference expressed
        w = winner(credit(merged, clicked))
        if w is None:
            ties += 1
        else:
            wins[w] += 1
    decided = wins[CHAMPION] + wins[CHALLENGER]
    n = decided + ties
    pref = (wins[CHALLENGER] + 0.5 * ties) / n if n else None
    return {"impressions": len(impressions), "compared": n, "challenger_wins": wins[CHALLENGER],
            "champion_wins": wins[CHAMPION], "ties": ties,
            "challenger_preference": round(pref, 4) if pref is not None else None,
            "preference_ci": wilson(round(wins[CHALLENGER] + 0.5 * ties), n),
            "sign_test_p": round(float(binomtest(wins[CHALLENGER], decided).pvalue), 6) if decided else None}


def click_metrics(store: FeedbackStore, since: str | None = None) -> dict:
    """Per arm CTR and MRR (A/B impressions) and the interleaving outcome, from the service's log."""
    imps = store.impressions_with_interactions(since=since)
    by_arm: dict[str, list[dict]] = {}
    for imp in imps:
        by_arm.setdefault(imp["arm"], []).append(imp)
    out = {"arms": {a: arm_metrics(v) for a, v in sorted(by_arm.items()) if a != "interleaved"}}
    if "interleaved" in by_arm:
        out["interleaving"] = interleaving_metrics(by_arm["interleaved"])
    return out


@dataclass
class CtrTrigger:
    """Retrain when the champion's CTR over the last `window_s` fell `drop` (absolute) below the window before."""

    drop: float = 0.05
    window_s: float = 86400.0
    min_impressions: int = 100


def ctr_drop(store: FeedbackStore, trig: CtrTrigger, now: _dt.datetime | None = None) -> dict:
    """The champion's CTR in the last window and the one before it, and whether the drop fired."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    start_prev = (now - _dt.timedelta(seconds=2 * trig.window_s)).isoformat(timespec="microseconds")
    start_last = (now - _dt.timedelta(seconds=trig.window_s)).isoformat(timespec="microseconds")
    champ = [i for i in store.impressions_with_interactions(since=start_prev) if i["arm"] == CHAMPION]
    prev = arm_metrics([i for i in champ if i["created_at"] < start_last])
    last = arm_metrics([i for i in champ if i["created_at"] >= start_last])
    enough = min(prev["impressions"], last["impressions"]) >= trig.min_impressions
    fell = prev["ctr"] - last["ctr"] if enough else None
    fired = bool(enough and fell >= trig.drop)
    return {"previous": prev, "last": last, "drop": round(fell, 4) if fell is not None else None,
            "fired": fired, "enough_impressions": enough,
            "reason": (f"champion CTR fell {fell:.3f} ({prev['ctr']:.3f} → {last['ctr']:.3f}) over the last "
                       f"{trig.window_s / 3600:g} h ≥ {trig.drop}") if fired else None}
