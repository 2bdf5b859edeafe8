"""Index build of the full CUAD corpus in one process vs on Ray (`honed index build --ray`), same run.

Cuts all 510 CUAD v1 contracts into passages as ``datasets/cuad-clauses`` does
(whole sentences, ≤ 120 words), builds the exact index in one process and with
``--ray`` (local Ray, ``--ray-workers`` encoder actors), compares ids and
vectors, then assembles an IVF-PQ index from the same vectors the way a Ray
build of a large corpus does (sample-trained, filled shard by shard) and
measures its size per passage, its recall@10 against the exact index and its
assembly time. Prints a plan for one million passages from the measured rates.

    python benchmarks/bench_ray.py --cuad ../shared/datasets/cuad --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench_artifact import cpu_name
from honed.retriever.data.cuad import chunk_text, normalise
from honed.retriever.index import build_index, faiss_factory, load_index
from honed.retriever.ray_build import SHARD_ROWS, assemble_index, build_index_on_ray


def write_full_cuad(cuad: Path, out: Path, limit: int | None) -> int:
    """Every contract's passages as one corpus.jsonl; returns the passage count."""
    if not (cuad / "full_contract_txt").is_dir():
        raise SystemExit(f"{cuad}/full_contract_txt: not found (CUAD v1; run from the repository root)")
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for ci, p in enumerate(sorted((cuad / "full_contract_txt").glob("*.txt"))[:limit]):
            text = normalise(p.read_text(encoding="utf-8", errors="replace"))
            for k, chunk in enumerate(chunk_text(text, 120)):
                f.write(json.dumps({"_id": f"c{ci:03d}-{k:04d}", "title": "", "text": chunk.text}) + "\n")
                n += 1
    return n


def timed_build(name: str, fn) -> tuple[dict, np.ndarray, list[str]]:
    t0 = time.perf_counter()
    path = fn()
    wall = time.perf_counter() - t0
    idx = load_index(path)
    b = idx.manifest["build"]
    row = {"docs": len(idx), "encode_s": b["encode_seconds"], "docs_per_s": b["docs_per_second"],
           "wall_s": round(wall, 1)}
    print(f"{name:>18}: {len(idx):,} passages, encode {b['encode_seconds']} s ({b['docs_per_second']} docs/s), "
          f"wall {wall:.1f} s (model load, Ray start and FAISS included)", flush=True)
    vectors = idx.faiss_index.reconstruct_batch(np.arange(len(idx)))
    ids = idx.doc_ids
    idx.store.close()
    return row, vectors, ids


def ivfpq_from_vectors(vectors: np.ndarray, tmp: Path) -> dict:
    """Assemble IVF-PQ from shards of `vectors` as a Ray build does; size, time and recall@10 vs exact."""
    import faiss

    n, dim = vectors.shape
    if n < 10_000:
        return {"skipped": f"IVF-PQ needs ≥ 10,000 passages, have {n:,}"}
    shards = []
    for i, start in enumerate(range(0, n, SHARD_ROWS)):
        shards.append(tmp / f"shard-{i:05d}.npz")
        np.savez(shards[-1], pos=np.arange(start, min(n, start + SHARD_ROWS)), vectors=vectors[start:start + SHARD_ROWS])
    factory = faiss_factory("ivfpq", n, dim)
    t0 = time.perf_counter()
    index = assemble_index(shards, n, dim, factory)
    seconds = time.perf_counter() - t0
    queries = vectors[np.random.default_rng(0).choice(n, 500, replace=False)]
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    out = {"factory": factory, "assemble_s": round(seconds, 1),
           "bytes": int(faiss.serialize_index(index).size), "recall_at_10": {}}
    out["bytes_per_passage"] = round(out["bytes"] / n, 1)
    for nprobe in (8, 32):
        faiss.extract_index_ivf(index).nprobe = nprobe
        _, got = index.search(queries, 10)
        out["recall_at_10"][nprobe] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])), 3)
    return out


def plan_for(n: int, cpu_rate_per_core: float, gpu_rate: float, bytes_per_passage: float, dim: int) -> dict:
    """Workers and hours for `n` passages from measured rates (linear scaling assumed, and said)."""
    return {"passages": n,
            "cpu_core_hours": round(n / cpu_rate_per_core / 3600, 1),
            "hours_on_64_cpu_cores": round(n / (cpu_rate_per_core * 64) / 3600, 2),
            "gpu_hours": round(n / gpu_rate / 3600, 2),
            "minutes_on_4_gpus": round(n / (gpu_rate * 4) / 60, 1),
            "flat_index_gb": round(n * dim * 4 / 1e9, 2),
            "ivfpq_index_mb": round(n * bytes_per_passage / 1e6, 1),
            "shard_scratch_gb": round(n * (dim * 4 + 8) / 1e9, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuad", default="../shared/datasets/cuad")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N contracts only (a quick check)")
    ap.add_argument("--gpu-docs-per-s", type=float, default=1638.0,
                    help="a GPU's encode rate for the plan (default: issue #14's H200 measurement, SciFact, fp32)")
    ap.add_argument("--out", default="benchmarks/results/ray.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        n = write_full_cuad(Path(args.cuad), corpus, args.limit)
        print(f"full CUAD: {n:,} passages of ≤ 120 words", flush=True)
        one, va, ids_a = timed_build("one process", lambda: build_index(
            args.model, corpus, tmp / "one", show_progress=False))
        ray_row, vb, ids_b = timed_build(f"--ray ({args.workers} workers)", lambda: build_index_on_ray(
            args.model, corpus, tmp / "ray", workers=args.workers, show_progress=False))
        same_ids = ids_a == ids_b
        diff = float(np.abs(va - vb).max())
        print(f"same ids in the same order: {same_ids}; largest vector difference {diff:.2e}", flush=True)
        ivfpq = ivfpq_from_vectors(vb, tmp)
        print(f"IVF-PQ from shards: {ivfpq}", flush=True)
    per_core = one["docs_per_s"] / (os.cpu_count() or 1)
    plan = plan_for(1_000_000, per_core, args.gpu_docs_per_s, ivfpq.get("bytes_per_passage", float("nan")),
                    va.shape[1])
    print(f"1M passages: {plan}")
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "passages": n, "model": args.model,
           "runs": {"one process": one, f"ray {args.workers} workers": ray_row},
           "same_ids": same_ids, "max_abs_vector_difference": diff, "ivfpq": ivfpq,
           "plan_1m": plan, "plan_gpu_rate_source": "issue #14: H200, MiniLM-L6 fp32, SciFact abstracts at 256 tokens"}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
