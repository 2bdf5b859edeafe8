"""Benchmark the base MiniLM retriever through HonedRetriever on a BEIR dataset.

Prints nDCG@10 / Recall@100 (SciFact test: published all-MiniLM-L6-v2 = 0.645),
index build docs/s and per-query latency (encode + FAISS search) p50/p99, and
writes the numbers as JSON.

    python benchmarks/bench_retriever.py --data ../shared/datasets/scifact --split test
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.progress import track

from honed.rag_eval.metrics import evaluate_run
from honed.retriever import HonedRetriever, build_index, load_beir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/datasets/scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--index", default="indexes/bench-scifact-minilm")
    ap.add_argument("--faiss", default="flat")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if the index exists")
    ap.add_argument("--out", default="benchmarks/results/retriever.json")
    args = ap.parse_args()

    ds = load_beir(args.data, args.split)
    if args.rebuild or not Path(args.index, "manifest.json").exists():
        build_index(args.model, ds.corpus, args.index, faiss_kind=args.faiss)
    r = HonedRetriever.from_dir(args.index, similarity_top_k=100)
    build = r.index.manifest["build"]

    r.retrieve("warm-up query")
    run, lat = {}, []
    for qid, text in track(ds.queries.items(), description="retrieving"):
        t0 = time.perf_counter()
        nodes = r.retrieve(text)
        lat.append((time.perf_counter() - t0) * 1000)
        run[qid] = {n.node.node_id: float(n.score) for n in nodes}
    m = evaluate_run(ds.qrels, run, k_values=[10, 100])
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "dataset": f"{args.data} ({args.split}: {len(ds.queries)} queries, {len(ds.corpus)} docs)",
        "model": args.model, "faiss": args.faiss,
        "ndcg@10": m.aggregate["NDCG@10"], "recall@100": m.aggregate["Recall@100"],
        "build_docs_per_s": build["docs_per_second"], "build_encode_s": build["encode_seconds"],
        "query_latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "query_latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
