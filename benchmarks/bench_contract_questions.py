"""Do contract questions in the training data stop the tuned model from confusing contracts?

Issue #30's diagnosis (`honed diagnose ... --also datasets/cuad-qa`) found that the demo's model, tuned on
cuad-clauses' category queries (every contract's clause is a positive), puts another contract's passage
above the asked contract's own in 24% of cuad-qa's questions, against 3% for the base model. cuad-clauses'
train split now also holds one question per (contract, category) that names the contract by its parties
(`honed data build-cuad`, step 6 of the dataset card). This trains the demo recipe on the train split
without them (rebuilt from ../shared/datasets/cuad with ``contract_questions=False``) and with them (the
shipped split), plus any `--variant` of the latter, and for each reports `honed eval beir` against the base
on cuad-clauses, cuad-qa and datasets/scifact-ood, and `honed diagnose`'s contract-confusion rate on
cuad-qa. Writes ``benchmarks/results/contract-questions.json``.

    python benchmarks/bench_contract_questions.py                          # ~25 min on 2 cores
    python benchmarks/bench_contract_questions.py --reuse without=runs/ci-old --reuse with=runs/ci \\
        --variant with-lr1e-4=lr=1e-4
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

from bench_forgetting import HONED, REPO, SETS, evaluate_against_base

SHARED_CUAD = REPO.parent / "shared" / "datasets" / "cuad"


def train(data: Path, out: Path, overrides: dict) -> float:
    """The demo's recipe (rag_eval/demo.py DEMO_FINETUNE) with `overrides`; returns the training seconds."""
    from honed.rag_eval.demo import DEMO_FINETUNE
    from honed.retriever.finetune import finetune
    from honed.retriever.finetune.config import finetune_config

    t0 = time.perf_counter()    # finetune_config refuses an unknown key or a wrong type in `overrides`
    finetune(finetune_config({**DEMO_FINETUNE, **overrides}, "--variant", data=str(data), out=str(out), track=False,
                             force=True))
    return round(time.perf_counter() - t0, 1)


def contract_confusion(name: str, run: str, work: Path) -> dict:
    """`honed diagnose`'s share of cuad-qa questions whose first passage is from another contract."""
    out = work / f"diagnose-{name}"
    subprocess.run([HONED, "diagnose", "--data", "datasets/cuad-clauses", "--model", run, "--also", "datasets/cuad-qa",
                    "--out", str(out), "--force", "--index-dir", str(work / "indexes")], check=True, cwd=REPO)
    doc = json.loads((out / "diagnosis.json").read_text(encoding="utf-8"))
    return {k: round(v, 4) for k, v in doc["confusion"]["cuad-qa"]["confused_rate"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse", action="append", default=[], help="NAME=RUN: an existing run evaluated as it is "
                    "(names: without, with, or a variant's)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=KEY=VALUE[,KEY=VALUE]: the recipe with these FinetuneConfig overrides, on the shipped data")
    ap.add_argument("--note", default="", help="how the --reuse runs were trained (kept in the result)")
    ap.add_argument("--runs", default=str(REPO / "runs" / "bench-contract-questions"))
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "contract-questions.json"))
    args = ap.parse_args()
    work = Path(args.runs)
    systems = dict(spec.split("=", 1) for spec in args.reuse)
    variants = {"with": {}}
    for spec in args.variant:
        name, kvs = spec.split("=", 1)
        variants[name] = tomllib.loads("\n".join(kvs.split(",")))     # read like a [finetune] table
    trained = {}
    if "without" not in systems:
        if not SHARED_CUAD.is_dir():
            sys.exit(f"{SHARED_CUAD}: not found; pass --reuse without=RUN (a run trained on category queries only)")
        from honed.retriever.data.cuad import build_cuad

        with tempfile.TemporaryDirectory() as tmp:
            build_cuad(SHARED_CUAD, Path(tmp) / "cuad-clauses", contract_questions=False)
            trained["without"] = {"train_s": train(Path(tmp) / "cuad-clauses", work / "without", {})}
        systems["without"] = str(work / "without")
    for name, over in variants.items():
        if name not in systems:
            trained[name] = {"overrides": over, "train_s": train(REPO / "datasets" / "cuad-clauses", work / name, over)}
            systems[name] = str(work / name)
    rows = evaluate_against_base(systems, work)
    confusion = {name: contract_confusion(name, run, work) for name, run in systems.items()}

    from honed.retriever.data import load_beir
    from honed.retriever.device import cpu_name

    train_split = load_beir(REPO / "datasets" / "cuad-clauses", "train")
    asked = sum(1 for m in train_split.query_metadata.values() if "contract" in m)
    res = {"benchmark": "contract-questions", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "recipe": "the demo's (rag_eval/demo.py DEMO_FINETUNE)", "sets": SETS,
           "train_split": {"category_queries": len(train_split.queries) - asked, "contract_questions": asked},
           "runs": systems, "reused_runs": args.note or None, "trained": trained, "variants": variants, "ndcg@10": rows,
           "cuad_qa_contract_confusion": confusion,
           "how": "contract confusion: share of cuad-qa questions whose first passage belongs to another contract "
                  "(honed diagnose, passage metadata 'contract'); ndcg@10: honed eval beir, paired vs base"}
    Path(args.result).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"ndcg@10": rows, "confusion": confusion}, indent=1))


if __name__ == "__main__":
    main()
