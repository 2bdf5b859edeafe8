"""`honed serve` under load: latency and throughput at 1, 8 and 32 clients against in-process calls, batching on
vs off, and a kill -9 mid-load that must lose no acknowledged feedback row.

    python benchmarks/bench_serve.py                       # builds its artifact from the shipped data
    python benchmarks/bench_serve.py --artifact artifacts/cuad-clauses-tuned --seconds 20

Without ``--artifact`` it exports the packaged MiniLM to ONNX (int8 gated on datasets/cuad-qa) and indexes
the cuad-clauses test corpus (1,315 passages), the shape of the demo's artifact. Queries are the shipped
cuad-clauses and cuad-qa questions, cycled. Each client is an async httpx loop that sends its next request
when the last one is answered, for a fixed time, so it stops by itself. In-process means
``HonedRetriever.retrieve`` from N threads of this process, on the same artifact: the floor the service
adds HTTP, JSON and queueing to.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HONED = str(Path(sys.executable).with_name("honed"))


def cpu_name() -> str:
    info = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.+)", info).group(1).strip()
    vnni = "avx512_vnni" in info
    return f"{name}, {os.cpu_count()} cores{', AVX-512 VNNI' if vnni else ''}"


def build_artifact(work: Path) -> Path:
    from honed.retriever.export.onnx import export_onnx
    from honed.retriever.index import build_index
    from honed.retriever.models import resolve_model

    model = work / "minilm"
    shutil.copytree(resolve_model("minilm"), model)
    print("exporting MiniLM to ONNX (int8 gated on datasets/cuad-qa) …", flush=True)
    export_onnx(model, data=str(REPO / "datasets" / "cuad-qa"), max_docs=239)
    print("indexing the cuad-clauses test corpus …", flush=True)
    return build_index(str(model), REPO / "datasets" / "cuad-clauses", work / "artifact")


def load_queries() -> list[str]:
    qs = []
    for f in (REPO / "datasets" / "cuad-clauses" / "test" / "queries.jsonl", REPO / "datasets" / "cuad-qa" / "queries.jsonl"):
        qs += [json.loads(line)["text"] for line in f.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(qs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, artifact: Path, db: Path, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [HONED, "serve", str(artifact), "--port", str(self.port), "--db", str(db), *extra]
        self.log = db.with_suffix(".log").open("ab")
        self.start()

    def start(self) -> float:
        """Start the process; seconds until /ready answers 200."""
        from honed.app.serve.launch import wait_ready

        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        return wait_ready(self.url + "/ready", self.proc, interval=0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def summarise(lat: list[float], seconds: float, errors: int) -> dict:
    a = np.asarray(lat) * 1000
    return {"requests": len(lat), "errors": errors, "throughput_qps": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2) if len(a) else None,
            "p99_ms": round(float(np.percentile(a, 99)), 2) if len(a) else None}


async def http_load(url: str, queries: list[str], clients: int, seconds: float, k: int = 10) -> dict:
    import httpx

    lat: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(i: int, c) -> None:
        nonlocal errors
        j = i
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            r = await c.post("/search", json={"query": queries[j % len(queries)], "k": k, "user_id": f"c{i}"})
            if r.status_code == 200:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1
            j += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, c) for i in range(clients)))
        took = time.perf_counter() - t0
    return summarise(lat, took, errors)


def threaded_load(call, queries: list[str], clients: int, seconds: float) -> tuple[list[float], float]:
    """`clients` threads each call ``call(client_index, query)`` back to back for `seconds`: (latencies, wall s)."""
    lat: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(i: int) -> None:
        j = i
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            call(i, queries[j % len(queries)])
            with lock:
                lat.append(time.perf_counter() - t0)
            j += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0


def in_process_load(retriever, queries: list[str], clients: int, seconds: float) -> dict:
    lat, took = threaded_load(lambda _i, q: retriever.retrieve(q), queries, clients, seconds)
    return summarise(lat, took, 0)


async def feedback_until_killed(svc: Service, seconds_before_kill: float, clients: int = 16) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as c:
        first = (await c.post("/search", json={"query": "cap on liability", "k": 5})).json()
        acked: list[int] = []
        refused = 0

        async def clicker(i: int) -> None:
            nonlocal refused
            while True:
                body = {"impression_id": first["impression_id"], "type": "click",
                        "doc_id": first["hits"][i % len(first["hits"])]["id"]}
                try:
                    r = await c.post("/feedback", json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append(r.json()["recorded"])
                else:
                    refused += 1

        tasks = [asyncio.create_task(clicker(i)) for i in range(clients)]
        await asyncio.sleep(seconds_before_kill)
        os.kill(svc.proc.pid, signal.SIGKILL)
        await asyncio.wait(tasks, timeout=30)
    return {"acknowledged": len(acked), "ids": acked, "refused": refused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", help="retriever artifact (default: build one from the shipped data)")
    ap.add_argument("--seconds", type=float, default=15.0, help="per load level")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "serve.json"))
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    artifact = Path(args.artifact) if args.artifact else build_artifact(work)
    queries = load_queries()
    print(f"CPU: {cpu_name()}; artifact {artifact}; {len(queries)} distinct queries; {args.seconds:g} s per level",
          flush=True)
    res: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
                 "python": platform.python_version(), "artifact": str(artifact), "seconds": args.seconds,
                 "service": {}, "in_process": {}}

    from honed.retriever.honed_retriever import HonedRetriever

    r = HonedRetriever.from_dir(artifact, similarity_top_k=10)
    r.retrieve("warm-up")
    res["backend"] = getattr(r.encoder, "backend", "torch")
    for n in levels:
        res["in_process"][n] = in_process_load(r, queries, n, args.seconds)
        print(f"in-process  {n:>2} clients: {res['in_process'][n]}", flush=True)
    del r

    for mode, extra in (("batching on", ["--batch-window-ms", "3", "--max-batch", "32"]),
                        ("batching off", ["--batch-window-ms", "0", "--max-batch", "1"])):
        svc = Service(artifact, work / f"{mode.replace(' ', '-')}.db", extra + ["--max-queue", "1024"])
        for n in (levels if mode == "batching on" else [max(levels)]):
            out = asyncio.run(http_load(svc.url, queries, n, args.seconds))
            res["service"].setdefault(mode, {})[n] = out
            print(f"service, {mode:<12} {n:>2} clients: {out}", flush=True)
        svc.stop()

    db = work / "kill.db"
    svc = Service(artifact, db, [])
    kill = asyncio.run(feedback_until_killed(svc, seconds_before_kill=5.0))
    svc.proc.wait(10)
    stored = {row[0] for row in sqlite3.connect(db).execute("SELECT id FROM interactions")}
    lost = sorted(set(kill.pop("ids")) - stored)
    kill.update(stored=len(stored), acknowledged_but_lost=len(lost))
    kill["restart_to_ready_s"] = round(svc.start(), 2)
    svc.stop()
    res["kill_test"] = kill
    print(f"kill -9 mid-load: {kill}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    print(f"→ {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    if lost:
        raise SystemExit(f"{len(lost)} acknowledged feedback rows lost")


if __name__ == "__main__":
    main()
