"""`honed diagnose` on the demo's run: wall time, the ranked findings, and the concept confusions of base vs tuned.

Runs the diagnosis a user runs after `make demo` (cuad-clauses, plus the shipped QA set as a second
in-domain set and the SciFact fixture slice out of domain) and writes
``benchmarks/results/diagnose-demo.json``: the findings in order, the ten pairs of clause types the base
model confuses most with the tuned model's rate on each, per-concept nDCG@10 for both, and on cuad-qa
whether the tuned model confuses *which contract* a passage belongs to more than the base model does.

    python benchmarks/bench_diagnose.py --run runs/demo
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="the tuned run (the demo's)")
    ap.add_argument("--out", default="reports/diagnose-demo")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "diagnose-demo.json"))
    args = ap.parse_args()

    from honed.rag_eval.diagnose import diagnose
    from honed.retriever.device import cpu_name

    t0 = time.perf_counter()
    doc = diagnose(REPO / "datasets" / "cuad-clauses", args.run, out=args.out, also=[str(REPO / "datasets" / "cuad-qa")],
                   ood=[str(REPO / "tests" / "fixtures" / "scifact-slice")], index_dir=args.index_dir, force=True)
    wall = time.perf_counter() - t0
    conf = doc["confusion"]
    clauses = conf["cuad-clauses"]
    res = {"benchmark": "diagnose-demo", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "run": args.run, "wall_s": round(wall, 1),
           "how": "honed diagnose --data datasets/cuad-clauses --model RUN --also datasets/cuad-qa "
                  "--ood tests/fixtures/scifact-slice (index cache warm or cold as found; see wall_s)",
           "findings": [{k: f[k] for k in ("area", "severity", "title", "action")} for f in doc["findings"]],
           "cuad_clauses": {"concepts": clauses["source"], "confused_rate": clauses["confused_rate"],
                            "top_pairs": [{k: v for k, v in r.items() if k != "examples"}
                                          for r in clauses["compare"]["top_pairs"]],
                            "grown_pairs": [{k: v for k, v in r.items() if k != "examples"}
                                            for r in clauses["compare"]["grown"]["tuned"]],
                            "per_concept_ndcg@10": {c: {s: clauses["per_concept"][s][c]["ndcg@10"]
                                                        for s in ("base", "tuned")}
                                                    for c in clauses["per_concept"]["base"]}},
           "cuad_qa": {k: conf["cuad-qa"][k] for k in ("source", "confused_rate")} if "cuad-qa" in conf else None,
           "datasets": {k: {"role": v["role"], "ndcg@10": v["ndcg@10"],
                            "paired": {x: v["paired"][x] for x in ("delta", "ci_low", "ci_high", "p_value", "n")}}
                        for k, v in doc["evidence"]["datasets"].items()}}
    Path(args.result).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: res[k] for k in ("wall_s", "findings")}, indent=1))


if __name__ == "__main__":
    main()
