"""The service's request bodies, checked: what ``POST /search`` and ``POST /feedback`` accept.

A body that does not fit is a 422 whose ``error`` is one line naming the field
(:func:`~app.serve.service.create_app` formats pydantic's errors); metadata
filters arrive as LlamaIndex's ``MetadataFilters`` in JSON (:func:`parse_filters`).

Example:
    >>> from honed.app.serve.requests import parse_filters
    >>> parse_filters({"kind": "nda"}).filters[0].key
    'kind'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from honed.retriever.errors import HonedError

OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in", "nin", "any", "all", "contains", "text_match",
             "text_match_insensitive", "is_empty")


class SearchRequest(BaseModel):
    model_config = {"extra": "forbid"}

    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, strict=True)      # strict: JSON true is not k = 1
    filters: dict | None = None
    user_id: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is blank")
        return v


class FeedbackRequest(BaseModel):
    model_config = {"extra": "forbid"}

    impression_id: str = Field(min_length=1, max_length=64)
    type: Literal["click", "dwell", "thumb"]
    doc_id: str = Field(min_length=1, max_length=512)
    dwell_ms: float | None = Field(None, ge=0, le=86_400_000)
    value: Literal[1, -1] | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _not_bool(cls, v):
        if isinstance(v, bool):           # true == 1 in Python: a thumbs-up must be said as 1, not true
            raise ValueError("value must be 1 or -1, not a boolean")
        return v


@dataclass
class _Filter:
    key: str
    value: Any
    operator: str = "=="


@dataclass
class _Filters:
    """The shape of LlamaIndex's ``MetadataFilters`` that :mod:`honed.retriever.filters` reads."""

    filters: list = field(default_factory=list)
    condition: str = "and"


def parse_filters(raw: dict | None, where: str = "filters") -> _Filters | None:
    """A ``MetadataFilters``-shaped object from JSON; a one-line :class:`HonedError` naming the bad part."""
    if raw is None:
        return None
    if "filters" not in raw:   # shorthand {"key": value}
        return _Filters([_Filter(str(k), v) for k, v in raw.items()]) if raw else None
    unknown = set(raw) - {"filters", "condition"}
    if unknown:
        raise HonedError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: filters, condition)")
    cond = raw.get("condition", "and") or "and"
    if cond not in ("and", "or", "not"):
        raise HonedError(f"{where}.condition must be and, or or not, got {cond!r}")
    if not isinstance(raw["filters"], list):
        raise HonedError(f"{where}.filters must be a list")
    out = []
    for i, f in enumerate(raw["filters"]):
        at = f"{where}.filters[{i}]"
        if not isinstance(f, dict):
            raise HonedError(f"{at} must be an object")
        if "filters" in f:
            out.append(parse_filters(f, at))
            continue
        unknown = set(f) - {"key", "value", "operator"}
        if unknown or "key" not in f:
            raise HonedError(f"{at}: needs key (and value, operator); unknown key(s) {sorted(unknown)}")
        op = f.get("operator", "==")
        if op not in OPERATORS:
            raise HonedError(f"{at}.operator {op!r} is not one of {', '.join(OPERATORS)}")
        if not isinstance(f["key"], str) or not f["key"]:
            raise HonedError(f"{at}.key must be a non-empty string")
        out.append(_Filter(f["key"], f.get("value"), op))
    return _Filters(out, cond)
