"""How often hard-negative mining finds no hard negative: the per-query median guard vs earlier guards.

    python benchmarks/bench_mining.py --data datasets/cuad-clauses --data ../shared/datasets/scifact \
        --compare-rev 65fe7ff --out benchmarks/results/mining.json
    # the effect on a model: the same 60-step run with each mining, scored on the test split
    python benchmarks/bench_mining.py --data datasets/cuad-clauses --compare-rev 65fe7ff --train-steps 60 \
        --out benchmarks/results/mining-train-cuad.json

For each dataset's train split (the mining corpus honed's finetune uses: all positives plus
random passages up to --max-mine-docs, passages at 128 tokens), it reports:

- ``median``: honed's guard (a candidate must score ≤ 0.95 × the median positive score of its query);
- ``per_pair``: sentence-transformers' own ``mine_hard_negatives`` with the per-pair
  ``relative_margin`` (guard against the pair's own positive): the share of pairs it finds no negative for;
- ``rev``: with --compare-rev, honed's mining module at that git revision (the per-pair dense guard
  plus BM25 candidates guarded against the query's weakest positive), its random-fallback rate.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from honed.retriever.data.beir import doc_text, load_beir
from honed.retriever.encoder import load_encoder
from honed.retriever.finetune.mining import mine_negatives
from honed.retriever.finetune.pairs import pairs_from_qrels
from honed.retriever.finetune.train import _mining_corpus


def mining_at_rev(rev: str):
    """honed's ``mine_negatives`` as it was at git revision `rev` (loaded beside the current package)."""
    src = subprocess.run(["git", "show", f"{rev}:retriever/finetune/mining.py"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "mining_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("honed.retriever.finetune.mining_rev", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.mine_negatives


def train_and_score(data: str, steps: int, mining) -> dict:
    """A `steps`-step run (the demo's settings plus one mined negative per pair), scored on the test split.

    `mining` replaces honed's ``mine_negatives`` for the run (None: the current one).
    """
    import honed.retriever.finetune.mining as mining_mod
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.retriever.finetune import FinetuneConfig, finetune

    current = mining_mod.mine_negatives
    if mining is not None:
        def wrapped(*a, stats=None, **kw):       # the old function kept its counts on itself
            out = mining(*a, **kw)
            if stats is not None:
                st = getattr(mining, "last_stats", {})
                stats.update({**st, "random_fallback_rate": round(st.get("random_fallback", 0) / max(st.get("pairs", 1), 1), 4),
                              "positives_per_query_median": 0, "guarded_out": 0})
            return out
        mining_mod.mine_negatives = wrapped
    out = Path(tempfile.mkdtemp(prefix="bench-mining-run-")) / "run"
    try:
        res = finetune(FinetuneConfig(data=data, out=str(out), max_steps=steps, batch_size=32, max_seq_length=128,
                                      lr=5e-5, num_negatives=1, eval_steps=20, track=False))
    finally:
        mining_mod.mine_negatives = current
    ev = evaluate_systems([data], [parse_system(f"tuned={out}")], index_dir=out.parent / "idx")[0]
    return {"test_ndcg@10": round(ev.systems["tuned"].metrics.aggregate["NDCG@10"], 4),
            "dev_ndcg@10": res.dev_ndcg, "mining": res.manifest["data"]["mining"],
            "seconds": res.manifest["timing"]["total_s"]}


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--compare-rev", default=None, help="also run honed's mining at this git revision")
    ap.add_argument("--max-mine-docs", type=int, default=4000)
    ap.add_argument("--train-steps", type=int, default=0, help="also fine-tune N steps with each mining and "
                                                                   "score on test (needs --compare-rev)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    enc = load_encoder("minilm", batch_size=32, max_seq_length=128, backend="torch")
    old = mining_at_rev(args.compare_rev) if args.compare_rev else None
    res = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "datasets": {}}
    for data in args.data:
        train = load_beir(data, "train")
        pairs = pairs_from_qrels(train)
        corpus = _mining_corpus({d: doc_text(doc) for d, doc in train.corpus.items()}, pairs,
                                args.max_mine_docs, 42)
        cache = tempfile.mkdtemp(prefix="bench-mining-")
        row = {"pairs": len(pairs), "corpus": len(corpus)}
        t0 = time.perf_counter()
        stats: dict = {}
        mine_negatives(pairs, corpus, enc, num_negatives=1, stats=stats, cache_folder=cache)
        row["median"] = {**stats, "seconds": round(time.perf_counter() - t0, 1)}
        per_pair = mine_hard_negatives(Dataset.from_dict({"anchor": [p.query for p in pairs],
                                                          "positive": [p.positive for p in pairs]}),
                                       enc.model, corpus=list(corpus.values()), range_max=50, relative_margin=0.05,
                                       num_negatives=1, output_format="triplet", verbose=False, cache_folder=cache)
        row["per_pair"] = {"pairs_without_negative": len(pairs) - len(per_pair),
                           "rate": round(1 - len(per_pair) / len(pairs), 4)}
        if old is not None:
            t0 = time.perf_counter()
            old(pairs, corpus, enc, num_negatives=1, cache_folder=tempfile.mkdtemp(prefix="bench-mining-old-"))
            st = getattr(old, "last_stats", {})
            row["rev"] = {"rev": args.compare_rev, **st,
                          "random_fallback_rate": round(st.get("random_fallback", 0) / len(pairs), 4),
                          "seconds": round(time.perf_counter() - t0, 1)}
        if args.train_steps and old is not None:
            row["train"] = {"steps": args.train_steps, "median": train_and_score(data, args.train_steps, None),
                            "rev": train_and_score(data, args.train_steps, old)}
        res["datasets"][Path(data).name] = row
        print(json.dumps({Path(data).name: row}, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
