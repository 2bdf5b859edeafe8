"""Confusable-concept negatives vs the default mining, same recipe, same run: does aiming the negatives help?

Trains the demo recipe (rag_eval/demo.py as of its run: 60 steps, batch 32, 128 tokens, one mined negative, lr 5e-5)
twice on cuad-clauses, once with ``negatives="hard"`` (the default) and once with
``negatives="confusable"``, evaluates base, both runs and BM25 on the test split, and writes
``benchmarks/results/confusable-negatives.json``: nDCG@10 and Recall@100 with paired tests against the
default, the confusion rate of the five pairs of clause types the base model confuses most, and their
per-concept nDCG@10.

    python benchmarks/bench_confusable.py            # ~25 min on 2 cores
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
    ap.add_argument("--data", default=str(REPO / "datasets" / "cuad-clauses"))
    ap.add_argument("--runs", default="runs/bench-confusable")
    ap.add_argument("--index-dir", default="indexes/bench-confusable")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "confusable-negatives.json"))
    args = ap.parse_args()

    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.confusion import compare_confusions, concept_confusions
    from honed.rag_eval.demo import DEMO_FINETUNE
    from honed.rag_eval.significance import paired_test
    from honed.retriever.data import load_beir
    from honed.retriever.data.concepts import concept_labels
    from honed.retriever.device import cpu_name
    from honed.retriever.finetune import finetune
    from honed.retriever.finetune.config import finetune_config

    runs, mining = {}, {}
    for kind in ("hard", "confusable"):
        out = Path(args.runs) / kind
        t0 = time.perf_counter()
        res = finetune(finetune_config({**DEMO_FINETUNE, "negatives": kind, "track": False}, "bench settings",
                                       data=args.data, out=str(out), force=True))
        runs[kind] = {"dev_ndcg@10": res.dev_ndcg, "base_dev_ndcg@10": res.base_dev_ndcg, "status": res.status,
                      "seconds": round(time.perf_counter() - t0, 1)}
        mining[kind] = res.manifest["data"]["mining"]
    systems = [parse_system("bm25"), parse_system("base=minilm"),
               *(parse_system(f"{k}={Path(args.runs) / k}") for k in ("hard", "confusable"))]
    [result] = evaluate_systems([args.data], systems, split="test", index_dir=args.index_dir)
    ds = load_beir(args.data, "test")
    labels = concept_labels(ds)
    by_sys = {s: concept_confusions(ds, result.systems[s].run, labels, result.systems[s].metrics.per_query)
              for s in ("base", "hard", "confusable")}
    cmp = compare_confusions(by_sys, "base", top=5)
    per_q = {s: result.systems[s].metrics.per_query for s in result.systems}
    tests = {m: paired_test({q: v[m] for q, v in per_q["hard"].items()},
                            {q: v[m] for q, v in per_q["confusable"].items()}, metric=m).to_dict()
             for m in ("NDCG@10", "Recall@100")}
    top5 = [{k: r[k] for k in ("concept", "confused_with", "base", "hard", "confusable")} for r in cmp["top_pairs"]]
    concepts5 = sorted({r["concept"] for r in top5})
    res = {"benchmark": "confusable-negatives", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "recipe": {**DEMO_FINETUNE, "data": "datasets/cuad-clauses"},
           "runs": runs, "mining": {k: {x: v.get(x) for x in ("random_fallback_rate", "guarded_out", "confusable")}
                                    for k, v in mining.items()},
           "test": {s: {m: result.systems[s].metrics.aggregate[m] for m in ("NDCG@10", "Recall@100")}
                    for s in result.systems},
           "confusable_vs_hard": tests,
           "confused_rate": {s: by_sys[s]["confused_rate"] for s in by_sys},
           "top5_pairs_of_base": top5,
           "top5_concepts_ndcg@10": {c: {s: by_sys[s]["per_concept"][c]["ndcg@10"] for s in by_sys} for c in concepts5}}
    d = tests["NDCG@10"]
    res["verdict"] = ("keep" if d["delta"] > 0 and d["p_value"] < 0.05 else
                      "no significant difference" if d["p_value"] >= 0.05 else "worse")
    Path(args.result).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: res[k] for k in ("test", "confusable_vs_hard", "confused_rate", "verdict")}, indent=1))


if __name__ == "__main__":
    main()
