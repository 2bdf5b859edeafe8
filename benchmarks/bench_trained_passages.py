"""Where a tuned model's test gain lives: test queries whose relevant passage training saw, and the others.

Splitting a dataset by query leaves passages shared (SciFact's claims cite the same abstracts; CUAD ships one
contract twice). For each system built over a dataset's test corpus (existing indexes, nothing is trained
here), the paired nDCG@10 change against the base index on the two groups of test queries, from
``rag_eval.audit.passages_trained_on`` and ``rag_eval.diagnose.gain_by_trained_passage`` (what
`honed diagnose` reports). Writes one entry per ``--name`` into ``benchmarks/results/trained-passages.json``.

The split alone does not say *why* one group gains more (those queries may just be easier to improve).
``--control RUN`` answers that: it fine-tunes RUN's recipe again on a copy of ``--data`` whose train split
leaves out every pair whose positive is a test query's relevant passage, and reports that model too
(``control``): if the gain on the first group was memory of those passages, it falls there.

    # SciFact: base MiniLM vs bench_distill.py's tuned and distilled students (their indexes)
    python benchmarks/bench_trained_passages.py --name scifact --data ../shared/datasets/scifact \\
        --base indexes/scifact-test-base --system tuned=indexes/scifact-test-distill-tuned \\
        --system distilled-from-tuned=indexes/scifact-test-distill-distilled-from-tuned \
        --control runs/bench-distill/tuned                     # + ~5 min training, ~6 min indexing
    # cuad-clauses as it was built before 2026-12-06 (one test contract's copy in train), the demo's indexes
    git archive 3b5b1b9 datasets/cuad-clauses | tar -x -C /tmp/old
    python benchmarks/bench_trained_passages.py --name cuad-clauses-before-dedup \\
        --data /tmp/old/datasets/cuad-clauses --base indexes/cuad-clauses-test-base \\
        --system tuned=indexes/cuad-clauses-test-tuned
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_query_ndcg(ds, spec: str, index_path: Path) -> tuple[dict, str, str]:
    """Per-query metrics on `ds` of an index (its own model) or of a model (indexed at `index_path`, or reused);
    with the model and the index used."""
    from honed.rag_eval.beir_eval import dense_run
    from honed.rag_eval.metrics import evaluate_run
    from honed.retriever.index import load_index

    model = ref = spec
    if (Path(spec) / "manifest.json").is_file():      # an index: its own copy of the model reads the queries
        index = load_index(spec)
        model, ref, index_path = str(index.model_dir), str(index.manifest["model"]["ref"]), Path(spec)
        index.store.close()
    run, _ = dense_run(ds, model, index_path)
    return evaluate_run(ds.qrels, run, (10,)).per_query, ref, str(index_path)


def control_run(run: Path, data: str, out: Path) -> Path:
    """`run`'s recipe fine-tuned again without the training pairs whose positive is a test query's passage."""
    from honed.rag_eval.audit import load_splits
    from honed.retriever.atomic import read_json
    from honed.retriever.data import write_beir
    from honed.rag_eval.audit import passage_key
    from honed.retriever.finetune import FinetuneConfig, finetune

    if (out / "honed.json").is_file():
        return out
    splits = load_splits(data, ("train", "test"))
    train, test = splits["train"], splits["test"]
    held = {passage_key(test, d) for rel in test.qrels.values() for d, g in rel.items() if g > 0 and d in test.corpus}
    qrels = {q: {d: g for d, g in rel.items() if passage_key(train, d) not in held} for q, rel in train.qrels.items()}
    qrels = {q: rel for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    print(f"control: {len(qrels)} of {len(train.qrels)} train queries keep a positive no test query has", flush=True)
    copy = out.parent / f"{out.name}-data"
    write_beir(copy / "train", train.corpus, {q: train.queries[q] for q in qrels}, {"train": qrels})
    write_beir(copy / "test", test.corpus, test.queries, {"test": test.qrels})
    params = read_json(run / "honed.json")["params"]
    keep = {k: v for k, v in params.items() if k not in ("out", "data", "force", "resume", "track")}
    finetune(FinetuneConfig(**{**keep, "data": str(copy), "out": str(out), "force": True, "track": False}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the entry's name in the results file")
    ap.add_argument("--data", required=True, help="BEIR folder with train and test splits")
    ap.add_argument("--base", required=True, help="the base model, or its index of the test corpus")
    ap.add_argument("--system", action="append", required=True, help="NAME=INDEX or NAME=MODEL (its index of the "
                    "test corpus is built under --index-dir, or reused), repeatable")
    ap.add_argument("--control", default=None, help="a run folder whose recipe is fine-tuned again without the "
                    "test queries' passages in training (see above)")
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "trained-passages.json"))
    args = ap.parse_args()

    from honed.rag_eval.audit import load_splits, passages_trained_on
    from honed.rag_eval.diagnose import gain_by_trained_passage
    from honed.rag_eval.significance import paired_test
    from honed.retriever.device import cpu_name

    splits = load_splits(args.data, ("train", "test"))
    test = splits["test"]
    seen = passages_trained_on(splits["train"], test)
    base, base_model, base_index = per_query_ndcg(test, args.base, Path(args.index_dir) / f"{args.name}-test-base")
    entry = {"data": args.data, "test_queries": len(seen), "with_trained_passage": sum(seen.values()),
             "base": {"index": base_index, "model": base_model}, "systems": {}}
    specs = [s.split("=", 1) for s in args.system]
    if args.control:
        specs.append(("control", str(control_run(Path(args.control), args.data,
                                                  REPO / "runs" / "bench-trained-passages" / args.name))))
        entry["control_of"] = args.control
    for name, spec in specs:
        tuned, model, index = per_query_ndcg(test, spec, Path(args.index_dir) / f"{args.name}-test-{name}")
        overall = paired_test({q: v["NDCG@10"] for q, v in base.items()}, {q: v["NDCG@10"] for q, v in tuned.items()})
        entry["systems"][name] = {"index": index, "model": model,
                                  "overall": {**{k: round(float(getattr(overall, k)), 4)
                                                 for k in ("mean_a", "mean_b", "delta", "ci_low", "ci_high")},
                                              "p_value": float(f"{overall.p_value:.3g}")},
                                  **gain_by_trained_passage(seen, base, tuned)}
        print(args.name, name, json.dumps(entry["systems"][name]), flush=True)
    path = Path(args.result)
    doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"benchmark": "trained-passages",
                                                                             "datasets": {}}
    doc.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), cpu=cpu_name())
    doc["datasets"][args.name] = entry
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
