"""Evaluate LlamaIndex ``MetadataFilters`` against a doc's metadata dict.

FAISS has no metadata, so filters are evaluated here, once per query, to a set
of allowed positions that FAISS then searches exactly (``IDSelectorBatch``).
LlamaIndex ships no standalone evaluator for its filter objects (each vector
store translates them to its own query language), hence this small one.

Example:
    >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    >>> f = MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">=")])
    >>> matches({"year": 2021}, f)
    True
"""
from __future__ import annotations

import numpy as np

from .errors import HonedError


def _as_str(op) -> str:
    return getattr(op, "value", op)


def _match_one(meta: dict, key: str, op: str, value) -> bool:
    have = meta.get(key)
    if op == "is_empty":
        return have is None or have == [] or have == ""
    if have is None:
        return op in ("!=", "nin")
    try:
        if op == "==":
            return have == value
        if op == "!=":
            return have != value
        if op == ">":
            return have > value
        if op == ">=":
            return have >= value
        if op == "<":
            return have < value
        if op == "<=":
            return have <= value
    except TypeError:
        return False  # comparing e.g. a string with a number: no match, not a crash
    if op == "in":
        return have in value
    if op == "nin":
        return have not in value
    items = have if isinstance(have, (list, tuple, set)) else [have]
    if op == "contains":
        return value in items
    if op == "any":
        return any(v in items for v in value)
    if op == "all":
        return all(v in items for v in value)
    if op == "text_match":
        return str(value) in str(have)
    if op == "text_match_insensitive":
        return str(value).lower() in str(have).lower()
    raise HonedError(f"metadata filter operator {op!r} is not supported")


def matches(meta: dict, filters) -> bool:
    """True when `meta` satisfies `filters` (a MetadataFilters, possibly nested)."""
    results = []
    for f in filters.filters:
        if hasattr(f, "filters"):
            results.append(matches(meta, f))
        else:
            results.append(_match_one(meta, f.key, _as_str(f.operator), f.value))
    cond = _as_str(getattr(filters, "condition", "and") or "and")
    if cond == "and":
        return all(results)
    if cond == "or":
        return any(results)
    if cond == "not":
        return not any(results)
    raise HonedError(f"metadata filter condition {cond!r} is not supported")


def allowed_positions(docs: list[dict], filters) -> np.ndarray | None:
    """Positions of docs whose metadata (plus ``doc_id``/``title``) pass `filters`; None = all."""
    if filters is None or not filters.filters:
        return None
    keep = [i for i, d in enumerate(docs)
            if matches({**d.get("metadata", {}), "doc_id": d["id"], "title": d.get("title", "")}, filters)]
    return np.asarray(keep, dtype=np.int64)
