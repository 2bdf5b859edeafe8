"""Peak memory of a CPU fine-tune with and without gradient checkpointing, and whether the results are the same.

Runs `honed finetune` twice on the same data and settings (default: the shipped cuad-clauses,
batch 32, 256 tokens, one mined negative, 12 steps), once with ``--gradient-checkpointing off``
(honed before this option) and once ``on`` (the CPU default now), each under ``/usr/bin/time -v``,
then compares peak RSS, seconds per step and every logged loss and dev nDCG@10.

    python benchmarks/bench_memory.py --data datasets/cuad-clauses --steps 12
    python benchmarks/bench_memory.py --reuse /tmp/mem/run-default /tmp/mem/run-ckpt   # compare finished runs
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


def run(data: str, out: Path, steps: int, checkpointing: str) -> None:
    honed = str(Path(sys.executable).with_name("honed"))
    subprocess.run(["/usr/bin/time", "-v", honed, "finetune", "--data", data, "--out", str(out), "--max-steps",
                    str(steps), "--eval-steps", str(max(1, steps // 2)), "--no-track", "--force",
                    "--gradient-checkpointing", checkpointing], check=True)


def step_seconds(checkpointing: bool, data: str, batch: int = 32, repeats: int = 3) -> float:
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
    model.max_seq_length = 256
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    loss = losses.MultipleNegativesRankingLoss(model)
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
            "peak_rss_mb": t["peak_rss_mb"], "steps": t["steps"], "train_s": t["train_s"],
            "s_per_step_incl_eval": round(t["train_s"] / max(t["steps"], 1), 1),
            "losses": [h["loss"] for h in hist if "loss" in h],
            "dev_ndcg": [h["eval_dev_cosine_ndcg@10"] for h in hist if "eval_dev_cosine_ndcg@10" in h]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="datasets/cuad-clauses")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--work", default="runs/bench-memory")
    ap.add_argument("--reuse", nargs=2, metavar=("OFF_RUN", "ON_RUN"), help="compare two finished runs")
    ap.add_argument("--out", default="benchmarks/results/memory.json")
    args = ap.parse_args()
    if args.reuse:
        off, on = map(Path, args.reuse)
    else:
        off, on = Path(args.work) / "off", Path(args.work) / "on"
        run(args.data, off, args.steps, "off")
        run(args.data, on, args.steps, "on")
    a, b = summary(off), summary(on)
    a["step_s_micro"], b["step_s_micro"] = step_seconds(False, args.data), step_seconds(True, args.data)
    print(f"one training step, 32 triples at 256 tokens (median of 3): off {a['step_s_micro']} s, "
          f"on {b['step_s_micro']} s")
    same_loss = max(abs(x - y) for x, y in zip(a["losses"], b["losses"])) if a["losses"] else None
    same_ndcg = max(abs(x - y) for x, y in zip(a["dev_ndcg"], b["dev_ndcg"])) if a["dev_ndcg"] else None
    for s in (a, b):
        print(f"checkpointing {'on ' if s['gradient_checkpointing'] else 'off'}: peak RSS {s['peak_rss_mb']:.0f} MB, "
              f"{s['s_per_step_incl_eval']} s/step (dev evaluations included), losses {s['losses']}, "
              f"dev nDCG@10 {s['dev_ndcg']}")
    print(f"largest difference: loss {same_loss:.2e}, dev nDCG@10 {same_ndcg:.2e}")
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
           "cores": os.cpu_count(), "data": args.data, "off": a, "on": b,
           "max_loss_difference": same_loss, "max_dev_ndcg_difference": same_ndcg}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
