"""Hybrid retrieval vs BM25 and dense, per dataset and model: quality, and the latency of each query mode.

For each (dataset, model) pair: one artifact with a BM25 index (the dense index is reused when a cached one
exists: ``package_artifact(..., bm25=True)`` adds BM25 without re-encoding), then on the test split

- ``bm25``, ``dense`` and ``hybrid-rrf`` (no parameter);
- ``hybrid-weighted``: the dense weight chosen by 2-fold cross-fitting on the test queries themselves (the
  queries split by id parity; each half is scored with the weight that won on the other half), since
  cuad-clauses has no dev split the tuned model did not train on;

nDCG@10, Recall@100, paired tests of each hybrid against the better of BM25 and dense (worse: a mean loss over
0.01, or a significant one), and query latency at
batch 1 (p50/p99 over up to 100 queries, each mode including its query encoding; the artifact's ONNX model
when it has one). Writes ``benchmarks/results/hybrid.json``.

    python benchmarks/bench_hybrid.py                                  # cuad-clauses + scifact-ood, ~10 min
    python benchmarks/bench_hybrid.py --scifact ../shared/datasets/scifact   # + SciFact (5,183 abstracts)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def hybrid_artifact(ds, model: str, dense_cache: Path, out: Path):
    """An artifact of `ds`'s corpus with `model` and a BM25 index; reuses a matching dense cache."""
    from honed.rag_eval.beir_eval import cached_index
    from honed.retriever.artifact import package_artifact
    from honed.retriever.index import load_index
    from honed.retriever.models import model_fingerprint, resolve_model

    if (out / "manifest.json").exists():
        idx = load_index(out)
        same = idx.manifest["model"]["fingerprint"] == model_fingerprint(resolve_model(model))   # not a retrained run
        if idx.bm25 is not None and idx.doc_ids == list(ds.corpus) and same:
            return out
    index, _ = cached_index(ds, model, dense_cache)
    index.store.close()
    return package_artifact(dense_cache, out, bm25=True, force=True)


def runs_by_mode(index, enc, ds, k: int = 100) -> dict[str, dict]:
    """{system: run} for bm25, dense, hybrid-rrf and the cross-fitted hybrid-weighted, plus the weights chosen."""
    from honed.rag_eval.fusion import best_fusion, fusion_table
    from honed.retriever.fusion import search_modes

    ids = {pos: d["id"] for pos, d in index.store.iter_docs()}
    qids = sorted(ds.queries)
    texts = [ds.queries[q] for q in qids]
    vecs = enc.encode_queries(texts, show_progress=len(qids) > 64)

    def run(mode, fusion=None, rows=None):
        rows = range(len(qids)) if rows is None else rows
        hits = search_modes(index, vecs[list(rows)], [texts[i] for i in rows], k, mode, fusion=fusion)
        return {qids[i]: {ids[p]: s for p, s in h} for i, h in zip(rows, hits)}

    out = {"bm25": run("bm25"), "dense": run("dense"), "hybrid-rrf": run("hybrid", {"fusion": "rrf"})}
    folds = [[i for i in range(len(qids)) if i % 2 == f] for f in (0, 1)]
    weighted, chosen = {}, []
    for f in (0, 1):
        dev = folds[1 - f]
        rows = fusion_table(index, enc, {qids[i]: texts[i] for i in dev}, {qids[i]: ds.qrels[qids[i]] for i in dev})
        best = best_fusion([r for r in rows if r["fusion"] == "weighted"])
        chosen.append(best["weight"])
        weighted.update(run("hybrid", {"fusion": "weighted", "weight": best["weight"]}, folds[f]))
    out["hybrid-weighted"] = weighted
    return out, chosen


def latency(index, enc, ds, modes=("dense", "bm25", "hybrid"), n: int = 100) -> dict:
    from honed.retriever.fusion import search_modes

    texts = [ds.queries[q] for q in sorted(ds.queries)[:n]]
    out = {}
    for mode in modes:
        search_modes(index, enc.encode_queries(texts[:1]), texts[:1], 10, mode)   # warm-up
        times = []
        for t in texts:
            t0 = time.perf_counter()
            vec = enc.encode_queries([t]) if mode != "bm25" else None
            search_modes(index, vec, [t], 10, mode)
            times.append((time.perf_counter() - t0) * 1000)
        out[mode] = {"p50_ms": round(float(np.percentile(times, 50)), 2),
                     "p99_ms": round(float(np.percentile(times, 99)), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tuned", default="runs/ci", help="the demo's run (trained on cuad-clauses)")
    ap.add_argument("--scifact", default=None, help="the full SciFact BEIR folder (base model only)")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "hybrid.json"))
    args = ap.parse_args()

    from honed.rag_eval.metrics import evaluate_run
    from honed.rag_eval.significance import paired_test
    from honed.retriever.data import load_beir
    from honed.retriever.device import cpu_name
    from honed.retriever.index import open_index_and_encoder

    sets = [("cuad-clauses", REPO / "datasets" / "cuad-clauses", "in-domain", ["base", "tuned"]),
            ("scifact-ood", REPO / "datasets" / "scifact-ood", "out-of-domain for the tuned model", ["base", "tuned"])]
    if args.scifact:
        sets.append(("scifact", Path(args.scifact), "in-domain (base only: no SciFact-tuned run)", ["base"]))
    models = {"base": "minilm", "tuned": args.tuned}
    doc = {"benchmark": "hybrid", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "tuned": args.tuned, "datasets": {}}
    idx_dir = Path(args.index_dir)
    for name, path, role, which in sets:
        ds = load_beir(path, "test")
        entry = doc["datasets"][name] = {"role": role, "queries": len(ds.queries), "passages": len(ds.corpus),
                                         "models": {}}
        for m in which:
            t0 = time.perf_counter()
            art = hybrid_artifact(ds, models[m], idx_dir / f"{name}-test-{m}", idx_dir / "bench-hybrid" / f"{name}-{m}")
            index, enc = open_index_and_encoder(art)
            runs, weights = runs_by_mode(index, enc, ds)
            metrics = {s: evaluate_run(ds.qrels, r, (10, 100)) for s, r in runs.items()}
            better = max(("bm25", "dense"), key=lambda s: metrics[s].aggregate["NDCG@10"])
            row = {"systems": {s: {"ndcg@10": round(v.aggregate["NDCG@10"], 4),
                                   "recall@100": round(v.aggregate["Recall@100"], 4)} for s, v in metrics.items()},
                   "weights_chosen_per_fold": weights, "better_single": better, "vs_better_single": {},
                   "latency_ms": latency(index, enc, ds), "backend": enc.backend,
                   "seconds": round(time.perf_counter() - t0, 1)}
            for h in ("hybrid-rrf", "hybrid-weighted"):
                t = paired_test(*({q: v["NDCG@10"] for q, v in metrics[s].per_query.items()} for s in (better, h)),
                                "NDCG@10").to_dict()
                row["vs_better_single"][h] = {k: t[k] for k in ("delta", "ci_low", "ci_high", "p_value",
                                                                 "wins", "ties", "losses")}
                # worse: a mean loss over 0.01 nDCG@10, or any significant loss (paired Wilcoxon, p < 0.05)
                row["vs_better_single"][h]["never_worse"] = not (t["delta"] < -0.01 or
                                                                 (t["delta"] < 0 and t["p_value"] < 0.05))
            entry["models"][m] = row
            index.store.close()
            print(name, m, json.dumps(row["systems"]), row["latency_ms"], flush=True)
    doc["hybrid_never_significantly_worse"] = all(v["never_worse"] for d in doc["datasets"].values()
                                                  for r in d["models"].values() for v in r["vs_better_single"].values())
    Path(args.result).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
