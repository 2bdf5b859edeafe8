"""The packaged local LLM (Qwen2.5-Coder-0.5B GGUF via llama.cpp) as a LlamaIndex ``CustomLLM``.

It drops into ``RetrieverQueryEngine`` (complete and streaming). llama-index's
own llama.cpp integration is a separate package pinned to other core
versions; this adapter is 40 lines. Kept apart from :mod:`rag_eval.llm` so the
app can stream answers without importing ragas.

Example:
    >>> from honed.retriever.generator import LocalLLM
    >>> llm = LocalLLM(max_tokens=32)                       # doctest: +SKIP
    >>> "".join(r.delta for r in llm.stream_complete("Say hi"))   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr

from .local_llm import LOCK as _LOCK
from .local_llm import load_llama


class LocalLLM(CustomLLM):
    """A llama.cpp chat model for LlamaIndex (greedy decoding, streaming supported)."""

    model: str = "qwen"
    max_tokens: int = 128
    context_window: int = 4096
    _llama: Any = PrivateAttr()
    _cache: Any = PrivateAttr(default=None)

    def __init__(self, model: str = "qwen", max_tokens: int = 128, cache: Any = None, **kw: Any):
        # cache: anything with get(key)/put(key, value), e.g. rag_eval.cache.JsonCache
        super().__init__(model=model, max_tokens=max_tokens, **kw)
        self._llama = load_llama(model, n_ctx=self.context_window)
        self._cache = cache

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.max_tokens, model_name=self.model,
                           is_chat_model=False)

    def _chat(self, prompt: str, stream: bool = False):
        return self._llama.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                                  max_tokens=self.max_tokens, temperature=0.0, stream=stream)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        key = ("gen", self.model, self.max_tokens, prompt)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return CompletionResponse(text=hit)
        with _LOCK:
            text = self._chat(prompt)["choices"][0]["message"]["content"] or ""
        if self._cache is not None:
            self._cache.put(key, text)
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        # one llama.cpp context is shared by every caller (app sessions are threads): hold the lock while streaming
        with _LOCK:
            for chunk in self._chat(prompt, stream=True):
                delta = chunk["choices"][0]["delta"].get("content") or ""
                text += delta
                yield CompletionResponse(text=text, delta=delta)
