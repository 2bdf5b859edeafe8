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

import datetime as _dt
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..errors import HonedError
from ..models import model_fingerprint, sha256_file
from ..reranker import ONNX_FORMAT, load_reranker, reranker_config
from .onnx import OPSET, SAMPLE_TEXTS, _fuse, _quantize, int8_targets, torch_export


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
    from ..ort_encoder import cpu_int8_target

    root = Path(model)
    cfg = reranker_config(root)
    targets = int8_targets(target_cpu) if quantize else []
    onnx_dir = root / "onnx"
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=root) as tmp:
        tmp = Path(tmp)
        _export_fp32(root, tmp / "raw.onnx", cfg["max_length"])
        fused = _fuse(tmp / "raw.onnx", tmp / "model.onnx", root)
        files = {"fp32": "model.onnx"}
        for target in tqdm(targets, desc="int8 quantisation", disable=not targets):
            fname = f"model_int8_{target.replace('-', '_')}.onnx"
            _quantize(tmp / "model.onnx", tmp / fname, target)
            files[f"int8-{target}"] = fname
        man = {
            "format": ONNX_FORMAT, "opset": OPSET, "files": files, "output": "logits",
            "sha256": {k: sha256_file(tmp / f) for k, f in files.items()}, **cfg,
            "source_fingerprint": model_fingerprint(root), "fused_ops": fused,
            "int8": {t: {"passed": False} for t in targets}, "exported_on_cpu": cpu_int8_target(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        onnx_dir.mkdir(exist_ok=True)
        for old in onnx_dir.glob("model_int8*.onnx"):   # an int8 model of an earlier export is stale now
            if old.name not in files.values():
                old.unlink()
        for f in files.values():
            os.replace(tmp / f, onnx_dir / f)
        atomic_write_text(onnx_dir / "manifest.json", json.dumps(man, indent=2) + "\n")

    # the VNNI recipe saturates on a CPU without VNNI: it can only be gated where it runs faithfully
    gateable = [t for t in targets if t == "avx2" or cpu_int8_target() == "avx512-vnni"]
    samples, qrels = parity_samples(data, seed=seed)
    pairs = [(s["query"], t) for s in samples for _, t in s["candidates"]]
    rerankers = {"torch": load_reranker(root, "torch"), "fp32": load_reranker(root, "fp32")}
    rerankers.update({f"int8-{t}": load_reranker(root, f"int8-{t}") for t in gateable})
    scores = {name: r.score_pairs(pairs) for name, r in tqdm(rerankers.items(), desc="parity (scores)")}
    parity = {name: _agreement(scores["torch"], s) for name, s in scores.items() if name != "torch"}
    if qrels:
        for name, sc in scores.items():
            parity.setdefault(name, {})["ndcg@10"] = round(rerank_ndcg(sc, samples, qrels), 5)
    man["parity"], man["parity_data"], man["max_ndcg_drop"] = parity, data, max_ndcg_drop
    failures = []
    for t in targets:
        gate = man["int8"][t]
        if t not in gateable:
            gate["reason"] = f"not gated: this CPU ({cpu_int8_target()}) has no VNNI to run it faithfully"
        elif not qrels:
            gate["reason"] = "not gated: no --data for the reranking nDCG@10 parity check"
        else:
            drop = parity["torch"]["ndcg@10"] - parity[f"int8-{t}"]["ndcg@10"]
            gate.update(ndcg_drop=round(drop, 5), passed=drop <= max_ndcg_drop)
            if not gate["passed"]:
                failures.append(f"int8 ({t}) reranker loses {drop:.4f} nDCG@10 on {data} (tolerance {max_ndcg_drop})")
    atomic_write_text(onnx_dir / "manifest.json", json.dumps(man, indent=2) + "\n")
    if failures:
        raise HonedError("; ".join(failures) + f"; kept in {onnx_dir} but marked failed, so it is never "
                         "used by default")
    return man
