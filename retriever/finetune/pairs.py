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
from dataclasses import asdict, dataclass, field
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
