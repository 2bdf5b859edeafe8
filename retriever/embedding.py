"""``HonedEmbedding``: the honed/sentence-transformers model as a LlamaIndex ``BaseEmbedding``.

Use it to build your own LlamaIndex indices with a tuned model.

Example:
    >>> from honed.retriever.embedding import HonedEmbedding
    >>> from llama_index.core import Settings
    >>> Settings.embed_model = HonedEmbedding(model_name="runs/cuad-tuned")   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr


class HonedEmbedding(BaseEmbedding):
    """Query and document embeddings from a honed model (query/document prompts respected)."""

    _encoder: Any = PrivateAttr()

    def __init__(self, model_name: str = "minilm", embed_batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(model_name=model_name, embed_batch_size=embed_batch_size, **kwargs)
        from .encoder import load_encoder

        self._encoder = load_encoder(model_name, batch_size=embed_batch_size)

    @classmethod
    def class_name(cls) -> str:
        return "HonedEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode_queries([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.encode_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode_documents(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)
