"""Export a cross-encoder reranker to ONNX (fp32 + dynamic int8) with a parity gate on its scores and its ranking.

The same graph recipe as the bi-encoder (:mod:`retriever.export.onnx`: eager
attention, ORT's BERT fusion, per-channel dynamic int8 per CPU target), with the
classification logit as the output; the activation stays outside the graph
(:mod:`retriever.reranker`). Parity: score agreement with the torch
``CrossEncoder`` on sample pairs and, with `data`, reranking nDCG@10 of each
test query's positives among BM25's top candidates.

Example:
    >>> from honed.retriever.export.reranker_onnx import export_reranker_onnx
    >>> man = export_reranker_onnx("runs/cuad-reranker", data="datasets/cuad-clauses")   # doctest: +SKIP
    >>> man["int8"]["avx2"]["passed"]
    True
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..reranker import ONNX_FORMAT, load_reranker, reranker_config
from .onnx import SAMPLE_TEXTS, gate_int8, gateable, int8_targets, torch_export, write_variants


def _export_fp32(root: Path, dest: Path, max_length: int) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    # Eager attention: the SDPA graph hides the MatMul/Softmax pattern ORT's fusion looks for.
    ce = CrossEncoder(str(root), max_length=max_length, device="cpu", trust_remote_code=False,
                      model_kwargs={"attn_implementation": "eager"})
    torch_export(ce.model, ce.tokenizer, dest, "logits")


def parity_samples(data: str | None, n_queries: int = 40, n_candidates: int = 20,
                   seed: int = 0) -> tuple[list[dict], dict]:
    """Rerank samples ``{"qid", "query", "candidates": [(doc_id, text)]}`` and their qrels.

    With `data`: up to `n_queries` test queries, each with its positives among BM25's top
    `n_candidates` over the test corpus (hard candidates: where a reranker's order matters).
    Without: the fixed sample texts, each query against all of them (no qrels).
    """
    if not data:
        cands = [(f"s{i}", t) for i, t in enumerate(SAMPLE_TEXTS)]
        return [{"qid": f"q{i}", "query": t, "candidates": cands} for i, t in enumerate(SAMPLE_TEXTS)], {}
    from ..bm25 import bm25_topk
    from ..data.beir import doc_text, load_beir

    ds = load_beir(data, "test")
    qids = sorted(q for q in ds.queries if ds.qrels.get(q))
    qids = random.Random(seed).sample(qids, min(n_queries, len(qids)))
    ids = list(ds.corpus)
    texts = [doc_text(ds.corpus[d]) for d in ids]
    top, _ = bm25_topk(texts, [ds.queries[q] for q in qids], n_candidates)
    samples = []
    for qi, q in enumerate(qids):
        cand = [ids[int(j)] for j in top[qi]]
        cand += [d for d in ds.qrels[q] if d in ds.corpus and d not in cand]
        samples.append({"qid": q, "query": ds.queries[q], "candidates": [(d, doc_text(ds.corpus[d])) for d in cand]})
    return samples, {q: ds.qrels[q] for q in qids}


def rerank_ndcg(scores: np.ndarray, samples: list[dict], qrels: dict) -> float:
    """nDCG@10 of the order `scores` (one per candidate, samples in order) gives each sample's candidates."""
    from beir.retrieval.evaluation import EvaluateRetrieval

    run, at = {}, 0
    for s in samples:
        n = len(s["candidates"])
        run[s["qid"]] = {d: float(x) for (d, _), x in zip(s["candidates"], scores[at:at + n])}
        at += n
    return float(EvaluateRetrieval.evaluate(qrels, run, [10], ignore_identical_ids=False)[0]["NDCG@10"])


def _agreement(ref: np.ndarray, got: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    return {"max_abs_diff": round(float(np.abs(ref - got).max()), 5),
            "spearman": round(float(spearmanr(ref, got).statistic), 5), "n": int(len(ref))}


def export_reranker_onnx(model: str | os.PathLike, quantize: bool = True, data: str | None = None,
                         max_ndcg_drop: float = 0.01, seed: int = 0, target_cpu: str = "all") -> dict:
    """Write ``<model>/onnx/`` for a cross-encoder (fp32 + int8 per CPU target, manifest.json); return the manifest.

    An int8 model whose reranking nDCG@10 on `data` drops more than `max_ndcg_drop` below torch is
    kept but marked failed (never used by default) and this function raises; without `data` the
    int8 models stay ungated (``auto`` then runs fp32).
    """
    root = Path(model)
    cfg = reranker_config(root)
    targets = int8_targets(target_cpu) if quantize else []
    man = write_variants(root, lambda dest: _export_fp32(root, dest, cfg["max_length"]), targets,
                         {"format": ONNX_FORMAT, "output": "logits", **cfg})
    samples, qrels = parity_samples(data, seed=seed)
    pairs = [(s["query"], t) for s in samples for _, t in s["candidates"]]
    rerankers = {"torch": load_reranker(root, "torch"), "fp32": load_reranker(root, "fp32")}
    rerankers.update({f"int8-{t}": load_reranker(root, f"int8-{t}") for t in gateable(targets)})
    scores = {name: r.score_pairs(pairs) for name, r in tqdm(rerankers.items(), desc="parity (scores)")}
    parity = {name: _agreement(scores["torch"], s) for name, s in scores.items() if name != "torch"}
    if qrels:
        for name, sc in scores.items():
            parity.setdefault(name, {})["ndcg@10"] = round(rerank_ndcg(sc, samples, qrels), 5)
    return gate_int8(root, man, parity, data, max_ndcg_drop, "reranking")
