"""honed's retrieval library: models, encoders, FAISS indexes and the LlamaIndex retriever.

Names are imported lazily so ``import retriever`` costs milliseconds; torch and
LlamaIndex load only when a name that needs them is first used.

Example:
    >>> from retriever import HonedRetriever, build_index
    >>> build_index("minilm", "datasets/cuad-clauses", "indexes/cuad-minilm")   # doctest: +SKIP
    >>> r = HonedRetriever.from_dir("indexes/cuad-minilm", similarity_top_k=5)  # doctest: +SKIP
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "HonedRetriever": "retriever.honed_retriever",
    "HonedEmbedding": "retriever.embedding",
    "build_index": "retriever.index",
    "load_index": "retriever.index",
    "Index": "retriever.index",
    "load_encoder": "retriever.encoder",
    "resolve_model": "retriever.models",
    "fetch_model": "retriever.models",
    "load_beir": "retriever.data.beir",
    "HonedError": "retriever.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'retriever' has no attribute {name!r}")
