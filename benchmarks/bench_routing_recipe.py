"""The demo recipe and its domain router on another domain: SciFact in domain, the contracts out of domain.

Issue #30 asks that the recipe which stops the demo's forgetting is not tuned to the contract sets alone. This
evaluates a run trained with the demo's settings on SciFact's train split (``honed finetune --data SCIFACT
--max-steps 60 --batch-size 32 --max-seq-length 128 --num-negatives 1 --lr 1e-4 --drop-eval-overlap``: SciFact
repeats two test claims in train; the router on by default)
with `honed eval beir` against the base model: on SciFact's test split (in domain) and on datasets/cuad-clauses
(out of domain), with its router and without it (a copy of the run with ``router/`` removed). Writes
``benchmarks/results/routing-scifact.json``.

    python benchmarks/bench_routing_recipe.py --run runs/scifact --data ../shared/datasets/scifact   # ~6 min
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HONED = str(Path(sys.executable).with_name("honed"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run trained on --data's train split, with its router")
    ap.add_argument("--data", required=True, help="the run's BEIR dataset (its test split is evaluated)")
    ap.add_argument("--ood", default=str(REPO / "datasets" / "cuad-clauses"))
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "routing-scifact.json"))
    args = ap.parse_args()

    from honed.retriever.device import cpu_name
    from honed.retriever.index import copy_model

    run = Path(args.run)
    man = json.loads((run / "honed.json").read_text(encoding="utf-8"))
    if "threshold" not in man.get("router", {}):
        sys.exit(f"{run}: has no domain router (honed.json: {man.get('router')})")
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "unrouted"
        copy_model(None, plain, src=run, router=False)    # the same weights, no router (its file record too)
        t0 = time.perf_counter()
        subprocess.run([HONED, "eval", "beir", "--data", args.data, "--ood", args.ood, "--system", "base=minilm",
                        "--system", f"routed={run}@torch", "--system", f"unrouted={plain}@torch",
                        "--out", str(Path(tmp) / "report"), "--index-dir", str(Path(tmp) / "idx")], check=True)
        seconds = round(time.perf_counter() - t0, 1)
        doc = json.loads((Path(tmp) / "report" / "report.json").read_text(encoding="utf-8"))
    rows = {}
    for name, ds in doc["datasets"].items():
        rows[name] = {"role": ds["role"], "queries": ds["n_queries"]}
        for system in ("base", "routed", "unrouted"):
            row = {"ndcg@10": round(ds["systems"][system]["metrics"]["NDCG@10"], 4)}
            t = ds.get("significance", {}).get(system, {}).get("NDCG@10")
            if t:
                row.update(delta_vs_base=round(t["delta"], 4), ci=[round(t["ci_low"], 4), round(t["ci_high"], 4)],
                           p_value=float(f"{t['p_value']:.3g}"))
            rows[name][system] = row
    res = {"benchmark": "routing-scifact", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "run": str(run), "recipe": {k: man["params"][k] for k in
                                                          ("max_steps", "batch_size", "max_seq_length", "lr",
                                                           "num_negatives")},
           "router": man["router"], "eval_seconds": seconds, "ndcg@10": rows}
    Path(args.result).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
