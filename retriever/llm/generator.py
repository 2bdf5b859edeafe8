"""The answer generator: the packaged local GGUF model, any OpenAI-compatible server, or any LlamaIndex LLM.

:func:`make_llm` turns what a user passes to ``--llm`` into a LlamaIndex LLM:

- a GGUF reference (``qwen``, a path) → :class:`LocalLLM` (llama.cpp, greedy);
- ``URL#model`` (``http://127.0.0.1:8080/v1#qwen``) → :class:`OpenAICompatibleLLM`
  (vLLM, llama.cpp's server, Ollama, OpenAI, …; the key is read from ``OPENAI_API_KEY``);
- a LlamaIndex LLM object (from Python) → itself.

Both classes drop into ``RetrieverQueryEngine`` (complete and streaming).
llama-index's own llama.cpp and OpenAI-like integrations are separate packages
pinned to other core and ``openai`` versions than honed's; these adapters are
a few lines each over the clients honed already has. Kept apart from
:mod:`rag_eval.judge` so the app can stream answers without importing ragas.

Example:
    >>> from honed.retriever.llm.generator import make_llm
    >>> llm = make_llm("qwen", max_tokens=32)                      # doctest: +SKIP
    >>> "".join(r.delta for r in llm.stream_complete("Say hi"))   # doctest: +SKIP
    >>> remote = make_llm("http://127.0.0.1:8080/v1#qwen")         # doctest: +SKIP
"""
from __future__ import annotations

import functools
import os
from abc import abstractmethod
from typing import Any, Iterator

from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr

from ..errors import HonedError
from .llama import llama_cpp_module


def make_llm(spec: Any = "qwen", max_tokens: int = 128, cache: Any = None):
    """A LlamaIndex LLM from ``--llm``: a GGUF reference, ``URL#model``, or an LLM object (returned as is)."""
    if not isinstance(spec, str):
        return spec
    if is_url_spec(spec):
        url, _, model = spec.partition("#")
        return OpenAICompatibleLLM(base_url=url, model=model or "default", max_tokens=max_tokens, cache=cache)
    return LocalLLM(spec, max_tokens=max_tokens, cache=cache)


def is_url_spec(spec: str) -> bool:
    return spec.startswith("http://") or spec.startswith("https://")


def chat_json(prompt: str, schema: dict, model: str = "qwen", max_tokens: int = 256,
              system: str = "Answer with JSON only.", slot: str = "") -> str:
    """One greedy chat completion constrained to `schema` (llama.cpp grammar); returns the raw JSON text.

    `model` is a GGUF reference (run in the local-LLM child process) or ``URL#model`` (an
    OpenAI-compatible server, asked for JSON in the prompt and the response format).
    """
    if is_url_spec(model):
        return _remote_llm(model, max_tokens).chat_json(prompt, schema, system=system)
    from .process import llm_process

    llama_cpp_module()        # a missing llama-cpp-python is a one-line error here, not in the child
    out = llm_process().chat(
        model=model, n_ctx=4096, slot=slot,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        response_format={"type": "json_object", "schema": schema}, temperature=0.0, max_tokens=max_tokens)
    return out["choices"][0]["message"]["content"] or ""


@functools.lru_cache(maxsize=8)
def _remote_llm(spec: str, max_tokens: int):
    return make_llm(spec, max_tokens=max_tokens)


def describe_llm(llm: Any) -> str:
    """How a report names a generator: ``qwen``, ``http://…/v1#model``, or the object's class and model."""
    if isinstance(llm, _ChatLLM):
        return llm.label
    name = getattr(getattr(llm, "metadata", None), "model_name", None)
    return f"{type(llm).__name__}({name})" if name else type(llm).__name__


class _ChatLLM(CustomLLM):
    """Greedy chat completion for LlamaIndex, cached: subclasses say how to complete and stream one prompt."""

    model: str = "qwen"
    max_tokens: int = 128
    context_window: int = 4096
    _cache: Any = PrivateAttr(default=None)     # anything with get(key)/put(key, value), e.g. rag_eval.cache.JsonCache

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.max_tokens, model_name=self.model,
                           is_chat_model=False)

    @property
    @abstractmethod
    def label(self) -> str:
        """How a report names this generator (``qwen``, ``http://…/v1#model``)."""

    @abstractmethod
    def _cache_key(self, prompt: str) -> tuple:
        """What identifies this completion in the cache: the generator, its settings and the prompt."""

    @abstractmethod
    def _complete_text(self, prompt: str) -> str:
        """The whole answer to one prompt."""

    @abstractmethod
    def _stream_deltas(self, prompt: str) -> Iterator[str]:
        """The answer to one prompt, piece by piece."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        key = self._cache_key(prompt)
        hit = self._cache.get(key) if self._cache is not None else None
        if hit is not None:
            return CompletionResponse(text=hit)
        text = self._complete_text(prompt)
        if self._cache is not None:
            self._cache.put(key, text)
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        for delta in self._stream_deltas(prompt):
            text += delta
            yield CompletionResponse(text=text, delta=delta)


class LocalLLM(_ChatLLM):
    """A llama.cpp chat model for LlamaIndex (greedy decoding, streaming supported).

    The model runs in the local-LLM child process (:mod:`.llm_process`): a native crash ends
    the answer being written with :class:`~.llm_process.LocalLLMCrashed`, not the caller.
    """

    def __init__(self, model: str = "qwen", max_tokens: int = 128, cache: Any = None, **kw: Any):
        from ..models import resolve_model

        super().__init__(model=model, max_tokens=max_tokens, **kw)
        llama_cpp_module()
        resolve_model(model)          # a missing model is a one-line error now, not at the first answer
        self._cache = cache

    @property
    def label(self) -> str:
        return self.model

    def _cache_key(self, prompt: str) -> tuple:
        return ("gen", self.model, self.max_tokens, prompt)

    def _request(self, prompt: str) -> dict:
        return dict(model=self.model, n_ctx=self.context_window, slot="",
                    messages=[{"role": "user", "content": prompt}], max_tokens=self.max_tokens, temperature=0.0)

    def _complete_text(self, prompt: str) -> str:
        from .process import llm_process

        return llm_process().chat(**self._request(prompt))["choices"][0]["message"]["content"] or ""

    def _stream_deltas(self, prompt: str) -> Iterator[str]:
        from .process import llm_process

        for chunk in llm_process().stream_chat(**self._request(prompt)):
            yield chunk["choices"][0]["delta"].get("content") or ""


class OpenAICompatibleLLM(_ChatLLM):
    """Chat completions from any OpenAI-compatible server, greedy (temperature 0), cached like :class:`LocalLLM`."""

    base_url: str
    model: str = "default"
    context_window: int = 8192
    timeout_s: float = 120.0
    _client: Any = PrivateAttr()

    def __init__(self, base_url: str, model: str = "default", max_tokens: int = 128, cache: Any = None, **kw: Any):
        from openai import OpenAI

        super().__init__(base_url=base_url, model=model, max_tokens=max_tokens, **kw)
        self._client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                              timeout=self.timeout_s, max_retries=1)
        self._cache = cache

    @property
    def label(self) -> str:
        return f"{self.base_url}#{self.model}"

    def _cache_key(self, prompt: str) -> tuple:
        return ("gen", self.base_url, self.model, self.max_tokens, prompt)

    def _chat(self, prompt: str, stream: bool = False):
        try:
            return self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], max_tokens=self.max_tokens,
                temperature=0.0, stream=stream)
        except Exception as e:   # openai raises connection, status and timeout errors: one line naming the server
            raise HonedError(f"--llm {self.label}: {type(e).__name__}: {str(e)[:160]}") from None

    def _complete_text(self, prompt: str) -> str:
        return self._chat(prompt).choices[0].message.content or ""

    def _stream_deltas(self, prompt: str) -> Iterator[str]:
        for chunk in self._chat(prompt, stream=True):
            yield (chunk.choices[0].delta.content or "") if chunk.choices else ""

    def chat_json(self, prompt: str, schema: dict, system: str = "Answer with JSON only.") -> str:
        """One greedy completion asked to follow `schema`: as a JSON-schema response format where the server
        takes one (llama.cpp's servers do), else as plain JSON mode; the raw text is returned."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        for fmt in ({"type": "json_object", "schema": schema}, {"type": "json_object"}):
            try:
                out = self._client.chat.completions.create(model=self.model, messages=messages, temperature=0.0,
                                                           max_tokens=self.max_tokens, response_format=fmt)
                return out.choices[0].message.content or ""
            except Exception as e:   # a server that refuses the schema field is asked once more without it
                err = e
                if getattr(e, "status_code", None) != 400:
                    break
        raise HonedError(f"--llm {self.label}: {type(err).__name__}: {str(err)[:160]}") from None
