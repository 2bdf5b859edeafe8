"""``HonedVectorStore``: a honed artifact as a LlamaIndex vector store (add, delete, filtered query).

LlamaIndex's own FAISS store keeps no documents and supports neither delete nor
metadata filters; this one is backed by the artifact's SQLite document store
and FAISS labels, so ``VectorStoreIndex.from_vector_store`` works with the tuned
embedder and every change is written in place, atomically. Async methods run
the work in a thread, so encoding and search never block the event loop.

Example:
    >>> from llama_index.core import VectorStoreIndex, Document
    >>> from honed import HonedEmbedding, HonedVectorStore
    >>> store = HonedVectorStore.from_dir("indexes/cuad-clauses-test-tuned")                  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model())     # doctest: +SKIP
    >>> index.insert(Document(text="Liability is capped at the fees paid.", id_="contract-9"))  # doctest: +SKIP
    >>> index.as_retriever(similarity_top_k=3).retrieve("cap on liability")                   # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, List, Optional, Sequence

import numpy as np
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import (BasePydanticVectorStore, MetadataFilters, VectorStoreQuery,
                                                  VectorStoreQueryResult)
from pydantic import PrivateAttr

from .honed_retriever import doc_node
from .index import Index, load_index, search
from .updates import add_documents, delete_documents, delete_ref_doc


class HonedVectorStore(BasePydanticVectorStore):
    """Nodes, their vectors and metadata in a honed artifact; queries are exact within filters."""

    stores_text: bool = True
    flat_metadata: bool = False
    _index: Index = PrivateAttr()

    def __init__(self, index: Index, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index = index

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "HonedVectorStore":
        return cls(load_index(path))

    @classmethod
    def class_name(cls) -> str:
        return "HonedVectorStore"

    @property
    def client(self) -> Index:
        return self._index

    def embed_model(self, embed_batch_size: int = 32):
        """The artifact's own model as a LlamaIndex embedding (the one its vectors were made with)."""
        from .embedding import HonedEmbedding

        return HonedEmbedding(model_name=str(self._index.model_dir), embed_batch_size=embed_batch_size)

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        """Store nodes with the embeddings LlamaIndex computed; a node id already stored is replaced."""
        if not nodes:
            return []
        vecs = np.asarray([n.get_embedding() for n in nodes], dtype=np.float32)
        vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)   # inner product = cosine
        docs = [{"id": n.node_id, "text": n.get_content(), "metadata": dict(n.metadata),
                 "ref_doc_id": n.ref_doc_id} for n in nodes]
        with self._index.lock:
            add_documents(self._index, docs, vectors=vecs, upsert=True)
        return [n.node_id for n in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of one source document."""
        with self._index.lock:
            delete_ref_doc(self._index, ref_doc_id)

    def delete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                     **delete_kwargs: Any) -> None:
        with self._index.lock:
            ids = list(node_ids or [])
            if filters is not None:
                picked = {d["id"] for d in self._index.docs_at(self._index.store.select(filters).tolist()) if d}
                ids = [i for i in ids if i in picked] if node_ids else sorted(picked)
            delete_documents(self._index, ids)

    def get_nodes(self, node_ids: Optional[List[str]] = None,
                  filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        with self._index.lock:
            if node_ids is not None:
                labels = list(self._index.store.positions_of(node_ids).values())
            else:
                labels = [p for p, _ in self._index.store.iter_docs()]
            if filters is not None:
                keep = set(self._index.store.select(filters).tolist())
                labels = [p for p in labels if p in keep]
            return [doc_node(d) for d in self._index.docs_at(labels) if d]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.query_embedding is None:
            raise ValueError("HonedVectorStore answers embedding queries only (is_embedding_query)")
        with self._index.lock:
            allowed = None
            if query.filters is not None and query.filters.filters:
                allowed = self._index.store.select(query.filters)
            if query.node_ids:
                ids = np.asarray(list(self._index.store.positions_of(query.node_ids).values()), dtype=np.int64)
                allowed = ids if allowed is None else np.intersect1d(allowed, ids)
            vec = np.asarray(query.query_embedding, dtype=np.float32)
            vec /= max(float(np.linalg.norm(vec)), 1e-12)
            hits = search(self._index, vec, query.similarity_top_k, allowed=allowed)[0]
            docs = self._index.docs_at([p for p, _ in hits])
        nodes: list[TextNode] = []
        sims, ids = [], []
        for d, (_, s) in zip(docs, hits):
            if d is not None:
                nodes.append(doc_node(d))
                sims.append(s)
                ids.append(d["id"])
        return VectorStoreQueryResult(nodes=nodes, similarities=sims, ids=ids)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                            **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters)

    async def aget_nodes(self, node_ids: Optional[List[str]] = None,
                         filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)
