"""Which loss lets a cross-encoder learn from a few hundred queries? Dev reranking of `honed reranker train` variants.

The reranker starts from a bi-encoder's weights with a random classification head. With binary cross-entropy and
one mined negative per pair (the recipe until 2026-12-06) it barely learned on SciFact (the reranker alone scored
the first stage's top 30 far below the first stage's own order). This trains `train_reranker` variants on one
dataset (first stage: base MiniLM) and writes each card's dev numbers: the first stage's order, the reranker alone
(untrained and trained), and the best mix with the first stage, to ``benchmarks/results/reranker-loss.json``.
Chosen on dev only; the test split is bench_rerank.py's.

    python benchmarks/bench_reranker_loss.py --data ../shared/datasets/scifact     # ~30 min on 2 cores (Xeon)
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {   # 2 epochs at 5e-5 and 128 tokens each (bench_rerank.py's RECIPE otherwise)
    "bce-1neg": dict(loss="bce", num_negatives=1),
    "mnrl-4neg": dict(loss="mnrl", num_negatives=4),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", default=str(REPO / "runs" / "bench-reranker-loss"))
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "reranker-loss.json"))
    args = ap.parse_args()
    from honed.retriever.device import cpu_name
    from honed.retriever.finetune.reranker import train_reranker

    rows = {}
    for name, kw in VARIANTS.items():
        t0 = time.perf_counter()
        card = train_reranker(args.data, Path(args.runs) / name, first_stage="minilm", epochs=2.0, lr=5e-5,
                              max_length=128, drop_eval_overlap=True, force=True, **kw)
        d = card["dev"]
        rows[name] = {**kw, "triples": card["triples"], "first_stage_ndcg@10": d["first_stage_ndcg@10"],
                      "alone_untrained_ndcg@10": d["rerank_ndcg@10_untrained"], "alone_ndcg@10": d["rerank_ndcg@10"],
                      "mix_weight": d["mix"]["weight"], "mix_ndcg@10": d["mix"]["ndcg@10"],
                      "seconds": round(time.perf_counter() - t0)}
        print(name, rows[name], flush=True)
    res = {"benchmark": "reranker-loss", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "data": args.data, "recipe": "train_reranker, MiniLM from the packaged bi-encoder, "
           "first stage base MiniLM, 2 epochs, lr 5e-5, batch 16, 128 tokens", "dev_queries_candidates": 30,
           "variants": rows}
    Path(args.result).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
