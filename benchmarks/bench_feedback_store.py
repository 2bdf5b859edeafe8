"""Feedback store under load: N concurrent writer processes × M votes into one SQLite (WAL) file.

    python benchmarks/bench_feedback_store.py --writers 8 --votes 500

Prints rows written vs expected (lost votes), wall time, throughput and the
slowest single write, and saves them as JSON. Processes, not threads: a team
running several app servers against one file is the harder case.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from honed.app.store import FeedbackStore, Vote


def writer(url: str, worker: int, n: int, q) -> None:
    store = FeedbackStore(url)
    worst = 0.0
    for i in range(n):
        t = time.perf_counter()
        store.record(Vote(session_id=f"w{worker}", query=f"query {worker}-{i}", system="tuned", baseline="base",
                          candidate="tuned", target="passage", vote=1 if i % 3 else -1, doc_id=f"d{i % 50}",
                          doc_text=f"passage {i % 50}", rank=1 + i % 5, score=0.5,
                          shown={"tuned": [f"d{i % 50}"], "base": ["d0"]}))
        worst = max(worst, time.perf_counter() - t)
    q.put(worst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--votes", type=int, default=500)
    ap.add_argument("--url", default=None, help="SQLAlchemy URL (default: a fresh SQLite file)")
    ap.add_argument("--json", default="benchmarks/results/feedback_store.json")
    args = ap.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'fb.db'}"
    FeedbackStore(url)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(url, w, args.votes, q)) for w in range(args.writers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    worst = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    rows = FeedbackStore(url).all_votes()
    expected = args.writers * args.votes
    res = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "backend": url.split(":", 1)[0],
           "writers": args.writers, "votes_each": args.votes, "expected_rows": expected, "rows": len(rows),
           "lost": expected - len(rows), "exit_codes": [p.exitcode for p in procs], "wall_s": round(wall, 2),
           "votes_per_s": round(expected / wall, 1), "slowest_write_s": round(max(worst), 3)}
    print(json.dumps(res, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
