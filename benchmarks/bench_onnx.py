"""torch fp32 vs ONNX Runtime fp32 vs each ONNX Runtime int8 recipe, side by side in one run, on the same texts.

    python benchmarks/bench_onnx.py --model runs/minilm-onnx --index indexes/bench-scifact-minilm
    python benchmarks/bench_onnx.py --model runs/demo --json benchmarks/results/onnx-tuned.json

Both int8 recipes (avx2: unsigned 7-bit weights; avx512-vnni: signed 8-bit
weights) are timed where the CPU can run them faithfully (the VNNI one only on
a CPU with VNNI). Without ``--index`` the query latency is measured against a
flat index of the benchmark texts (encode + top-10 search).

Reports corpus-encode throughput, single-query latency (encode + top-10 FAISS
search) p50/p99, cold start and peak RSS of a fresh process, nDCG@10 on
SciFact test (positives + 2,000 random docs), and achieved GFLOP/s against this
CPU's fp32 peak (MiniLM-L6 ≈ 21 MFLOP per token).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

MFLOP_PER_TOKEN = 21.0
BACKENDS = ("torch", "onnx-fp32", "onnx-int8-avx2", "onnx-int8-avx512-vnni")

# Peak RSS from VmHWM: ru_maxrss would include the benchmark process's own, inherited across exec.
COLD = """
import time, sys
t0 = time.perf_counter()
from honed.retriever.index import open_index_and_encoder, search
idx, enc = open_index_and_encoder({index!r}, {model!r})
search(idx, enc.encode_queries(["vitamin D and bone fractures"]), 10)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(time.perf_counter() - t0, hwm / 1024, 'torch' in sys.modules)
"""


def cpu_peak_gflops() -> tuple[float, str]:
    """Cores × GHz × 32 fp32 FLOP/cycle (two 8-wide FMA units, AVX2)."""
    info = Path("/proc/cpuinfo").read_text()
    mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", info).group(1))
    name = re.search(r"model name\s*:\s*(.+)", info).group(1).strip()
    flags = re.search(r"flags\s*:\s*(.+)", info).group(1).split()
    per_cycle = 64 if "avx512f" in flags else 32
    return os.cpu_count() * mhz / 1000 * per_cycle, f"{name}, {os.cpu_count()} cores @ {mhz:.0f} MHz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/minilm-onnx", help="model folder (exported here if needed)")
    ap.add_argument("--data", default="../shared/datasets/scifact")
    ap.add_argument("--index", default=None, help="index for the latency test (default: the benchmark texts)")
    ap.add_argument("--n-texts", type=int, default=1000)
    ap.add_argument("--n-queries", type=int, default=300)
    ap.add_argument("--json", default="benchmarks/results/onnx.json")
    ap.add_argument("--skip-ndcg", action="store_true", help="throughput and latency only (nDCG takes minutes)")
    args = ap.parse_args()

    from honed.retriever.data import load_beir
    from honed.retriever.data.beir import doc_text
    from honed.retriever.encoder import load_encoder
    from honed.retriever.export.onnx import export_onnx, ndcg_at_10
    from honed.retriever.index import load_index, search
    from honed.retriever.models import resolve_model
    from honed.retriever.ort_encoder import cpu_int8_target

    model = Path(args.model)
    if not (model / "onnx" / "manifest.json").exists():
        if not model.exists():
            shutil.copytree(resolve_model("minilm"), model)
        export_onnx(model)   # cosine parity only here: nDCG of every backend is measured below
    ds = load_beir(args.data, "test")
    texts = [doc_text(d) for d in list(ds.corpus.values())[: args.n_texts]]
    queries = list(ds.queries.values())[: args.n_queries]
    backends = [b for b in BACKENDS if b != "onnx-int8-avx512-vnni" or cpu_int8_target() == "avx512-vnni"]
    if args.index:
        index = load_index(args.index)
        top10 = lambda q: search(index, q, 10)
    else:   # a flat index of the benchmark texts
        import faiss

        vecs = load_encoder(f"{model}@torch").encode_documents(texts)
        flat = faiss.IndexFlatIP(vecs.shape[1])
        flat.add(vecs)
        top10 = lambda q: flat.search(q, 10)
    peak, cpu = cpu_peak_gflops()
    res = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
           "int8_target": cpu_int8_target(), "model": str(model),
           "fp32_peak_gflops": round(peak, 1), "n_texts": len(texts), "backends": {}}
    for b in backends:
        enc = load_encoder(f"{model}@{b}")
        enc.encode_documents(texts[:32])                         # warm-up
        tok = enc.model.tokenizer if b == "torch" else None
        t0 = time.perf_counter()
        enc.encode_documents(texts)
        enc_s = time.perf_counter() - t0
        if tok is not None:
            n_tokens = sum(min(len(x), enc.max_seq_length) for x in tok(texts)["input_ids"])
        lat = []
        for q in queries:
            t1 = time.perf_counter()
            top10(enc.encode_queries([q]))
            lat.append((time.perf_counter() - t1) * 1000)
        res["backends"][b] = {"encode_texts_per_s": round(len(texts) / enc_s, 1), "encode_s": round(enc_s, 2),
                              "query_ms_p50": round(float(np.percentile(lat, 50)), 2),
                              "query_ms_p99": round(float(np.percentile(lat, 99)), 2)}
        print(b, res["backends"][b], flush=True)
    for b in backends:
        gflops = n_tokens * MFLOP_PER_TOKEN / 1000 / res["backends"][b]["encode_s"]
        res["backends"][b]["gflops"] = round(gflops, 1)
        res["backends"][b]["pct_of_peak"] = round(100 * gflops / peak, 1)
        if args.index:
            out = subprocess.run([sys.executable, "-c", COLD.format(index=args.index, model=f"{model}@{b}")],
                                 capture_output=True, text=True, check=True).stdout.split()
            res["backends"][b].update({"cold_start_s": round(float(out[0]), 2),
                                       "peak_rss_mb": round(float(out[1]), 1), "imports_torch": out[2] == "True"})
        if not args.skip_ndcg:
            res["backends"][b]["ndcg@10_subsampled"] = round(ndcg_at_10(load_encoder(f"{model}@{b}"), args.data, 2000), 4)
        print(b, res["backends"][b], flush=True)
    t = res["backends"]["torch"]
    for b in backends[2:]:
        i8 = res["backends"][b]
        res[f"{b}_speedup_vs_torch"] = round(i8["encode_texts_per_s"] / t["encode_texts_per_s"], 2)
        res[f"{b}_speedup_vs_fp32"] = round(i8["encode_texts_per_s"] / res["backends"]["onnx-fp32"]["encode_texts_per_s"], 2)
        if not args.skip_ndcg:
            res[f"{b}_ndcg_drop"] = round(t["ndcg@10_subsampled"] - i8["ndcg@10_subsampled"], 4)
    res["tokens"] = n_tokens
    print(json.dumps(res, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
