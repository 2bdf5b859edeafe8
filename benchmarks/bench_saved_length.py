"""What does a tuned model lose when it is saved at its training length instead of the base model's?

Until 2026-12-06 `honed finetune` saved the model at the length it trained at: the demo trains at 128 tokens
(speed), so its model, its index and its artifact read only the first 128 tokens of every passage, where the
base model reads 256. This saves the same weights at each length in ``--lengths`` and evaluates them against
the base model with `honed eval beir` on cuad-clauses (in domain), cuad-qa (its contract questions) and
datasets/scifact-ood (out of domain), with the share of each set's passages longer than each length.
Writes ``benchmarks/results/saved-length.json``.

    python benchmarks/bench_saved_length.py --run runs/ci            # ~6 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench_forgetting import REPO, SETS, evaluate_against_base

SET_CORPORA = {"cuad-clauses": "datasets/cuad-clauses/test/corpus.jsonl", "cuad-qa": "datasets/cuad-qa/corpus.jsonl",
               "scifact-ood": "datasets/scifact-ood/corpus.jsonl"}


def save_at_length(run: Path, length: int, dest: Path) -> None:
    """The run's weights saved again, reading `length` tokens (its honed.json kept beside them)."""
    from sentence_transformers import SentenceTransformer

    from honed.retriever.atomic import atomic_dir

    model = SentenceTransformer(str(run), device="cpu", trust_remote_code=False)
    model.max_seq_length = length
    with atomic_dir(dest, kind="run", force=True) as tmp:
        model.save(str(tmp))
        shutil.copy2(run / "honed.json", tmp / "honed.json")


def longer_than(lengths: list[int], tokenizer_dir: Path) -> dict:
    """Per set: the share of its passages (title and text, as indexed) longer than each length in tokens."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tok.no_truncation()
    out = {}
    for name, path in SET_CORPORA.items():
        docs = [json.loads(line) for line in (REPO / path).read_text(encoding="utf-8").splitlines() if line.strip()]
        n = [len(tok.encode(f"{d.get('title', '')} {d.get('text', '')}".strip()).ids) for d in docs]
        out[name] = {"passages": len(n), **{f"share_over_{L}": round(sum(x > L for x in n) / len(n), 3)
                                            for L in lengths}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "ci"), help="a tuned run (trained at the shorter length)")
    ap.add_argument("--lengths", default="128,256")
    ap.add_argument("--runs", default=str(REPO / "runs" / "bench-saved-length"))
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "saved-length.json"))
    args = ap.parse_args()

    run, work = Path(args.run).resolve(), Path(args.runs).resolve()
    lengths = [int(x) for x in args.lengths.split(",")]
    systems = {}
    for length in lengths:
        save_at_length(run, length, work / f"len-{length}")
        systems[f"len-{length}"] = str(work / f"len-{length}") + "@torch"
    rows = evaluate_against_base(systems, work)
    from honed.retriever.device import cpu_name

    trained = json.loads((run / "honed.json").read_text(encoding="utf-8"))["params"]["max_seq_length"]
    res = {"benchmark": "saved-length", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "run": str(run.relative_to(REPO) if run.is_relative_to(REPO) else run),
           "trained_at": trained, "lengths": lengths, "sets": SETS,
           "passages_longer_than": longer_than(lengths, run), "ndcg@10": rows}
    short, long = f"len-{min(lengths)}", f"len-{max(lengths)}"
    res["change_when_saved_longer"] = {ds: round(r[long]["ndcg@10"] - r[short]["ndcg@10"], 4) for ds, r in rows.items()}
    Path(args.result).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(res["change_when_saved_longer"], indent=1))


if __name__ == "__main__":
    sys.exit(main())
