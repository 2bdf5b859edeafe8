"""Peak memory of a CPU fine-tune with each memory saver, and whether the results are the same.

Runs `honed finetune` on the same data and settings (default: the shipped cuad-clauses, batch 32,
256 tokens, one mined negative, 12 steps) once per variant, each under ``/usr/bin/time -v``:
``off`` (neither saver: honed before them), ``checkpointing`` (``--gradient-checkpointing on``) and
``cache`` (``--gradient-cache on``: MNRL as GradCache, the CPU default now), then compares peak RSS,
seconds per step and every logged loss and dev nDCG@10; ``--micro`` also times one training step of each.

    python benchmarks/bench_memory.py --data datasets/cuad-clauses --steps 12
    python benchmarks/bench_memory.py --variants cache --micro --out benchmarks/results/memory-cache.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench_artifact import cpu_name


VARIANTS = {"off": ["--gradient-checkpointing", "off", "--gradient-cache", "off"],
            "checkpointing": ["--gradient-checkpointing", "on", "--gradient-cache", "off"],
            "cache": ["--gradient-checkpointing", "off", "--gradient-cache", "on"]}


def run(data: str, out: Path, steps: int, variant: str) -> None:
    honed = str(Path(sys.executable).with_name("honed"))
    subprocess.run(["/usr/bin/time", "-v", honed, "finetune", "--data", data, "--out", str(out), "--max-steps",
                    str(steps), "--eval-steps", str(max(1, steps // 2)), "--no-track", "--force",
                    *VARIANTS[variant]], check=True)


def step_seconds(variant: str, data: str, batch: int = 32, repeats: int = 3, seq_length: int = 256,
                 mini: int = 8) -> float:
    """Median seconds of one MNRL training step (forward + backward) on `batch` triples at 256 tokens."""
    import statistics
    import time

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    from honed.retriever.data.beir import doc_text, load_beir
    from honed.retriever.models import resolve_model

    ds = load_beir(data, "train")
    texts = [doc_text(d) for d in list(ds.corpus.values())[: 3 * batch]]
    queries = list(ds.queries.values())[:batch]
    model = SentenceTransformer(str(resolve_model("minilm")), device="cpu")
    model.max_seq_length = seq_length
    if variant == "checkpointing":
        model.gradient_checkpointing_enable()
    model.train()
    loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini) if variant == "cache" \
        else losses.MultipleNegativesRankingLoss(model)
    feats = [model.preprocess(queries), model.preprocess(texts[:batch]), model.preprocess(texts[batch:2 * batch])]
    times = []
    for _ in range(repeats):
        model.zero_grad()
        t0 = time.perf_counter()
        loss(feats, None).backward()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 2)


def summary(run_dir: Path) -> dict:
    man = json.loads((run_dir / "honed.json").read_text())
    hist = json.loads((run_dir / "log_history.json").read_text())
    t = man["timing"]
    return {"run": str(run_dir), "gradient_checkpointing": t.get("gradient_checkpointing", False),
            "gradient_cache": t.get("gradient_cache", False),
            "peak_rss_mb": t["peak_rss_mb"], "steps": t["steps"], "train_s": t["train_s"],
            "s_per_step_incl_eval": round(t["train_s"] / max(t["steps"], 1), 1),
            "losses": [h["loss"] for h in hist if "loss" in h],
            "dev_ndcg": [h["eval_dev_cosine_ndcg@10"] for h in hist if "eval_dev_cosine_ndcg@10" in h]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="datasets/cuad-clauses")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--micro", action="store_true", help="also time one training step of every variant")
    ap.add_argument("--micro-only", action="store_true", help="only the step timings (no fine-tune runs)")
    ap.add_argument("--seq-length", type=int, default=256, help="tokens per sequence in the step timings")
    ap.add_argument("--mini", type=int, nargs="+", default=[8], help="gradient-cache chunk sizes to time")
    ap.add_argument("--work", default="runs/bench-memory")
    ap.add_argument("--out", default="benchmarks/results/memory.json")
    args = ap.parse_args()
    runs = {}
    for v in [] if args.micro_only else args.variants:
        run(args.data, Path(args.work) / v, args.steps, v)
        runs[v] = summary(Path(args.work) / v)
    micro = {}
    if args.micro or args.micro_only:
        for v in VARIANTS:
            for mini in args.mini if v == "cache" else [None]:
                name = f"cache-{mini}" if mini else v
                micro[name] = step_seconds(v, args.data, seq_length=args.seq_length, mini=mini or 8)
                print(f"one training step, 32 triples at {args.seq_length} tokens (median of 3): {name} "
                      f"{micro[name]} s", flush=True)
    first = runs[args.variants[0]] if runs else {"losses": []}
    for v, r in runs.items():
        r["max_loss_difference_to_" + args.variants[0]] = max(
            (abs(x - y) for x, y in zip(first["losses"], r["losses"])), default=None)
        print(f"{v:>13}: peak RSS {r['peak_rss_mb']:.0f} MB, {r['s_per_step_incl_eval']} s/step (dev evaluations "
              f"included), losses {r['losses']}, dev nDCG@10 {r['dev_ndcg']}")
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "data": args.data, "steps": args.steps, "runs": runs,
           "micro_seq_length": args.seq_length, "step_s_micro": micro}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
