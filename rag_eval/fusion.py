"""Choose how an artifact's hybrid mode fuses BM25 with its embedder, and how much its reranker weighs, on a dev split.

Every candidate (reciprocal rank fusion, and the weighted sum at dense weights 0, 0.1, …, 1) is scored on
the dev queries with the same :func:`~honed.retriever.fusion.search_modes` call users make; the best by
nDCG@10 (then Recall@100; RRF on a tie, since it has no parameter to overfit) is recorded in the artifact
with the whole table as evidence. When the dev queries' judged passages are all in the artifact it is
scored there; otherwise an index of the dev split's own corpus is built (cached) with the artifact's model.

The reranker's weight (:func:`choose_rerank_weight`) is chosen the same way: the first stage's top 50
reordered by ``w · reranker + (1 − w) · first stage`` over min-max normalised scores at w = 0, 0.1, …, 1.
A cross-encoder trained on a few thousand pairs is noisier than the embedder it reranks, yet knows things
the embedder does not; the mix keeps both (measured in benchmarks/results/rerank.json).

Choose on queries the model was not trained on: a tuned model ranks its own training queries too well,
which pulls the weight towards the dense side. :func:`choose_fusion` says so when it can tell (the run's
``honed.json`` names the dataset it trained on).

Example:
    >>> from honed.rag_eval.fusion import choose_fusion
    >>> choose_fusion("indexes/scifact-hybrid", "../shared/datasets/scifact", split="train")   # doctest: +SKIP
    {'fusion': 'weighted', 'weight': 0.4, ...}
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from honed.retriever.data.beir import load_beir
from honed.retriever.errors import HonedError
from honed.retriever.mixing import WEIGHTS

from .beir_eval import cached_index, dataset_name, rerank_in_chunks, resolve_dataset, subsample_queries
from .metrics import evaluate_run


def candidates() -> list[dict]:
    """Every fusion :func:`choose_fusion` tries: RRF first (it wins ties), then the weighted sums."""
    return [{"fusion": "rrf", "weight": None}] + [{"fusion": "weighted", "weight": w} for w in WEIGHTS]


def fusion_table(index, encoder, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                 k: int = 100) -> list[dict]:
    """nDCG@10 and Recall@100 of every candidate fusion on `queries`: one encoding, one dense and one BM25
    search (the depth hybrid mode reads), fused once per candidate."""
    from honed.retriever.fusion import DEPTH, fuse, search_modes

    qids = list(queries)
    texts = [queries[q] for q in qids]
    vecs = encoder.encode_queries(texts, show_progress=len(qids) > 64)
    depth = max(k, DEPTH)
    dense = search_modes(index, vecs, texts, depth, "dense")
    lexical = search_modes(index, None, texts, depth, "bm25")
    ids = {pos: d["id"] for pos, d in index.store.iter_docs()}
    rows = []
    for cand in candidates():
        run = {q: {ids[p]: s for p, s in fuse(d, b, k, cand)} for q, d, b in zip(qids, dense, lexical)}
        agg = evaluate_run(qrels, run, (10, 100)).aggregate
        rows.append({**cand, "ndcg@10": round(agg["NDCG@10"], 5), "recall@100": round(agg["Recall@100"], 5)})
    return rows


def best_fusion(rows: list[dict]) -> dict:
    """The row with the highest nDCG@10, then Recall@100; the first (RRF) among equals."""
    return max(rows, key=lambda r: (r["ndcg@10"], r["recall@100"]))   # max keeps the first of equal keys


def choose_fusion(index_path: str | os.PathLike, data: str | os.PathLike, split: str = "dev",
                  max_queries: int | None = None, index_dir: str | os.PathLike = "indexes",
                  record: bool = True) -> dict:
    """Score every fusion on `data`'s `split` and (with `record`) record the best in the artifact; return it
    with the table (``rows``), where it was chosen and whether the model had seen those queries."""
    from honed.retriever.fusion import check_mode, record_fusion
    from honed.retriever.index import open_index_and_encoder

    index, encoder = open_index_and_encoder(index_path)
    try:
        check_mode(index, "hybrid")
        ds, target, evidence = _dev_target(index, data, split, max_queries, index_dir, "fusion")
        rows = fusion_table(target, encoder, ds.queries, ds.qrels)
        best = best_fusion(rows)
        evidence = {**evidence, "dev_ndcg@10": best["ndcg@10"], "rows": rows}
        if record:
            record_fusion(index, best["fusion"], best["weight"], evidence)
        return {"fusion": best["fusion"], "weight": best["weight"], **evidence}
    finally:
        index.store.close()


def rerank_table(index, encoder, reranker, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                 top_n: int = 50) -> list[dict]:
    """nDCG@10 of the first stage's top `top_n` reordered at every reranker weight (0: the first stage's own
    order, 1: the reranker's alone): one search and one scoring pass (:func:`~honed.retriever.reranker.weight_table`)."""
    from honed.retriever.fusion import search_modes
    from honed.retriever.reranker import relevant_labels, weight_table

    qids = list(queries)
    texts = [queries[q] for q in qids]
    first = search_modes(index, encoder.encode_queries(texts, show_progress=len(qids) > 64), texts, top_n, "dense")
    scored = rerank_in_chunks(index, reranker, texts, first, top_n, weight=1.0)   # every candidate, normalised
    label_of = {d["id"]: pos for pos, d in index.store.iter_docs()}
    return weight_table(scored, first, relevant_labels(label_of, qids, qrels))


def choose_rerank_weight(index_path: str | os.PathLike, data: str | os.PathLike, split: str = "dev",
                         max_queries: int | None = None, index_dir: str | os.PathLike = "indexes",
                         top_n: int = 50, record: bool = True) -> dict:
    """Score the artifact's reranker mixed with its first stage at weights 0, 0.1, …, 1 on `data`'s `split`
    and (with `record`) record the best in the artifact (the lower weight among equals: the first stage
    is the safer side); return it with the table, like :func:`choose_fusion`."""
    from honed.retriever.index import open_index_and_encoder
    from honed.retriever.reranker import artifact_reranker, best_weight, record_rerank_weight

    index, encoder = open_index_and_encoder(index_path)
    try:
        reranker = artifact_reranker(index)
        ds, target, evidence = _dev_target(index, data, split, max_queries, index_dir, "fusion")
        rows = rerank_table(target, encoder, reranker, ds.queries, ds.qrels, top_n)
        best = best_weight(rows)
        evidence = {**evidence, "top_n": top_n, "dev_ndcg@10": best["ndcg@10"],
                    "first_stage_dev_ndcg@10": rows[0]["ndcg@10"], "rows": rows}
        if record:
            record_rerank_weight(index, best["weight"], evidence)
        return {"weight": best["weight"], **evidence}
    finally:
        index.store.close()


def _dev_target(index, data, split: str, max_queries: int | None, index_dir, suffix: str):
    """(dev dataset, the index to score it on, evidence): the artifact itself when it holds every judged
    passage of the split, else a cached index of the split's corpus built with the artifact's model."""
    path = resolve_dataset(data)
    ds = subsample_queries(load_beir(path, split), max_queries)
    if not ds.queries:
        raise HonedError(f"{path}: split {split!r} has no judged queries to choose on")
    judged = {d for rel in ds.qrels.values() for d, g in rel.items() if g > 0}
    scored_on, target = "the artifact's own documents", index
    if not judged <= set(index.doc_ids):
        dev_index = Path(index_dir) / f"{dataset_name(path)}-{split}-{suffix}"
        target, _ = cached_index(ds, str(index.model_dir), dev_index, bm25=True)
        scored_on = f"an index of the split's corpus ({dev_index})"
    return ds, target, {"chosen_on": f"{path} ({split}, {len(ds.queries)} queries), scored on {scored_on}",
                        "queries_seen_in_training": _trained_on(index, path, split)}


def _trained_on(index, data: Path, split: str) -> bool | None:
    """Whether the artifact's model was fine-tuned on `data`'s `split` queries (None: cannot tell)."""
    run = index.model_dir / "honed.json"
    if not run.is_file():
        return None
    try:
        source = json.loads(run.read_text(encoding="utf-8")).get("data", {}).get("source")
    except (OSError, json.JSONDecodeError):
        return None
    if not source:
        return None
    return split == "train" and Path(source).resolve() == Path(data).resolve()
