"""Index build with one encoder process vs a pool of worker processes (`honed index build --workers`).

Builds the same index of a BEIR corpus twice (MiniLM, 256 tokens), in one process and with
``--workers`` (default ``cpu:2``), prints docs/s of each and the largest vector difference,
and writes the numbers as JSON. On a GPU machine pass ``--workers cuda:all``.

    python benchmarks/bench_workers.py --corpus datasets/cuad-clauses --split test --workers cpu:2
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
from honed.retriever.encoder import parse_workers
from honed.retriever.index import build_index, load_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="datasets/cuad-clauses")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--workers", default="cpu:2")
    ap.add_argument("--out", default="benchmarks/results/workers.json")
    args = ap.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, workers in (("one process", None), (f"--workers {args.workers}", parse_workers(args.workers))):
            t0 = time.perf_counter()
            path = build_index(args.model, args.corpus, Path(tmp) / name.replace(" ", "-"), split=args.split,
                               workers=workers, show_progress=False)
            wall = time.perf_counter() - t0
            idx = load_index(path)
            b = idx.manifest["build"]
            rows[name] = {"docs": len(idx), "encode_s": b["encode_seconds"], "docs_per_s": b["docs_per_second"],
                          "wall_s": round(wall, 1),
                          "vectors": idx.faiss_index.reconstruct_batch(np.arange(len(idx)))}
            print(f"{name:>22}: {len(idx)} docs, encode {b['encode_seconds']} s ({b['docs_per_second']} docs/s), "
                  f"wall {wall:.1f} s (model load and pool start included)")
    (a, b) = [r.pop("vectors") for r in rows.values()]
    diff = float(np.abs(a - b).max())
    print(f"largest vector difference: {diff:.2e}")
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "corpus": args.corpus, "model": args.model, "runs": rows,
           "max_abs_vector_difference": diff}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
