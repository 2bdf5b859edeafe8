"""Where a tuned model's test gain lives: test queries whose relevant passage training saw, and the others.

Splitting a dataset by query leaves passages shared (SciFact's claims cite the same abstracts; CUAD ships one
contract twice). For each system built over a dataset's test corpus (existing indexes, nothing is trained
here), the paired nDCG@10 change against the base index on the two groups of test queries, from
``rag_eval.audit.passages_trained_on`` and ``rag_eval.diagnose.gain_by_trained_passage`` (what
`honed diagnose` reports). Writes one entry per ``--name`` into ``benchmarks/results/trained-passages.json``.

    # SciFact: base MiniLM vs bench_distill.py's tuned and distilled students (their indexes)
    python benchmarks/bench_trained_passages.py --name scifact --data ../shared/datasets/scifact \\
        --base indexes/scifact-test-base --system tuned=indexes/scifact-test-distill-tuned \\
        --system distilled-from-tuned=indexes/scifact-test-distill-distilled-from-tuned
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


def per_query_ndcg(index_dir: str, ds) -> tuple[dict, str]:
    """Per-query metrics of the index's own model on `ds`'s test queries, and the model it holds."""
    from honed.rag_eval.metrics import evaluate_run
    from honed.retriever.fusion import search_modes
    from honed.retriever.index import open_index_and_encoder

    index, enc = open_index_and_encoder(index_dir)
    qids = sorted(ds.queries)
    texts = [ds.queries[q] for q in qids]
    hits = search_modes(index, enc.encode_queries(texts), texts, 100, "dense")
    ids = {p: d["id"] for p, d in index.store.iter_docs()}
    run = {q: {ids[p]: s for p, s in h} for q, h in zip(qids, hits)}
    index.store.close()
    return evaluate_run(ds.qrels, run, (10,)).per_query, str(index.manifest["model"]["ref"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the entry's name in the results file")
    ap.add_argument("--data", required=True, help="BEIR folder with train and test splits")
    ap.add_argument("--base", required=True, help="index of the base model over the test corpus")
    ap.add_argument("--system", action="append", required=True, help="NAME=INDEX, repeatable")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "trained-passages.json"))
    args = ap.parse_args()

    from honed.rag_eval.audit import load_splits, passages_trained_on
    from honed.rag_eval.diagnose import gain_by_trained_passage
    from honed.rag_eval.significance import paired_test
    from honed.retriever.device import cpu_name

    splits = load_splits(args.data, ("train", "test"))
    test = splits["test"]
    seen = passages_trained_on(splits["train"], test)
    base, base_model = per_query_ndcg(args.base, test)
    entry = {"data": args.data, "test_queries": len(seen), "with_trained_passage": sum(seen.values()),
             "base": {"index": args.base, "model": base_model}, "systems": {}}
    for spec in args.system:
        name, index = spec.split("=", 1)
        tuned, model = per_query_ndcg(index, test)
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
