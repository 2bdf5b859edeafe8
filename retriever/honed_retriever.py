"""``HonedRetriever``: a tuned embedder + FAISS index as a LlamaIndex retriever.

Example:
    >>> from honed import HonedRetriever
    >>> r = HonedRetriever.from_dir("indexes/cuad-clauses-test-tuned", similarity_top_k=5)  # doctest: +SKIP
    >>> nodes = r.retrieve("Is there a cap on liability?")                                  # doctest: +SKIP
    >>> hybrid = HonedRetriever.from_dir("indexes/cuad-hybrid", mode="hybrid")               # doctest: +SKIP
    >>> two_stage = HonedRetriever.from_dir("dist/cuad-retriever", rerank_top_n=50)          # doctest: +SKIP
    >>> r.insert({"new-1": {"text": "Liability is capped at the fees paid."}})              # doctest: +SKIP
    >>> r.delete(["new-1"])                                                                 # doctest: +SKIP
    >>> from llama_index.core.query_engine import RetrieverQueryEngine
    >>> engine = RetrieverQueryEngine.from_args(r, llm=my_llm)                              # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from .fusion import check_mode, search_modes
from .index import Index, check_compatible, open_index_and_encoder


def doc_node(doc: dict) -> TextNode:
    """A LlamaIndex node for a stored document: its id, text, title and metadata."""
    meta = {**doc.get("metadata", {}), "doc_id": doc["id"]}
    if doc.get("title"):
        meta["title"] = doc["title"]
    node = TextNode(id_=doc["id"], text=doc["text"], metadata=meta, excluded_embed_metadata_keys=list(meta),
                    excluded_llm_metadata_keys=[k for k in meta if k != "title"])
    if doc.get("ref_doc_id"):   # a node added through LlamaIndex: keep its link to the source document
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc["ref_doc_id"])
    return node


def hits_to_nodes(index: Index, hits: list[tuple[int, float]]) -> list[NodeWithScore]:
    """Turn (label, score) hits into LlamaIndex nodes carrying doc id, title and metadata."""
    docs = index.docs_at([label for label, _ in hits])
    return [NodeWithScore(node=doc_node(d), score=s) for d, (_, s) in zip(docs, hits) if d is not None]


def retrieve_nodes(index: Index, encoder, query: str, k: int, filters=None, embedding=None,
                   mode: str = "dense", reranker=None, rerank_top_n: int = 0) -> list[NodeWithScore]:
    """Encode the query, search in `mode` (exactly, within `filters`), optionally rerank the top
    `rerank_top_n` with `reranker`, and return the top `k` as nodes."""
    from .reranker import rerank

    vec = None
    if mode != "bm25":
        vec = np.asarray(embedding if embedding is not None else encoder.encode_queries([query])[0],
                         dtype=np.float32).reshape(1, -1)
    allowed = index.store.select(filters) if filters is not None and filters.filters else None
    depth = max(k, rerank_top_n) if reranker is not None else k
    hits = search_modes(index, vec, [query], depth, mode, allowed=allowed)
    if reranker is not None:
        hits = rerank(index, reranker, [query], hits, k)
    return hits_to_nodes(index, hits[0])


class HonedRetriever(BaseRetriever):
    """Dense retrieval over a honed artifact, returning ``NodeWithScore`` with doc ids.

    Args:
        index: an open :class:`~honed.retriever.index.Index`.
        encoder: the model that built it (checked by fingerprint and dimension).
        similarity_top_k: how many nodes to return.
        filters: optional LlamaIndex ``MetadataFilters``, applied exactly inside FAISS (and BM25).
        mode: ``dense`` (the embedder), ``bm25``, or ``hybrid`` (both, fused the way the artifact
            records, else by reciprocal rank); the last two need an artifact built with a BM25 index.
        reranker: a :class:`~honed.retriever.reranker.Reranker` that reorders the first stage's
            top `rerank_top_n` (``from_dir(..., rerank_top_n=50)`` opens the artifact's own).
    """

    def __init__(self, index: Index, encoder, similarity_top_k: int = 10, filters=None,
                 mode: str = "dense", reranker=None, rerank_top_n: int = 50, **kwargs: Any) -> None:
        check_compatible(index, encoder)
        check_mode(index, mode)
        self._index = index
        self._encoder = encoder
        self._reranker = reranker
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        self.mode = mode
        self.rerank_top_n = rerank_top_n
        super().__init__(**kwargs)

    @classmethod
    def from_dir(cls, path: str | os.PathLike, model: str | os.PathLike | None = None,
                 similarity_top_k: int = 10, filters=None, mode: str = "dense", rerank_top_n: int | None = None,
                 **kwargs: Any) -> "HonedRetriever":
        """Open an artifact with the model inside it (torch-free when it has an ONNX export), or `model`;
        with `rerank_top_n`, its reranker too, rescoring that many first-stage candidates per query."""
        from .reranker import artifact_reranker

        index, encoder = open_index_and_encoder(path, model)
        reranker = artifact_reranker(index) if rerank_top_n else None
        return cls(index, encoder, similarity_top_k=similarity_top_k, filters=filters, mode=mode,
                   reranker=reranker, rerank_top_n=rerank_top_n or 50, **kwargs)

    @property
    def index(self) -> Index:
        return self._index

    @property
    def encoder(self):
        return self._encoder

    def insert(self, documents, upsert: bool = False) -> dict:
        """Add documents (``{id: {"text", "title"?, "metadata"?}}``) in place; see :mod:`~honed.retriever.updates`."""
        from .updates import add_documents

        return add_documents(self._index, documents, encoder=self._encoder, upsert=upsert)

    def delete(self, ids) -> dict:
        """Delete documents by id, in place; a deleted id never comes back in results."""
        from .updates import delete_documents

        return delete_documents(self._index, ids)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return retrieve_nodes(self._index, self._encoder, query_bundle.query_str, self.similarity_top_k,
                              self.filters, query_bundle.embedding, self.mode, self._reranker, self.rerank_top_n)
