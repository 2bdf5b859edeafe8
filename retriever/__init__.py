"""honed's retrieval library: models, encoders, FAISS indexes and the LlamaIndex retriever.

Names are imported lazily so ``import honed.retriever`` costs milliseconds; torch and
LlamaIndex load only when a name that needs them is first used. The public API
is re-exported by :mod:`honed`.

Example:
    >>> from honed.retriever import HonedRetriever, build_index
    >>> build_index("minilm", "datasets/cuad-clauses", "indexes/cuad-minilm")   # doctest: +SKIP
    >>> r = HonedRetriever.from_dir("indexes/cuad-minilm", similarity_top_k=5)  # doctest: +SKIP
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_LAZY = {
    "HonedRetriever": ".honed_retriever",
    "HonedEmbedding": ".embedding",
    "build_index": ".index",
    "load_index": ".index",
    "Index": ".index",
    "load_encoder": ".encoder",
    "resolve_model": ".models",
    "fetch_model": ".models",
    "load_beir": ".data.beir",
    "HonedError": ".errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
