"""Rebuild corpus.jsonl: every passage of the contracts the questions are about, from ../cuad-clauses/test.

The questions, reference answers, decisions and qrels (queries.jsonl, qrels/test.tsv) were
written by hand; this script only selects their search corpus, so the two stay in step.
Run from anywhere: ``python datasets/cuad-qa/make_corpus.py`` (stdlib only; byte-identical output).
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "cuad-clauses" / "test" / "corpus.jsonl"

rows = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
judged = {line.split("\t")[1] for line in (HERE / "qrels" / "test.tsv").read_text().splitlines()[1:] if line}
contracts = {r["metadata"]["contract"] for r in rows if r["_id"] in judged}
keep = [r for r in rows if r["metadata"]["contract"] in contracts]
(HERE / "corpus.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in keep),
                                   encoding="utf-8")
print(f"{len(keep)} passages from {len(contracts)} contracts")
