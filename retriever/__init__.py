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

__version__ = "0.2.0"

_LAZY = ("HonedRetriever", "HonedEmbedding", "build_index", "load_index", "Index", "load_encoder",
         "resolve_model", "fetch_model", "load_beir", "HonedError")

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:   # resolved (lazily) by the public API in honed/__init__.py
        import honed

        return getattr(honed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
