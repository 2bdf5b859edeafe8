"""The packaged local LLM (Qwen2.5-Coder-0.5B GGUF via llama.cpp) as a generator and as a ragas judge.

- :class:`~retriever.generator.LocalLLM` (re-exported here) is the generator.
- :class:`LocalJudge` implements ragas' ``InstructorBaseRagasLLM``: every call
  carries the metric's pydantic response model, which is turned into a JSON
  schema for llama.cpp's constrained decoding, so a small local model always
  returns parseable JSON (the known NaN problem of local judges).
- :func:`openai_judge` uses any OpenAI-compatible endpoint instead.

Example:
    >>> from honed.rag_eval.judge import LocalLLM, LocalJudge
    >>> llm = LocalLLM()                                   # doctest: +SKIP
    >>> llm.complete("Say hi").text                        # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from ragas.llms.base import InstructorBaseRagasLLM

from honed.retriever.llm.generator import LocalLLM  # noqa: F401  (re-exported: the RAG pipeline's generator)
from honed.retriever.llm.generator import chat_json
from honed.retriever.llm.llama import llama_cpp_module
from honed.retriever.models import resolve_model

from .cache import JsonCache


class LocalJudge(InstructorBaseRagasLLM):
    """A ragas judge on the local GGUF model with JSON-schema-constrained decoding, cached."""

    def __init__(self, model: str = "qwen", cache: JsonCache | None = None, max_tokens: int = 1024):
        # 512 truncated one SciFact verdict list mid-JSON (a NaN); the cap only costs time when it is reached
        self.model = model
        # fail here, not as NaN scores later: each judge call's error is caught and counted
        llama_cpp_module(), resolve_model(model)
        self.cache = cache
        self.max_tokens = max_tokens
        self.calls = 0
        self.seconds: dict[str, float] = {}    # response model → judge time spent on uncached calls

    def generate(self, prompt: str, response_model):
        schema = constrain_schema(response_model.model_json_schema())
        key = ("judge", self.model, prompt, schema)
        raw = self.cache.get(key) if self.cache is not None else None
        if raw is None:
            self.calls += 1
            name, t0 = response_model.__name__, time.perf_counter()
            # one llama.cpp context per response type: each keeps its prompt's fixed prefix evaluated
            raw = chat_json(prompt, schema, model=self.model, max_tokens=self.max_tokens, slot=f"judge:{name}")
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            if self.cache is not None:
                self.cache.put(key, raw)
        # A truncated or off-schema answer raises here; the metric scores it NaN and we count it.
        # strict=False: llama-cpp-python's grammar lets raw control characters (a newline) into JSON strings,
        # which a strict parser rejects although the answer is otherwise well formed.
        try:
            obj = json.loads(raw, strict=False)
        except json.JSONDecodeError:
            return response_model.model_validate_json(raw)     # raises the ValidationError that gets counted
        return response_model.model_validate(obj)

    async def agenerate(self, prompt: str, response_model):
        return await asyncio.to_thread(self.generate, prompt, response_model)


MAX_STATEMENTS = 12        # statements the judge may extract from one answer or reference (answers are ≤ 64 tokens)
STATEMENT_MAX_CHARS = 200   # 12 × 200 characters stay well inside the judge's 1,024-token cap


def constrain_schema(schema: Any, reason_max_chars: int = 160) -> Any:
    """The response schema a local judge decodes under: a lone list non-empty, free-text reasons capped.

    ragas asks a judge for a list only about a non-empty input (the statements of an
    answer, one verdict per statement), and an empty list turns the metric into NaN.
    The 0.5B judge returned ``[]`` for every short non-committal SciFact answer, so the
    decoding grammar requires one item. Not where an object holds several lists: those
    partition the statements (answer correctness' TP/FP/FN), and any of them may be empty.
    Reasons are capped because decoding is the cost (~13 tokens/s here): an uncapped
    verdict list ran past 2,500 characters.

    >>> constrain_schema({"type": "array", "items": {"type": "string"}})
    {'type': 'array', 'items': {'type': 'string', 'maxLength': 200}, 'minItems': 1, 'maxItems': 12}
    >>> constrain_schema({"type": "object", "properties": {"TP": {"type": "array"}, "FP": {"type": "array"}}})
    {'type': 'object', 'properties': {'TP': {'type': 'array'}, 'FP': {'type': 'array'}}}
    """
    return _constrain(schema, reason_max_chars, lone=True)


def _constrain(schema: Any, reason_max_chars: int, lone: bool) -> Any:
    if isinstance(schema, list):
        return [_constrain(x, reason_max_chars, lone) for x in schema]
    if not isinstance(schema, dict):
        return schema
    props = schema.get("properties")
    arrays = sum(1 for v in props.values() if isinstance(v, dict) and v.get("type") == "array") \
        if isinstance(props, dict) else 0
    out = {}
    for k, v in schema.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {name: _constrain(p, reason_max_chars, lone=arrays <= 1) for name, p in v.items()}
        else:
            out[k] = _constrain(v, reason_max_chars, lone=True)
    if out.get("type") == "array" and lone:
        out.setdefault("minItems", 1)
        if out.get("items", {}).get("type") == "string":
            # statement lists: the 0.5B judge once repeated statements until the token cap cut the JSON
            # (5,346 characters for a two-sentence answer); a capped list always closes
            out.setdefault("maxItems", MAX_STATEMENTS)
            out["items"] = {**out["items"], "maxLength": out["items"].get("maxLength", STATEMENT_MAX_CHARS)}
    props = out.get("properties")
    if isinstance(props, dict) and props.get("reason", {}).get("type") == "string":
        props["reason"] = {**props["reason"], "maxLength": reason_max_chars}
    return out


def openai_judge(url: str, model: str, api_key: str | None = None):
    """A ragas judge on any OpenAI-compatible endpoint (vLLM, llama.cpp server, OpenAI, …)."""
    from openai import AsyncOpenAI
    from ragas.llms import llm_factory

    client = AsyncOpenAI(base_url=url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "not-needed"))
    return llm_factory(model, client=client)
