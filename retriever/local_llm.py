"""The packaged local instruct LLM (Qwen2.5-Coder-0.5B GGUF) through llama.cpp.

Used to write synthetic training queries (here) and, in ``rag_eval``, to
generate answers and judge them. One process-wide lock: a llama.cpp context
must not be called from two threads at once.

Example:
    >>> from retriever.local_llm import chat_json
    >>> chat_json("List two colours.", {"type": "object", "properties": {"colours": {"type": "array"}}})  # doctest: +SKIP
    {'colours': ['red', 'blue']}
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

from .errors import HonedError
from .models import resolve_model

LOCK = threading.Lock()
_LLAMAS: dict[tuple, Any] = {}


def load_llama(model: str = "qwen", n_ctx: int = 4096, threads: int | None = None):
    """Load (once per process) a GGUF model with llama.cpp."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise HonedError("the local LLM needs llama-cpp-python: run `pip install llama-cpp-python` "
                         "(builds from source in ~15 min on 2 cores)") from None
    path = resolve_model(model)
    key = (str(path), n_ctx)
    if key not in _LLAMAS:
        _LLAMAS[key] = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(),
                             verbose=False, seed=0)
    return _LLAMAS[key]


def chat_json(prompt: str, schema: dict, model: str = "qwen", max_tokens: int = 256,
              system: str = "Answer with JSON only.") -> str:
    """One greedy chat completion constrained to `schema` (llama.cpp grammar); returns the raw JSON text."""
    llama = load_llama(model)
    with LOCK:
        out = llama.create_chat_completion(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            response_format={"type": "json_object", "schema": schema}, temperature=0.0, max_tokens=max_tokens)
    return out["choices"][0]["message"]["content"] or ""


def parse_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None
