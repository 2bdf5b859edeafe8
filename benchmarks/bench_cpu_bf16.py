"""bf16 autocast vs fp32 for a CPU fine-tune: the demo's recipe, its training time and its test quality.

On a CPU with native bf16 (AVX512-BF16 or AMX-BF16) honed trains in bf16 by default (``--precision auto``,
retriever/device.py). This checks that choice: the demo recipe (rag_eval/demo.py) trained in fp32 and in bf16
on cuad-clauses, then both evaluated on its test split and on datasets/scifact-ood (out of domain), paired per
query. Writes ``benchmarks/results/cpu-bf16.json``.

    python benchmarks/bench_cpu_bf16.py                        # trains both (~20 min on 2 cores)
    python benchmarks/bench_cpu_bf16.py --fp32-run runs/ci --bf16-run runs/x-bf16   # evaluates two given runs
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO / "datasets" / "cuad-clauses"))
    ap.add_argument("--ood", default=str(REPO / "datasets" / "scifact-ood"))
    ap.add_argument("--fp32-run", default=None, help="an existing fp32 run of the demo recipe (else trained)")
    ap.add_argument("--bf16-run", default=None, help="an existing bf16 run of the demo recipe (else trained)")
    ap.add_argument("--runs", default="runs/bench-bf16")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "cpu-bf16.json"))
    ap.add_argument("--note", default="", help="how the runs were made, recorded in the results file")
    args = ap.parse_args()

    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.demo import DEMO_FINETUNE
    from honed.rag_eval.significance import paired_test
    from honed.retriever.device import cpu_bf16, cpu_name
    from honed.retriever.finetune import finetune
    from honed.retriever.finetune.config import finetune_config

    if not cpu_bf16():
        sys.exit("this CPU has no native bf16 (AVX512-BF16 / AMX-BF16): bf16 autocast would be emulated")
    runs = {"fp32": args.fp32_run, "bf16": args.bf16_run}
    for prec, run in runs.items():
        if run is None:
            runs[prec] = str(Path(args.runs) / prec)
            finetune(finetune_config({**DEMO_FINETUNE, "precision": prec, "track": False}, "bench settings",
                                     data=args.data, out=runs[prec], force=True))
    doc = {"benchmark": "cpu-bf16", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "recipe": DEMO_FINETUNE, "note": args.note, "runs": {}}
    for prec, run in runs.items():
        man = json.loads((Path(run) / "honed.json").read_text())
        t = man["timing"]
        doc["runs"][prec] = {"run": run, "precision": t["precision"], "train_s": t["train_s"], "steps": t["steps"],
                             "s_per_step": round(t["train_s"] / t["steps"], 2), "peak_rss_mb": t.get("peak_rss_mb"),
                             "dev_ndcg@10": man["eval"]["dev_ndcg@10"], "created": man["created"]}
        if t["precision"] != prec:
            sys.exit(f"{run} trained in {t['precision']}, not {prec}")
    systems = [parse_system(f"{p}={r}@torch") for p, r in runs.items()]
    results = evaluate_systems([args.data], systems, ood=[args.ood], index_dir=args.index_dir)
    doc["test"] = {}
    for res in results:
        per_q = {s: {q: v["NDCG@10"] for q, v in res.systems[s].metrics.per_query.items()} for s in runs}
        t = paired_test(per_q["fp32"], per_q["bf16"], "NDCG@10").to_dict()
        doc["test"][res.name] = {"role": res.role, "n": res.n_queries,
                                 **{f"{s}_ndcg@10": round(res.systems[s].metrics.aggregate["NDCG@10"], 4)
                                    for s in runs},
                                 "bf16_minus_fp32": {k: t[k] for k in ("delta", "ci_low", "ci_high", "p_value")}}
    doc["speedup"] = round(doc["runs"]["fp32"]["s_per_step"] / doc["runs"]["bf16"]["s_per_step"], 2)
    doc["same_quality"] = all(v["bf16_minus_fp32"]["p_value"] >= 0.05 or v["bf16_minus_fp32"]["delta"] >= 0
                              for v in doc["test"].values())
    Path(args.result).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: doc[k] for k in ("speedup", "same_quality", "test")}, indent=1))


if __name__ == "__main__":
    main()
