"""The packaged local LLM (Qwen2.5-Coder-0.5B GGUF via llama.cpp) as a generator and as a ragas judge.

- :class:`LocalLLM` is a LlamaIndex ``CustomLLM`` (complete + streaming), so it
  drops into ``RetrieverQueryEngine``. llama-index's own llama.cpp integration is
  a separate package pinned to other core versions; this adapter is 40 lines.
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

from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr
from ragas.llms.base import InstructorBaseRagasLLM

from retriever.local_llm import LOCK as _LOCK
from retriever.local_llm import chat_json, load_llama

from .cache import JsonCache

class LocalLLM(CustomLLM):
    """A llama.cpp chat model for LlamaIndex (greedy decoding, streaming supported)."""

    model: str = "qwen"
    max_tokens: int = 128
    context_window: int = 4096
    _llama: Any = PrivateAttr()
    _cache: Any = PrivateAttr(default=None)

    def __init__(self, model: str = "qwen", max_tokens: int = 128, cache: JsonCache | None = None, **kw: Any):
        super().__init__(model=model, max_tokens=max_tokens, **kw)
        self._llama = load_llama(model, n_ctx=self.context_window)
        self._cache = cache

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.max_tokens, model_name=self.model,
                           is_chat_model=False)

    def _chat(self, prompt: str, stream: bool = False):
        with _LOCK:
            return self._llama.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                                      max_tokens=self.max_tokens, temperature=0.0, stream=stream)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        key = ("gen", self.model, self.max_tokens, prompt)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return CompletionResponse(text=hit)
        text = self._chat(prompt)["choices"][0]["message"]["content"] or ""
        if self._cache is not None:
            self._cache.put(key, text)
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        for chunk in self._chat(prompt, stream=True):
            delta = chunk["choices"][0]["delta"].get("content") or ""
            text += delta
            yield CompletionResponse(text=text, delta=delta)


class LocalJudge(InstructorBaseRagasLLM):
    """A ragas judge on the local GGUF model with JSON-schema-constrained decoding, cached."""

    def __init__(self, model: str = "qwen", cache: JsonCache | None = None, max_tokens: int = 512):
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
