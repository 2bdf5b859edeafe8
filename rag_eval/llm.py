"""The packaged local LLM (Qwen2.5-Coder-0.5B GGUF via llama.cpp) as a generator and as a ragas judge.

- :class:`~retriever.generator.LocalLLM` (re-exported here) is the generator.
- :class:`LocalJudge` implements ragas' ``InstructorBaseRagasLLM``: every call
  carries the metric's pydantic response model, which is turned into a JSON
  schema for llama.cpp's constrained decoding, so a small local model always
  returns parseable JSON (the known NaN problem of local judges).
- :func:`openai_judge` uses any OpenAI-compatible endpoint instead.

Example:
    >>> from rag_eval.llm import LocalLLM, LocalJudge
    >>> llm = LocalLLM()                                   # doctest: +SKIP
    >>> llm.complete("Say hi").text                        # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

from ragas.llms.base import InstructorBaseRagasLLM

from retriever.generator import LocalLLM  # noqa: F401  (re-exported: the RAG pipeline's generator)
from retriever.local_llm import chat_json, load_llama

from .cache import JsonCache


class LocalJudge(InstructorBaseRagasLLM):
    """A ragas judge on the local GGUF model with JSON-schema-constrained decoding, cached."""

    def __init__(self, model: str = "qwen", cache: JsonCache | None = None, max_tokens: int = 1024):
        # 512 truncated one SciFact verdict list mid-JSON (a NaN); the cap only costs time when it is reached
        self.model = model
        self.llama = load_llama(model)
        self.cache = cache
        self.max_tokens = max_tokens
        self.calls = 0

    def generate(self, prompt: str, response_model):
        schema = response_model.model_json_schema()
        key = ("judge", self.model, prompt, schema)
        raw = self.cache.get(key) if self.cache is not None else None
        if raw is None:
            self.calls += 1
            raw = chat_json(prompt, schema, model=self.model, max_tokens=self.max_tokens)
            if self.cache is not None:
                self.cache.put(key, raw)
        # A truncated or off-schema answer raises here; the metric scores it NaN and we count it.
        return response_model.model_validate_json(raw)

    async def agenerate(self, prompt: str, response_model):
        return await asyncio.to_thread(self.generate, prompt, response_model)


def openai_judge(url: str, model: str, api_key: str | None = None):
    """A ragas judge on any OpenAI-compatible endpoint (vLLM, llama.cpp server, OpenAI, …)."""
    from openai import AsyncOpenAI
    from ragas.llms import llm_factory

    client = AsyncOpenAI(base_url=url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "not-needed"))
    return llm_factory(model, client=client)
