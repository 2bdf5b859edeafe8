"""``HonedRetriever``: a tuned embedder + FAISS index as a LlamaIndex retriever.

Example:
    >>> from retriever import HonedRetriever
    >>> r = HonedRetriever.from_dir("indexes/scifact-minilm", similarity_top_k=10)  # doctest: +SKIP
    >>> nodes = r.retrieve("0-dimensional biomaterials show inductive properties")  # doctest: +SKIP
    >>> from llama_index.core.query_engine import RetrieverQueryEngine
    >>> engine = RetrieverQueryEngine.from_args(r, llm=my_llm)                      # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from .filters import allowed_positions
from .index import Index, check_compatible, open_index_and_encoder, search


def hits_to_nodes(index: Index, hits: list[tuple[int, float]]) -> list[NodeWithScore]:
    """Turn (position, score) hits into LlamaIndex nodes carrying doc id, title and metadata."""
    nodes = []
    for pos, score in hits:
        doc = index.docs[pos]
        meta = {**doc.get("metadata", {}), "doc_id": doc["id"]}
        if doc.get("title"):
            meta["title"] = doc["title"]
        node = TextNode(id_=doc["id"], text=doc["text"], metadata=meta,
                        excluded_embed_metadata_keys=list(meta),
                        excluded_llm_metadata_keys=[k for k in meta if k != "title"])
        nodes.append(NodeWithScore(node=node, score=score))
    return nodes


class HonedRetriever(BaseRetriever):
    """Dense retrieval over a honed index folder, returning ``NodeWithScore`` with doc ids.

    Args:
        index: a loaded :class:`~retriever.index.Index`.
        encoder: the model that built it (checked by fingerprint and dimension).
        similarity_top_k: how many nodes to return.
        filters: optional LlamaIndex ``MetadataFilters`` applied exactly inside FAISS.
    """

    def __init__(self, index: Index, encoder, similarity_top_k: int = 10, filters=None,
                 **kwargs: Any) -> None:
        check_compatible(index, encoder)
        self._index = index
        self._encoder = encoder
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        super().__init__(**kwargs)

    @classmethod
    def from_dir(cls, path: str | os.PathLike, model: str | os.PathLike | None = None,
                 similarity_top_k: int = 10, filters=None, **kwargs: Any) -> "HonedRetriever":
        """Open an index folder with the model recorded in its manifest (or `model`)."""
        index, encoder = open_index_and_encoder(path, model)
        return cls(index, encoder, similarity_top_k=similarity_top_k, filters=filters, **kwargs)

    @property
    def index(self) -> Index:
        return self._index

    @property
    def encoder(self):
        return self._encoder

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vec = query_bundle.embedding or self._encoder.encode_queries([query_bundle.query_str])[0]
        allowed = allowed_positions(self._index.docs, self.filters)
        hits = search(self._index, vec, self.similarity_top_k, allowed=allowed)[0]
        return hits_to_nodes(self._index, hits)

