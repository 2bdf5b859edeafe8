"""Triton (the tritonserver nvidia-pytriton bundles): embedding throughput with dynamic batching on vs off, same run.

    make triton-env && python benchmarks/bench_triton.py [--model runs/demo] [--seconds 15] [--clients 32]

Without ``--model`` it exports the packaged MiniLM to ONNX (int8 gated on datasets/cuad-qa). Each of
``--clients`` threads sends one query at a time (tritonclient HTTP) for ``--seconds``; the queries are
the shipped cuad-clauses and cuad-qa questions. Reports requests/s, p50/p99 latency, and Triton's own
inference vs execution counts (how many requests each model execution served).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import REPO, cpu_name, free_port, load_queries, threaded_load  # noqa: E402  (shared helpers)


def run_level(url: str, queries: list[str], clients: int, seconds: float) -> dict:
    import tritonclient.http as th

    conns = [th.InferenceServerClient(url) for _ in range(clients)]

    def infer(i: int, query: str) -> None:
        x = th.InferInput("TEXT", [1, 1], "BYTES")
        x.set_data_from_numpy(np.array([[query.encode()]], dtype=object))
        conns[i].infer("honed-embedder", [x], model_version="1")

    c = th.InferenceServerClient(url)
    before = c.get_inference_statistics("honed-embedder", "1")["model_stats"][0]
    lat, took = threaded_load(infer, queries, clients, seconds)
    after = c.get_inference_statistics("honed-embedder", "1")["model_stats"][0]
    a = np.asarray(lat) * 1000
    inf = after["inference_count"] - before["inference_count"]
    exe = after["execution_count"] - before["execution_count"]
    return {"clients": clients, "requests": len(lat), "throughput_qps": round(len(lat) / took, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "triton_inferences": inf, "triton_executions": exe, "requests_per_execution": round(inf / max(exe, 1), 2)}


def main() -> None:
    from honed.app.serve.launch import triton_python, wait_ready

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder with onnx/ (default: export the packaged MiniLM)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "triton.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    model = args.model
    if not model:
        from bench_serve import build_artifact

        model = str(build_artifact(work) / "model")
    queries = load_queries()
    res = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(), "model": model,
           "seconds": args.seconds, "levels": {}}
    print(f"CPU: {res['cpu']}; model {model}; {args.clients} clients; {args.seconds:g} s per level", flush=True)
    for mode, extra in (("dynamic batching on", []), ("dynamic batching off", ["--no-dynamic-batching"])):
        ports = [free_port() for _ in range(3)]
        log = (work / f"{mode.replace(' ', '-')}.log").open("wb")
        proc = subprocess.Popen([str(Path(sys.executable).with_name("honed")), "serve-triton", model, "--python",
                                 triton_python(), "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
                                 "--metrics-port", str(ports[2]), *extra], stdout=log, stderr=subprocess.STDOUT)
        ready = round(wait_ready(f"http://127.0.0.1:{ports[0]}/v2/models/honed-embedder/versions/1/ready", proc), 2)
        for n in sorted({1, args.clients}):
            out = run_level(f"127.0.0.1:{ports[0]}", queries, n, args.seconds)
            out["start_to_ready_s"] = ready
            res["levels"].setdefault(mode, []).append(out)
            print(f"{mode:<21} {out}", flush=True)
        proc.terminate()
        proc.wait(30)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    print(f"→ {args.json}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
