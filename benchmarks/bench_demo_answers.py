"""What the demo's answers step costs on a machine that has never answered: the RAG leg of `honed demo`, cold.

`honed demo` answers datasets/cuad-qa's questions from the base and the tuned retriever's top 3 passages with the
packaged 0.5B LLM (rag_eval/demo.py ``demo_answers``). Its generator caches answers by prompt, so a second run
costs almost nothing and CI's timings say little about a user's first run. This runs the same step on a demo run
with an empty cache (HONED_CACHE_DIR in a temporary folder) and writes its wall time, the cache's hits (questions
whose two top 3s were the same, answered once) and the paired comparison to
``benchmarks/results/demo-answers.json``.

    python benchmarks/bench_demo_answers.py --run runs/ci     # ~4 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/ci", help="the demo's tuned run")
    ap.add_argument("--data", default="datasets/cuad-qa")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "demo-answers.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HONED_CACHE_DIR"] = tmp          # read when the cache opens: no answer is reused
        from rich.console import Console

        from honed.rag_eval.demo import demo_answers
        from honed.retriever.device import cpu_name

        t0 = time.perf_counter()
        doc = demo_answers(args.data, args.run, args.index_dir, Console(), "cold:")
        wall = time.perf_counter() - t0
    tests = doc["comparison"]["tuned"]["tests"]
    res = {"benchmark": "demo-answers", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "run": args.run, "data": args.data, "questions": doc["n"], "top_k": doc["top_k"],
           "llm": doc["llm"], "llama_cpp": doc["llama_cpp"], "wall_s": round(wall, 1),
           "answers_generated": doc["cache"]["misses"], "answered_once_for_both": doc["cache"]["hits"],
           "seconds_per_sample": {n: s["seconds_per_sample"] for n, s in doc["systems"].items()},
           "tests": {m: {k: t[k] for k in ("mean_a", "mean_b", "delta", "ci_low", "ci_high", "p_value")}
                     for m, t in tests.items()},
           "no_significant_loss": not any(t["delta"] < 0 and t["p_value"] < 0.05 for t in tests.values())}
    Path(args.result).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
