"""Fine-tune MiniLM on a BEIR train split and compare base vs tuned on its test split.

    python benchmarks/bench_finetune.py --data ../shared/datasets/scifact --out runs/bench-scifact
    python benchmarks/bench_finetune.py --data datasets/cuad-clauses --out runs/bench-cuad
    # the < 20 min SciFact run (README): one epoch, batch 16, lr 1e-4
    python benchmarks/bench_finetune.py --data ../shared/datasets/scifact --out runs/bench-scifact-1ep-b16 \
        --epochs 1 --batch-size 16 --lr 1e-4 --audit reports/audit-scifact/summary.json

    # recipe search on the dev split (successive halving) within a budget
    python benchmarks/bench_finetune.py --data datasets/cuad-clauses --out runs/bench-cuad-search \
        --search --time-budget 30m --max-seq-length 128 --dev-max-docs 400
    # GPL-style, labels withheld: synthetic queries for 400 train passages, teacher margins, MarginMSE;
    # --labelled adds a labelled run to the comparison
    python benchmarks/bench_finetune.py --data datasets/cuad-clauses --out runs/bench-cuad-gpl --gpl \
        --corpus-split train --max-seq-length 128 --labelled runs/demo

Prints nDCG@10 / Recall@100 of base and tuned (full test corpus), the paired
test, wall time per epoch and peak memory, and writes them as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

from honed.rag_eval.beir_eval import dataset_name, evaluate_systems, parse_system
from honed.rag_eval.report import write_beir_report
from honed.retriever.finetune import FinetuneConfig, finetune


def twin_split(doc: dict, audit_summary: str) -> dict:
    """nDCG@10 per system on test queries with and without an exact/near-duplicate train claim (audit)."""
    import numpy as np

    leak = json.loads(Path(audit_summary).read_text())["leakage"]
    twins = {x["test"] for x in leak["exact"] + leak["near"]}
    res = {"threshold": leak.get("threshold"), "n_twins": 0, "n_clean": 0}
    for name, sysd in doc["systems"].items():
        pq = sysd["per_query"]
        clean = [v["NDCG@10"] for q, v in pq.items() if q not in twins]
        twin = [v["NDCG@10"] for q, v in pq.items() if q in twins]
        res["n_twins"], res["n_clean"] = len(twin), len(clean)
        res[name] = {"clean_ndcg@10": round(float(np.mean(clean)), 4),
                     "twin_ndcg@10": round(float(np.mean(twin)), 4) if twin else None}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--num-negatives", type=int, default=1)
    ap.add_argument("--max-mine-docs", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mine-max-seq-length", type=int, default=128)
    ap.add_argument("--loss", default="mnrl")
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--lr", type=float, default=None, help="default: honed's (FinetuneConfig)")
    ap.add_argument("--eval-steps", type=int, default=50)
    ap.add_argument("--dev-max-docs", type=int, default=1000)
    ap.add_argument("--skip-train", action="store_true", help="evaluate an existing run folder")
    ap.add_argument("--reuse-base-index", default=None, help="an index of the base model over the test corpus")
    ap.add_argument("--audit", default=None,
                    help="summary.json of `honed data audit`: also score the test queries without a train twin")
    ap.add_argument("--search", action="store_true", help="recipe search (needs --time-budget)")
    ap.add_argument("--search-trials", type=int, default=6)
    ap.add_argument("--time-budget", default=None)
    ap.add_argument("--gpl", action="store_true", help="labels withheld: synthetic queries + teacher margins")
    ap.add_argument("--gpl-docs", type=int, default=400, help="passages the LLM writes queries for")
    ap.add_argument("--corpus-split", default="train", help="--gpl: which corpus to adapt to")
    ap.add_argument("--synthetic", default=None, help="--gpl: a pairs file written earlier (skips the LLM)")
    ap.add_argument("--labelled", default=None, help="a labelled run folder to evaluate alongside")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    common = dict(epochs=args.epochs, max_steps=args.max_steps, max_seq_length=args.max_seq_length,
                  max_mine_docs=args.max_mine_docs, batch_size=args.batch_size,
                  mine_max_seq_length=args.mine_max_seq_length, eval_steps=args.eval_steps,
                  dev_max_docs=args.dev_max_docs, time_budget=args.time_budget)
    if args.lr is not None:      # else each path keeps its own default (GPL's differs)
        common["lr"] = args.lr
    if args.gpl and not args.skip_train:
        from honed.retriever.finetune.gpl import adapt_to_corpus, synthetic_pairs_file

        target = synthetic_pairs_file(args.out)
        if args.synthetic and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.synthetic, target)
            if Path(args.synthetic).with_suffix(".stats.json").exists():     # `honed data synth` has none
                shutil.copy(Path(args.synthetic).with_suffix(".stats.json"), target.with_suffix(".stats.json"))
        adapt_to_corpus(args.data, args.out, split=args.corpus_split, max_docs=args.gpl_docs,
                        teacher=args.teacher or "minilm", **common)
    elif not args.skip_train:
        finetune(FinetuneConfig(data=args.data, out=args.out, num_negatives=args.num_negatives, loss=args.loss,
                                teacher=args.teacher, drop_eval_overlap=True, search=args.search,
                                search_trials=args.search_trials, **common))
    man = json.loads(Path(args.out, "honed.json").read_text())
    name = dataset_name(args.data)
    if args.reuse_base_index and not Path("indexes", f"{name}-test-base").exists():
        shutil.copytree(args.reuse_base_index, Path("indexes", f"{name}-test-base"))
    systems = [parse_system("base=minilm"), parse_system(f"tuned={args.out}@torch")]
    if args.labelled:
        systems.append(parse_system(f"labelled={args.labelled}@torch"))
    res = evaluate_systems([args.data], systems)
    report = write_beir_report(res, Path("reports") / f"bench-{Path(args.out).name}", baseline="base")
    doc = json.loads(report.json.read_text())["datasets"][name]
    sig = doc["significance"]["tuned"]["NDCG@10"]
    out = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "dataset": f"{args.data} (test: {doc['n_queries']} queries, {doc['n_docs']} docs)",
        "params": {k: man["params"][k] for k in ("loss", "epochs", "max_steps", "batch_size", "lr", "max_seq_length",
                                                 "num_negatives", "max_mine_docs", "mine_max_seq_length",
                                                 "teacher") if k in man["params"]},
        "base_ndcg@10": doc["systems"]["base"]["metrics"]["NDCG@10"],
        "tuned_ndcg@10": doc["systems"]["tuned"]["metrics"]["NDCG@10"],
        "base_recall@100": doc["systems"]["base"]["metrics"]["Recall@100"],
        "tuned_recall@100": doc["systems"]["tuned"]["metrics"]["Recall@100"],
        "delta_ndcg@10": round(sig["delta"], 4), "p_value": sig["p_value"],
        "wins_ties_losses": [sig["wins"], sig["ties"], sig["losses"]],
        "dev": man["eval"], "timing": man["timing"], "status": man["status"],
        "search": man.get("search"), "mining": man["data"]["mining"],
        "report": str(report.markdown),
    }
    if args.labelled:
        lab = doc["significance"]["labelled"]["NDCG@10"]
        out["labelled"] = {"run": args.labelled, "ndcg@10": doc["systems"]["labelled"]["metrics"]["NDCG@10"],
                           "delta_vs_base": round(lab["delta"], 4), "p_value": lab["p_value"]}
    if args.gpl:
        from honed.retriever.finetune.gpl import synthetic_pairs_file

        stats = synthetic_pairs_file(args.out).with_suffix(".stats.json")
        out["synthetic"] = json.loads(stats.read_text()) if stats.exists() else {"file": args.synthetic}
    if args.audit:
        out["twin_split"] = twin_split(doc, args.audit)
    print(json.dumps(out, indent=2))
    # SciFact's train split holds 2 exact twins of test claims (as BEIR ships it): drop_eval_overlap removes them.
    p = Path(args.json or f"benchmarks/results/finetune-{Path(args.out).name}.json")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
