"""One training-pair format for every source: labelled qrels, synthetic queries, app feedback.

A pairs file is JSON Lines, one object per (query, positive) pair::

    {"query": "...", "positive": "...", "query_id": "q1", "positive_id": "d7",
     "negatives": ["..."], "negative_ids": ["d9"], "source": "qrels"}

``query`` and ``positive`` are required; ids let training exclude a query's
other positives and let the overlap guard compare with eval queries;
``negatives`` are optional hard negatives (a thumbs-down passage from the app,
for instance); ``source`` is ``qrels`` | ``synthetic`` | ``feedback`` | free text.

Example:
    >>> from honed.retriever.finetune.pairs import Pair, write_pairs, read_pairs
    >>> write_pairs("pairs.jsonl", [Pair("what is X?", "X is ...")])   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from ..atomic import atomic_write_text
from ..data.beir import BeirDataset, check_id, doc_text, iter_jsonl
from ..errors import DataError, HonedError


@dataclass
class Pair:
    query: str
    positive: str
    query_id: str | None = None
    positive_id: str | None = None
    negatives: list[str] = field(default_factory=list)
    negative_ids: list[str] = field(default_factory=list)
    source: str = "qrels"

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v not in (None, [])}
        return json.dumps(d, ensure_ascii=False, sort_keys=True)


def pairs_from_qrels(ds: BeirDataset, min_grade: int = 1) -> list[Pair]:
    """Every judged (query, positive) of a BEIR split as a Pair."""
    pairs = []
    for qid, rel in ds.qrels.items():
        for did, grade in rel.items():
            if grade >= min_grade and did in ds.corpus:
                pairs.append(Pair(ds.queries[qid], doc_text(ds.corpus[did]), qid, did, source="qrels"))
    if not pairs:
        raise DataError(f"{ds.path}: split {ds.split!r} has no positive judgements to train on")
    return pairs


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Read and validate a pairs JSONL file (errors name file:line)."""
    path = Path(path)
    pairs = []
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        unknown = set(obj) - set(Pair.__dataclass_fields__)
        if unknown:
            # repr: a key is user text, and a newline in it must not break the one-line error
            raise DataError(f"{where}: unknown field(s) {', '.join(repr(k) for k in sorted(unknown))} "
                            f"(allowed: {', '.join(Pair.__dataclass_fields__)})")
        if not isinstance(obj.get("query"), str) or not isinstance(obj.get("positive"), str):
            raise DataError(f"{where}: a pair needs string fields \"query\" and \"positive\"")
        if not obj["query"].strip() or not obj["positive"].strip():
            raise DataError(f"{where}: empty \"query\" or \"positive\"")
        for key in ("negatives", "negative_ids"):
            vals = obj.get(key, [])
            if not isinstance(vals, list) or not all(isinstance(x, str) for x in vals):
                raise DataError(f"{where}: \"{key}\" must be a list of strings")
        for key in ("query_id", "positive_id"):
            if obj.get(key) is not None:
                obj[key] = check_id(obj[key], where, key)
        obj["negative_ids"] = [check_id(x, where, "negative_ids") for x in obj.get("negative_ids", [])]
        if not isinstance(obj.get("source", ""), str):
            raise DataError(f"{where}: \"source\" must be a string")
        pairs.append(Pair(**obj))
    if not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs


def write_pairs(path: str | os.PathLike, pairs: list[Pair]) -> None:
    """Write pairs as JSON Lines, atomically."""
    atomic_write_text(path, "".join(p.to_json() + "\n" for p in pairs))


def fingerprint_pairs(pairs: list[Pair]) -> str:
    """sha256 (16 hex) of the pairs' content, order-independent: the data identity of a run."""
    h = hashlib.sha256()
    for line in sorted(p.to_json() for p in pairs):
        h.update(line.encode())
    return h.hexdigest()[:16]


def normalise_text(q: str) -> str:
    return " ".join("".join(ch.lower() if ch.isalnum() else " " for ch in q).split())


def check_no_overlap(train_queries: list[str], eval_queries: list[str], what: str = "eval") -> None:
    """Refuse training when any eval query (after normalisation) is also a training query."""
    train = {normalise_text(q) for q in train_queries}
    clash = [q for q in eval_queries if normalise_text(q) in train]
    if clash:
        raise HonedError(f"{len(clash)} {what} queries also appear in the training pairs "
                         f"(e.g. {clash[0][:80]!r}); remove them from training or pick other {what} queries")


@dataclass(frozen=True)
class FrozenEvalSet:
    """What of the evaluation sets never enters training: their test queries and every judged passage."""

    queries: frozenset = frozenset()     # normalised query texts
    doc_ids: frozenset = frozenset()     # every doc id in the test qrels, whatever its grade
    doc_texts: frozenset = frozenset()   # their normalised texts (the same passage under another id)

    def has_query(self, query: str) -> bool:
        return normalise_text(query) in self.queries

    def has_doc(self, doc_id: str | None, text: str | None) -> bool:
        return (doc_id is not None and doc_id in self.doc_ids) or \
            (text is not None and normalise_text(text) in self.doc_texts)


@lru_cache(maxsize=8)   # feedback status asks twice (all pairs, new pairs); a BEIR load is the slow part
def frozen_eval_set(eval_data: tuple[str, ...]) -> FrozenEvalSet:
    """The test queries and judged documents of BEIR folders (an exported annotation set is one)."""
    from ..data.beir import load_beir

    queries, doc_ids, doc_texts = set(), set(), set()
    for d in eval_data:
        ds = load_beir(d, "test")
        queries |= {normalise_text(q) for q in ds.queries.values()}
        for rel in ds.qrels.values():
            for did in rel:
                doc_ids.add(did)
                if did in ds.corpus:
                    doc_texts.add(normalise_text(doc_text(ds.corpus[did])))
    return FrozenEvalSet(frozenset(queries), frozenset(doc_ids), frozenset(doc_texts))


def drop_frozen(pairs: list[Pair], frozen: FrozenEvalSet) -> tuple[list[Pair], dict]:
    """Pairs without any eval query or judged passage: such a pair goes, such a negative leaves its pair.

    Returns (kept pairs, counts ``dropped_eval_query``, ``dropped_eval_doc``, ``dropped_eval_negatives``).
    """
    stats = {"dropped_eval_query": 0, "dropped_eval_doc": 0, "dropped_eval_negatives": 0}
    kept = []
    for p in pairs:
        if frozen.has_query(p.query):
            stats["dropped_eval_query"] += 1
            continue
        if frozen.has_doc(p.positive_id, p.positive):
            stats["dropped_eval_doc"] += 1
            continue
        ids = p.negative_ids if len(p.negative_ids) == len(p.negatives) else [None] * len(p.negatives)
        keep = [i for i, (nid, text) in enumerate(zip(ids, p.negatives)) if not frozen.has_doc(nid, text)]
        if len(keep) < len(p.negatives):
            stats["dropped_eval_negatives"] += len(p.negatives) - len(keep)
            p = Pair(p.query, p.positive, p.query_id, p.positive_id, [p.negatives[i] for i in keep],
                     [p.negative_ids[i] for i in keep] if p.negative_ids else [], p.source)
        kept.append(p)
    return kept, stats


# How far apart a held-out dev split and the test split may sit before a run warns: on cuad-clauses the dev
# queries (held out from the train split, mostly one contract's questions) have 1 relevant passage and 12 words
# (medians), the test queries (clause types) 8 and 6, and the dev score rose while the test score fell for the
# students distilled with --loss distill-mnrl (benchmarks/results/distill-cuad*.json); on SciFact both read 1, 12.
DEV_UNLIKE_POSITIVES = 2.0     # ratio of the medians of relevant passages per query
DEV_UNLIKE_WORDS = 1.5         # ratio of the medians of words per query


def dev_unlike_test(dev_queries: dict[str, str], dev_qrels: dict[str, set], test: BeirDataset) -> dict:
    """How the dev split's queries compare with the test split's, and the ways they differ (``unlike``).

    A dev split held out from the training queries stands in for the test queries: early stopping, the run's
    status and the teacher check are decided on it. When its queries look unlike the test split's, those
    choices need not hold on test, and the run says so.

    Example:
        >>> from honed.retriever.data import load_beir
        >>> test = load_beir("datasets/cuad-clauses", "test")
        >>> dev_unlike_test({"q": "effective date of the Go Call promotion agreement"}, {"q": {"d"}}, test)["unlike"]
        ['1 vs 8 relevant passages per query (median)']
    """
    def ratio(a: float, b: float) -> float:
        return max(a, b) / max(min(a, b), 1e-9)

    judged = [q for q, rel in test.qrels.items() if any(g > 0 for g in rel.values())]
    if not judged or not dev_queries:
        return {"dev_queries": len(dev_queries), "test_queries": len(judged), "unlike": []}
    stats = {"dev_queries": len(dev_queries), "test_queries": len(judged),
             "positives_median": [statistics.median(len(dev_qrels.get(q, ())) for q in dev_queries),
                                  statistics.median(sum(g > 0 for g in test.qrels[q].values()) for q in judged)],
             "words_median": [statistics.median(len(t.split()) for t in dev_queries.values()),
                              statistics.median(len(test.queries[q].split()) for q in judged)]}
    unlike = []
    (dp, tp), (dw, tw) = stats["positives_median"], stats["words_median"]
    if ratio(dp, tp) >= DEV_UNLIKE_POSITIVES:
        unlike.append(f"{dp:g} vs {tp:g} relevant passages per query (median)")
    if ratio(dw, tw) >= DEV_UNLIKE_WORDS:
        unlike.append(f"{dw:g} vs {tw:g} words per query (median)")
    return {**stats, "unlike": unlike}


def split_dev(pairs: list[Pair], dev_fraction: float = 0.15, seed: int = 42,
              max_dev_queries: int = 100) -> tuple[list[Pair], list[Pair]]:
    """Hold out whole queries (all their pairs) for early stopping; returns (train, dev)."""
    queries = sorted({p.query for p in pairs})
    if len(queries) < 5:
        raise HonedError(f"need ≥ 5 distinct training queries to hold out a dev split, have {len(queries)}")
    rng = random.Random(seed)
    rng.shuffle(queries)
    n_dev = max(1, min(max_dev_queries, round(len(queries) * dev_fraction)))
    dev_q = set(queries[:n_dev])
    return [p for p in pairs if p.query not in dev_q], [p for p in pairs if p.query in dev_q]
