"""A small evaluation slice of a big BEIR set that still discriminates: every gold passage plus each query's
strongest BM25 distractors from the *full* corpus.

Random distractors make a slice easy (the SciFact fixture's 155 abstracts: base MiniLM scores 0.95
nDCG@10 and only 4 of 30 queries change between two models), so a 0.03 drop hides under the ceiling.
The passages BM25 ranks highest without being judged are the ones a model can confuse with the gold:
keeping them keeps the slice hard at a fraction of the corpus, so an out-of-domain check stays cheap
to encode and can still fire.

Example:
    >>> from honed.retriever.data.slices import hard_slice                         # doctest: +SKIP
    >>> stats = hard_slice("../shared/datasets/scifact", "datasets/scifact-ood",
    ...                    split="test", distractors=2)                             # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import HonedError
from .beir import load_beir, write_beir


def hard_slice(source: str | os.PathLike, out: str | os.PathLike, split: str = "test", queries: int | None = None,
               distractors: int = 2, force: bool = False) -> dict:
    """Write a BEIR folder: the first `queries` judged queries of `split` (sorted ids; all by default), their
    gold passages, and each query's top `distractors` unjudged BM25 passages from the whole corpus."""
    from ..bm25 import bm25_search

    if distractors < 0:
        raise HonedError(f"--distractors must be ≥ 0, got {distractors}")
    ds = load_beir(source, split)
    qids = sorted(q for q, rel in ds.qrels.items() if any(g > 0 for g in rel.values()))[:queries]
    if not qids:
        raise HonedError(f"{source}: split {split!r} has no judged query")
    gold = {d for q in qids for d, g in ds.qrels[q].items() if g > 0 and d in ds.corpus}
    run = bm25_search(ds.corpus, {q: ds.queries[q] for q in qids}, k=distractors + 50) if distractors else {}
    extra = set()
    for q in qids:
        ranked = [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: -kv[1]) if d not in ds.qrels[q]]
        extra.update(ranked[:distractors])
    keep = sorted(gold | extra)
    with atomic_dir(Path(out), kind="dataset", force=force) as tmp:
        write_beir(tmp, {d: ds.corpus[d] for d in keep}, {q: ds.queries[q] for q in qids},
                   {split: {q: ds.qrels[q] for q in qids}})
    return {"queries": len(qids), "passages": len(keep), "gold": len(gold), "distractors": len(extra - gold),
            "source_passages": len(ds.corpus), "split": split, "distractors_per_query": distractors}
