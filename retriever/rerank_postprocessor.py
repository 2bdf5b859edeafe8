"""``HonedRerank``: a honed reranker as a LlamaIndex node postprocessor, for pipelines users compose themselves.

``HonedRetriever.from_dir(path, rerank_top_n=50)`` reranks inside the retriever;
this postprocessor does the same after *any* retriever (another vector store,
a fusion retriever), torch-free when the reranker has an ONNX export.

Example:
    >>> from honed.retriever.rerank_postprocessor import HonedRerank
    >>> rerank = HonedRerank.from_dir("dist/cuad-retriever", top_n=5)      # doctest: +SKIP
    >>> from llama_index.core.query_engine import RetrieverQueryEngine
    >>> engine = RetrieverQueryEngine.from_args(my_retriever, llm=my_llm,
    ...                                         node_postprocessors=[rerank])  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, List, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from .index import recorded_rerank_weight
from .mixing import weighted
from .reranker import Reranker, load_reranker


def node_text(node: NodeWithScore) -> str:
    """What the reranker reads: the node's embed content, after its title when the title is kept out of it
    (honed's nodes), the way passages were scored in training (``title text``)."""
    text = node.node.get_content(metadata_mode=MetadataMode.EMBED)
    title = (node.node.metadata.get("title") or "").strip()
    return f"{title} {text}" if title and not text.startswith(title) else text


class HonedRerank(BaseNodePostprocessor):
    """Reorder nodes by a honed cross-encoder's scores and keep the `top_n`."""

    top_n: int = Field(default=10, description="Number of nodes to return, best first.")
    keep_retrieval_score: bool = Field(default=False, description="Keep the first stage's score in metadata.")
    weight: Optional[float] = Field(default=None, ge=0.0, le=1.0, description=(
        "Mix w · reranker + (1 − w) · the incoming score (each min-max normalised over the nodes); None: the "
        "reranker's score alone."))
    _reranker: Any = PrivateAttr()

    def __init__(self, reranker: Reranker, top_n: int = 10, keep_retrieval_score: bool = False,
                 weight: Optional[float] = None, **kwargs: Any):
        super().__init__(top_n=top_n, keep_retrieval_score=keep_retrieval_score, weight=weight, **kwargs)
        self._reranker = reranker

    @classmethod
    def from_dir(cls, path: str | os.PathLike, top_n: int = 10, variant: str = "auto", **kwargs: Any) -> "HonedRerank":
        """A reranker folder, or an artifact carrying one (``honed package --reranker``): then mixed with the
        incoming scores at the artifact's weight, as its own retriever reranks, unless `weight` is given."""
        kwargs.setdefault("weight", recorded_rerank_weight(path))
        return cls(load_reranker(path, variant=variant), top_n=top_n, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "HonedRerank"

    def _postprocess_nodes(self, nodes: List[NodeWithScore],
                           query_bundle: Optional[QueryBundle] = None) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("HonedRerank needs the query: call it with query_bundle (query engines do)")
        if not nodes:
            return []
        with self.callback_manager.event(CBEventType.RERANKING, payload={
                EventPayload.NODES: nodes, EventPayload.MODEL_NAME: self._reranker.path,
                EventPayload.QUERY_STR: query_bundle.query_str, EventPayload.TOP_K: self.top_n}) as event:
            scores = self._reranker.score(query_bundle.query_str, [node_text(n) for n in nodes])
            if self.weight is not None:
                mixed = dict(weighted(list(enumerate(scores)), [(i, n.score or 0.0) for i, n in enumerate(nodes)],
                                      self.weight, len(nodes)))
                scores = [mixed[i] for i in range(len(nodes))]
            for node, score in zip(nodes, scores):
                if self.keep_retrieval_score:
                    node.node.metadata["retrieval_score"] = node.score
                node.score = float(score)
            ranked = sorted(nodes, key=lambda n: -n.score)[:self.top_n]
            event.on_end(payload={EventPayload.NODES: ranked})
        return ranked
