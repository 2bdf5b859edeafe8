"""Can the out-of-domain check fire? Per-query spread and the power to detect a 0.03 nDCG@10 drop, per slice.

Evaluates the base model and a tuned run (the demo's) on each out-of-domain slice and computes, from
the per-query nDCG@10 differences: their standard deviation σ, the share of queries that change at
all, the power of a two-sided paired test at α = 0.05 to detect a drop of 0.03 at the slice's size
(normal approximation: power = Φ(0.03·√n/σ − 1.96)), the number of queries 80% power needs
(n = ((1.96 + 0.84)·σ / 0.03)²), and the half-width of the 95% interval on the mean difference.
Writes ``benchmarks/results/ood-power.json``.

    python benchmarks/bench_ood_power.py --run runs/demo
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SLICES = {"scifact-slice (test fixture: 30 queries, 155 random abstracts)": REPO / "tests" / "fixtures" / "scifact-slice",
          "scifact-ood (300 queries, gold + 2 BM25 distractors each)": REPO / "datasets" / "scifact-ood"}
DROP, Z_ALPHA, Z_BETA = 0.03, 1.959964, 0.841621


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "ood-power.json"))
    args = ap.parse_args()

    from scipy.stats import norm

    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.significance import paired_test
    from honed.retriever.device import cpu_name

    out = {"benchmark": "ood-power", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "run": args.run, "drop_to_detect": DROP, "alpha": 0.05, "slices": {}}
    for label, path in SLICES.items():
        [res] = evaluate_systems([str(path)], [parse_system("base=minilm"), parse_system(f"tuned={args.run}")],
                                 index_dir=args.index_dir)
        b, t = res.systems["base"].metrics.per_query, res.systems["tuned"].metrics.per_query
        d = np.array([t[q]["NDCG@10"] - b[q]["NDCG@10"] for q in sorted(b)])
        sd, n = float(d.std(ddof=1)), len(d)
        z = DROP * np.sqrt(n) / sd
        test = paired_test({q: v["NDCG@10"] for q, v in b.items()}, {q: v["NDCG@10"] for q, v in t.items()})
        out["slices"][label] = {
            "path": str(path.relative_to(REPO)), "queries": n, "passages": res.n_docs,
            "base_ndcg@10": res.systems["base"].metrics.aggregate["NDCG@10"],
            "tuned_ndcg@10": res.systems["tuned"].metrics.aggregate["NDCG@10"],
            "delta": round(float(d.mean()), 4), "p_value": test.p_value, "ci": [test.ci_low, test.ci_high],
            "sd_per_query_delta": round(sd, 4), "queries_changed_share": round(float((d != 0).mean()), 4),
            "power_at_0.03": round(float(norm.cdf(z - Z_ALPHA) + norm.cdf(-z - Z_ALPHA)), 3),
            "queries_for_80pct_power": int(np.ceil(((Z_ALPHA + Z_BETA) * sd / DROP) ** 2)),
            "ci95_half_width": round(float(1.96 * sd / np.sqrt(n)), 4)}
    Path(args.result).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out["slices"], indent=1))


if __name__ == "__main__":
    main()
