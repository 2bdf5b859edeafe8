"""HonedRetriever and HonedEmbedding inside real LlamaIndex pipelines."""
from __future__ import annotations

from llama_index.core.schema import NodeWithScore
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

from honed.retriever import HonedEmbedding, HonedRetriever
from honed.retriever.index import build_index


def test_retrieve_returns_nodes_with_doc_ids(slice_index, scifact_slice):
    r = HonedRetriever.from_dir(slice_index, similarity_top_k=5)
    qid = next(iter(scifact_slice.queries))
    nodes = r.retrieve(scifact_slice.queries[qid])
    assert len(nodes) == 5 and all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.node_id in scifact_slice.qrels[qid]
    assert nodes[0].node.metadata["doc_id"] == nodes[0].node.node_id
    assert nodes[0].node.get_content() == scifact_slice.corpus[nodes[0].node.node_id]["text"]


def test_query_engine_path(slice_index, scifact_slice):
    # MockLLM stands in for the generator only (the thing under test is the retriever
    # feeding a real RetrieverQueryEngine); the real local LLM is exercised by rag_eval.
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    r = HonedRetriever.from_dir(slice_index, similarity_top_k=3)
    engine = RetrieverQueryEngine.from_args(r, llm=MockLLM(max_tokens=8))
    qid = next(iter(scifact_slice.queries))
    resp = engine.query(scifact_slice.queries[qid])
    assert [n.node.node_id for n in resp.source_nodes] == [n.node.node_id for n in r.retrieve(scifact_slice.queries[qid])]
    assert resp.source_nodes[0].node.node_id in scifact_slice.qrels[qid]


def test_metadata_filters_are_exact(tmp_path, minilm):
    corpus = {f"d{i}": {"title": "", "text": t, "metadata": {"year": y, "tags": tags}}
              for i, (t, y, tags) in enumerate([
                  ("Vitamin D supplements reduce fracture risk in elderly women.", 2010, ["bone"]),
                  ("Vitamin D levels correlate with bone density.", 2020, ["bone", "cohort"]),
                  ("Aspirin lowers the risk of colorectal cancer.", 2021, ["cancer"]),
                  ("Statins reduce cardiovascular events.", 2022, ["heart"]),
              ])}
    out = build_index(minilm, corpus, tmp_path / "f", show_progress=False)
    recent = MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE)])
    r = HonedRetriever.from_dir(out, similarity_top_k=10, filters=recent)
    ids = [n.node.node_id for n in r.retrieve("vitamin D and bones")]
    assert ids[0] == "d1" and set(ids) == {"d1", "d2", "d3"}
    r.filters = MetadataFilters(filters=[MetadataFilter(key="tags", value="cancer", operator=FilterOperator.CONTAINS),
                                         MetadataFilter(key="year", value=2010, operator=FilterOperator.EQ)],
                                condition="or")
    assert {n.node.node_id for n in r.retrieve("vitamin D")} == {"d0", "d2"}
    r.filters = MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.LT)])
    assert r.retrieve("anything") == []


def test_embedding_adapter_builds_a_llamaindex_vector_index(scifact_slice):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    emb = HonedEmbedding(model_name="minilm")
    ids = list(scifact_slice.corpus)[:20]
    nodes = [TextNode(id_=d, text=scifact_slice.doc_text(d)) for d in ids]
    index = VectorStoreIndex(nodes, embed_model=emb)
    qid = next(q for q in scifact_slice.queries if set(scifact_slice.qrels[q]) & set(ids))
    got = index.as_retriever(similarity_top_k=3).retrieve(scifact_slice.queries[qid])
    assert got[0].node.node_id in scifact_slice.qrels[qid]
    assert len(emb.get_query_embedding("x")) == 384
