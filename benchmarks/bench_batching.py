"""Does keeping a query's labelled positives out of its in-batch negatives help? (retriever/finetune/batching.py)

cuad-clauses asks each clause type several ways, and every way has the clause of every contract as a positive:
random MNRL batches put 6% of a query's in-batch negatives among its own labelled positives, and
sentence-transformers' NO_DUPLICATES batches (identical texts apart) 5%. This trains the demo's recipe
(rag_eval/demo.py DEMO_FINETUNE, router on) with ``batching = "labels"`` (honed's sampler), ``"mask"`` (the loss
leaves labelled positives out, finetune/losses.py) and ``"texts"`` (NO_DUPLICATES) on the same seeds, evaluates
every run against the base model with `honed eval beir` on
cuad-clauses and cuad-qa (in domain) and scifact-ood (out of domain), and compares each arm with texts paired per
query: per seed, and with each query's score averaged over the seeds. It also counts, on the training split, the share of
in-batch negatives that are labelled positives of the query under each sampler. Writes
``benchmarks/results/batching.json``.

    python benchmarks/bench_batching.py --seeds 42,7,13 --scifact ../shared/datasets/scifact   # ~35 min (Xeon)
    python benchmarks/bench_batching.py --reuse texts-s42=runs/ci   # a run already trained (its honed.json)
    python benchmarks/bench_batching.py --arms mask,texts --result benchmarks/results/batching-mask.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from bench_demo_recipe import train
from bench_forgetting import REPO, SETS, evaluate_against_base

ARMS = ("labels", "texts")     # texts (NO_DUPLICATES) is the reference every other arm is compared with


def labelled_negative_share(rows: list[tuple[str, str]], batches: list[list[int]]) -> float:
    """Share of (query, other row's passage) pairs in `batches` where the passage is labelled relevant."""
    relevant = defaultdict(set)
    for q, p in rows:
        relevant[q].add(p)
    hits = sum(1 for b in batches for i in b for j in b if i != j and rows[j][1] in relevant[rows[i][0]])
    return hits / max(1, sum(len(b) * (len(b) - 1) for b in batches))


def sampler_counts(data: Path, batch_size: int, steps: int, seed: int) -> dict:
    """Each sampler's share of labelled in-batch negatives on `data`'s training pairs, over `steps` batches and an
    epoch, and its batches per epoch."""
    import torch
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
    from torch.utils.data import BatchSampler, RandomSampler

    from honed.retriever.data import load_beir
    from honed.retriever.data.beir import doc_text
    from honed.retriever.finetune.batching import NoLabelledNegativesBatchSampler

    train_split = load_beir(data, "train")
    rows = [(train_split.queries[q], doc_text(train_split.corpus[d])) for q, rel in sorted(train_split.qrels.items())
            for d, g in sorted(rel.items()) if g > 0]
    ds = Dataset.from_dict({"anchor": [q for q, _ in rows], "positive": [p for _, p in rows]})
    samplers = {
        "random": BatchSampler(RandomSampler(ds, generator=torch.Generator().manual_seed(seed)), batch_size, False),
        "texts (NO_DUPLICATES)": NoDuplicatesBatchSampler(ds, batch_size, False, generator=torch.Generator(), seed=seed),
        "labels (honed)": NoLabelledNegativesBatchSampler(ds, batch_size, False, seed=seed),
    }
    out = {"pairs": len(rows), "queries": len({q for q, _ in rows}), "batch_size": batch_size, "samplers": {}}
    for name, sampler in samplers.items():
        batches = [list(b) for b in sampler]
        out["samplers"][name] = {f"labelled_negatives_first_{steps}_batches":
                                 round(labelled_negative_share(rows, batches[:steps]), 4),
                                 "labelled_negatives_epoch": round(labelled_negative_share(rows, batches), 4),
                                 "batches_per_epoch": len(batches), "planned": -(-len(ds) // batch_size)}
    return out


def paired_arms(report: Path, seeds: list[str], arm: str) -> dict:
    """`arm` vs texts paired per query on each set: per seed, and on scores averaged over the seeds."""
    from honed.rag_eval.significance import paired_test

    doc = json.loads(report.read_text(encoding="utf-8"))
    out = {}
    for ds, body in doc["datasets"].items():
        per = {a: {s: body["systems"][f"{a}-s{s}"]["per_query"] for s in seeds} for a in (arm, "texts")}
        score = {a: {s: {q: m["NDCG@10"] for q, m in per[a][s].items()} for s in seeds} for a in per}
        rows = {f"seed {s}": paired_test(score["texts"][s], score[arm][s]) for s in seeds}
        mean = {a: {q: sum(score[a][s][q] for s in seeds) / len(seeds) for q in score[a][seeds[0]]} for a in score}
        rows["mean over seeds"] = paired_test(mean["texts"], mean[arm])
        out[ds] = {k: {"texts": round(t.mean_a, 4), arm: round(t.mean_b, 4), "delta": round(t.delta, 4),
                       "ci": [round(t.ci_low, 4), round(t.ci_high, 4)], "p_value": float(f"{t.p_value:.3g}"),
                       "wins": t.wins, "losses": t.losses} for k, t in rows.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="42,7,13")
    ap.add_argument("--arms", default=",".join(ARMS), help="batching values to train; texts is always one")
    ap.add_argument("--reuse", action="append", default=[], help="ARM-sSEED=RUN: a run already trained")
    ap.add_argument("--scifact", default=None, help="the full SciFact BEIR folder: its sampler counts too (a claim "
                    "rarely shares its abstracts with another, so the sampler should change little there)")
    ap.add_argument("--runs", default=str(REPO / "runs" / "bench-batching"))
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "batching.json"))
    args = ap.parse_args()
    from honed.rag_eval.demo import DEMO_FINETUNE
    from honed.retriever.device import cpu_name

    seeds = [s for s in args.seeds.split(",") if s]
    arms = [a for a in args.arms.split(",") if a and a != "texts"] + ["texts"]
    work = Path(args.runs)
    systems, runs = dict(spec.split("=", 1) for spec in args.reuse), {}
    for name, run in systems.items():
        m = json.loads((Path(run) / "honed.json").read_text(encoding="utf-8"))
        runs[name] = {"reused": run, "dev_ndcg@10": round(m["eval"]["dev_ndcg@10"], 4),
                      "base_dev_ndcg@10": round(m["eval"]["base_dev_ndcg@10"], 4),
                      "seconds": m["timing"].get("total_s"), "precision": m["timing"].get("precision")}
    for arm in arms:
        for s in seeds:
            name = f"{arm}-s{s}"
            if name not in systems:
                runs[name] = train(work / name, {"batching": arm, "seed": int(s)})
                systems[name] = str(work / name)
                print(name, runs[name], flush=True)
    rows = evaluate_against_base(systems, work)
    res = {"benchmark": "batching", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "recipe": {**DEMO_FINETUNE, "data": "datasets/cuad-clauses"}, "sets": SETS,
           "sampler": sampler_counts(REPO / "datasets" / "cuad-clauses", DEMO_FINETUNE["batch_size"],
                                     DEMO_FINETUNE["max_steps"], 42),
           "sampler_scifact": sampler_counts(Path(args.scifact), DEMO_FINETUNE["batch_size"],
                                             DEMO_FINETUNE["max_steps"], 42) if args.scifact else None,
           "runs": runs, "ndcg@10": rows,
           **{f"{arm}_vs_texts": paired_arms(work / "report" / "report.json", seeds, arm) for arm in arms[:-1]},
           "how": "each run trained on datasets/cuad-clauses' train split with the demo's recipe; test sets: honed "
                  "eval beir, paired vs base; ARM_vs_texts: Wilcoxon and bootstrap CI of ARM - texts per query"}
    Path(args.result).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k == "sampler" or k.endswith("_vs_texts")}, indent=1))


if __name__ == "__main__":
    main()
