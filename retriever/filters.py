"""LlamaIndex ``MetadataFilters``: as SQL over the document store, and as a Python predicate.

FAISS has no metadata, so a filter is first turned into the set of labels that
pass it, which FAISS then searches exactly (``IDSelectorBatch``).
:func:`filters_to_sql` compiles a filter into a ``WHERE`` clause over the
store's JSON metadata, so selecting is one SQLite query, not a Python scan of
every document. :func:`matches` is the same semantics in Python: the reference
the SQL is tested against, and the evaluator for a single metadata dict.
LlamaIndex's own ``build_metadata_filter_fn`` reads from its document store
and knows fewer operators (no ``any``/``all``/``text_match``/nesting), so it
cannot stand in for either.

Semantics (Python's): a missing or null key matches only ``!=``, ``nin`` and
``is_empty``; comparing values of different kinds (a number with a string)
does not match; ``contains``/``any``/``all`` look inside a list value.

Example:
    >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    >>> f = MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">=")])
    >>> matches({"year": 2021}, f)
    True
    >>> print(filters_to_sql(f)[0])
    (IFNULL((json_type(metadata, '$."year"') IN ('integer', 'real', 'true', 'false') AND json_extract(metadata, '$."year"') >= ?), 0))
"""
from __future__ import annotations

import json


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


def filters_key(filters) -> str:
    """A canonical text of a filter, to cache its selection by."""
    dump = getattr(filters, "model_dump_json", None)
    return dump(warnings=False) if dump else repr(filters)   # constructed filters may hold plain strings


_NUM = "('integer', 'real', 'true', 'false')"
_COLUMNS = {"doc_id": "id", "title": "title"}   # the document's own fields, as `matches` sees them


def _is_num(v) -> bool:
    return isinstance(v, (bool, int, float))


class _Key:
    """SQL expressions for one key: its value (``v``), its JSON type (``t``), and the JSON path literal.

    The path is written into the SQL as a quoted literal (keys with a double quote
    or a control character are refused), so the expressions carry no parameters
    and can be combined freely; only filter values are bound.
    """

    def __init__(self, key: str):
        if not isinstance(key, str) or not key or '"' in key or any(ord(c) < 32 for c in key):
            raise HonedError(f"metadata filter key {key!r} is not supported (empty, or holds a double quote "
                             "or a control character)")
        self.key, self.col = key, _COLUMNS.get(key)
        self.path = "'$.\"" + key.replace("'", "''") + "\"'"
        self.v = self.col or f"json_extract(metadata, {self.path})"
        self.t = "'text'" if self.col else f"json_type(metadata, {self.path})"
        self.missing = f"({self.t} IS NULL OR {self.t} = 'null')"


def _bind(value):
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        raise HonedError(f"metadata filter value {value} is out of SQLite's integer range")
    return value


def _eq(v: str, t: str, value) -> tuple[str, list]:
    """SQL for Python's ``have == value`` where `v`/`t` are the value/type expressions."""
    if value is None:
        return f"{t} = 'null'", []
    if _is_num(value):
        return f"({t} IN {_NUM} AND {v} = ?)", [_bind(value)]
    if isinstance(value, str):
        return f"({t} = 'text' AND {v} = ?)", [value]
    if isinstance(value, (list, dict)):   # compared as minified JSON text
        return (f"({t} = '{'array' if isinstance(value, list) else 'object'}' AND {v} = json(?))",
                [json.dumps(value, ensure_ascii=False)])
    raise HonedError(f"metadata filter value {value!r} has an unsupported type {type(value).__name__}")


def _member(v: str, t: str, values: list) -> tuple[str, list]:
    """SQL for ``have in values`` (have present): one ``IN (…)`` per kind of scalar, JSON text for the rest."""
    nums = [_bind(x) for x in values if _is_num(x)]
    strs = [x for x in values if isinstance(x, str)]
    parts: list[tuple[str, list]] = []
    if nums:
        parts.append((f"({t} IN {_NUM} AND {v} IN ({','.join('?' * len(nums))}))", nums))
    if strs:
        parts.append((f"({t} = 'text' AND {v} IN ({','.join('?' * len(strs))}))", strs))
    for x in values:   # None never matches a present value; _eq refuses unsupported types
        if x is not None and not _is_num(x) and not isinstance(x, str):
            parts.append(_eq(v, t, x))
    return _join(parts, " OR ", empty="0")


def _join(parts: list[tuple[str, list]], op: str, empty: str) -> tuple[str, list]:
    if not parts:
        return empty, []
    return "(" + op.join(s for s, _ in parts) + ")", [x for _, p in parts for x in p]


def _indexed_member(k: _Key, values: list) -> tuple[str, list] | None:
    """``have in values`` for scalar values as lookups in the store's (key, value) index; None if not possible."""
    if k.col or not values or not all(_is_num(x) or isinstance(x, str) for x in values):
        return None
    sql, params = _member("value", "type", values)
    return f"pos IN (SELECT pos FROM meta_kv WHERE key = ? AND {sql})", [k.key] + params


def _contains(k: _Key, value) -> tuple[str, list]:
    """SQL for ``value in (have if have is a list else [have])``."""
    direct, dp = _eq(k.v, k.t, value)
    if k.col:
        return direct, dp
    inner, ip = _eq("je.value", "je.type", value)
    return (f"(({k.t} = 'array' AND EXISTS (SELECT 1 FROM json_each(metadata, {k.path}) AS je WHERE {inner})) "
            f"OR ({k.t} != 'array' AND {direct}))", ip + dp)


def _one_sql(key: str, op: str, value, indexed: bool = False) -> tuple[str, list]:
    k = _Key(key)
    v, t, missing = k.v, k.t, k.missing
    if indexed and op in ("==", "in"):
        fast = _indexed_member(k, [value] if op == "==" else value if isinstance(value, list) else [None])
        if fast is not None:
            return fast
    if op == "is_empty":
        arr = "0" if k.col else f"({t} = 'array' AND json_array_length(metadata, {k.path}) = 0)"
        return f"({missing} OR {arr} OR ({t} = 'text' AND {v} = ''))", []
    if op in ("==", "!="):
        if value is None:   # Python: a missing or null value matches neither == None nor … ; != None always
            return ("0" if op == "==" else "1"), []
        sql, p = _eq(v, t, value)
        if op == "==":   # a missing key gives NULL, never equal: no separate test (each one parses the JSON)
            return sql, p
        return f"({missing} OR NOT {sql})", p
    if op in (">", ">=", "<", "<="):
        if _is_num(value):
            return f"({t} IN {_NUM} AND {v} {op} ?)", [_bind(value)]
        if isinstance(value, str):
            return f"({t} = 'text' AND {v} {op} ?)", [value]
        return "0", []   # Python raises TypeError for None and mixed kinds: no match
    if op in ("in", "nin", "any", "all"):
        if not isinstance(value, list):
            raise HonedError(f"metadata filter operator {op!r} needs a list value, got {value!r}")
        if op == "in":
            return _member(v, t, value)
        if op == "nin":
            sql, p = _member(v, t, value)
            return f"({missing} OR NOT {sql})", p
        if not value:
            return (f"(NOT {missing})" if op == "all" else "0"), []
        sql, p = _join([_contains(k, x) for x in value], " AND " if op == "all" else " OR ", empty="0")
        return f"(NOT {missing} AND {sql})", p
    if op == "contains":
        sql, p = _contains(k, value)
        return f"(NOT {missing} AND {sql})", p
    if op in ("text_match", "text_match_insensitive"):
        needle = str(value) if op == "text_match" else str(value).lower()
        have = v if k.col else f"py_str({v}, {t})"
        if op == "text_match_insensitive":
            have = f"py_lower({have})"
        return f"(NOT {missing} AND instr({have}, ?) > 0)", [needle]
    raise HonedError(f"metadata filter operator {op!r} is not supported")


def filters_to_sql(filters, indexed: bool = False) -> tuple[str, list]:
    """A ``WHERE`` clause (and its parameters) over the ``docs`` table equal to :func:`matches`.

    With `indexed`, equality and membership on scalar values use the store's
    ``meta_kv`` index (:mod:`retriever.store`) instead of parsing each row's JSON.
    """
    parts = []
    for f in filters.filters:
        if hasattr(f, "filters"):
            parts.append(filters_to_sql(f, indexed))
        else:
            sql, p = _one_sql(f.key, _as_str(f.operator), f.value, indexed)
            parts.append((f"IFNULL({sql}, 0)", p))
    cond = _as_str(getattr(filters, "condition", "and") or "and")
    if cond == "and":
        return _join(parts, " AND ", empty="1")
    if cond == "or":
        return _join(parts, " OR ", empty="0")
    if cond == "not":
        sql, p = _join(parts, " OR ", empty="0")
        return f"NOT {sql}", p
    raise HonedError(f"metadata filter condition {cond!r} is not supported")


def py_str(value, json_type: str | None) -> str | None:
    """Python's ``str()`` of a JSON value as SQLite returns it (registered as the SQL function py_str)."""
    if json_type is None:
        return None
    if json_type in ("true", "false"):
        return str(json_type == "true")
    if json_type in ("array", "object"):
        return str(json.loads(value))
    if json_type == "real":
        return str(float(value))
    return str(value)
