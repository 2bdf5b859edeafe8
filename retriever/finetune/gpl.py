"""Adapt an embedder to a corpus that has no labels: synthetic queries → mined negatives → teacher margins.

GPL (Wang et al., 2022, "Generative Pseudo Labeling") in honed's parts:

1. the local LLM writes queries for a sample of the corpus's passages (``synthetic.py``:
   length, echo, duplicate and round-trip filters; the round trip is judged by another
   embedder than the one being tuned, :func:`filter_model_for`, so the synthetic dev split is
   not made of queries the base model already gets right);
2. hard negatives for each (synthetic query, passage) come from the *whole* corpus, dense and
   BM25, behind the false-negative guard (``mining.py``);
3. a cross-encoder teacher, trained here on those triples (``teacher.py``: no pretrained
   reranker exists offline, where GPL uses an MS MARCO one), scores each triple: the margin
   ``s(q, pos) - s(q, neg)`` is a soft label that tolerates a wrong "negative";
4. the embedder learns the margins with MarginMSE (``--loss distill``).

The synthetic pairs are written beside the run (``<out>.synthetic.jsonl``, with the filters'
counts in ``<out>.synthetic.stats.json``) and reused by a rerun, so the LLM's minutes are
spent once; delete the file to generate anew.

Example:
    >>> from honed.retriever.finetune.gpl import adapt_to_corpus
    >>> res = adapt_to_corpus("datasets/cuad-clauses", "runs/cuad-gpl", max_docs=400)   # doctest: +SKIP
    >>> res.manifest["data"]["synthetic"]                                               # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_write_text, check_writable
from ..errors import HonedError
from .config import FILTER_POOL, FinetuneResult, finetune_config
from .progress import say
from .run import finetune

# a synthetic query that happens to equal an eval query is dropped, not a reason to refuse the run
# lr 5e-5: the learning rate GPL was measured at here (docs/measurements.md, "Adapting without labels")
GPL_DEFAULTS = dict(loss="distill", teacher="minilm", num_negatives=1, drop_eval_overlap=True, lr=5e-5)


def synthetic_pairs_file(out: str | os.PathLike) -> Path:
    """Where a run's synthetic pairs live: beside the run folder, so a rerun (or ``--force``) keeps them."""
    out = Path(out)
    return out.parent / f"{out.name}.synthetic.jsonl"


def filter_model_for(base: str) -> str:
    """The round-trip filter's embedder for adapting `base`: another model than the one being tuned.

    The filter keeps a query only if its embedder ranks the query's passage in its top 5, so
    with the base model as the filter every synthetic dev query is one the base model already
    gets right. Measured on cuad-clauses (MiniLM filtering for a MiniLM run): synthetic dev
    nDCG@10 fell from 0.894 (base) to 0.846 while the labelled test split rose significantly
    (0.232 → 0.296), so such a dev split judges against any change.
    """
    from ..models import resolve_model

    return "mpnet" if Path(resolve_model(base)) == Path(resolve_model("minilm")) else "minilm"


def write_synthetic_pairs(corpus: str | os.PathLike, path: Path, split: str = "train", max_docs: int | None = 400,
                          per_doc: int = 3, llm: str = "qwen", filter_model: str = "minilm", seed: int = 0,
                          filter_pool: int = FILTER_POOL) -> dict:
    """Generate filtered synthetic pairs for `corpus` into `path` (atomic); return the filter statistics.

    The round-trip filter keeps a query only when `filter_model` ranks its passage in the top 5 of a pool
    of the source passages plus random ones, `filter_pool` in all (config.FILTER_POOL; mpnet reads ~3
    abstracts a second on 2 cores).
    """
    from ..data.beir import doc_text
    from ..encoder import load_encoder
    from ..index import load_corpus
    from .pairs import write_pairs
    from .synthetic import generate_pairs

    docs = {d: doc_text(x) for d, x in load_corpus(corpus, split).items()}
    pairs, stats = generate_pairs(docs, per_doc=per_doc, llm=llm, encoder=load_encoder(filter_model),
                                  max_docs=max_docs, seed=seed, filter_pool=filter_pool)
    if not pairs:
        raise HonedError(f"{corpus}: no synthetic query survived the filters ({stats}); nothing to train on")
    write_pairs(path, pairs)
    stats["filter_model"], stats["filter_pool"] = filter_model, filter_pool
    atomic_write_text(path.with_suffix(".stats.json"), json.dumps(stats, indent=1) + "\n")
    return stats


def adapt_to_corpus(corpus: str | os.PathLike, out: str | os.PathLike, split: str = "train",
                    max_docs: int | None = 400, per_doc: int = 3, llm: str = "qwen", filter_model: str | None = None,
                    filter_pool: int = FILTER_POOL, **finetune_overrides) -> FinetuneResult:
    """GPL-style adaptation of the base model to `corpus` (no labels read); see the module docstring."""
    if not Path(corpus).exists():
        raise HonedError(f"{corpus}: no such corpus (a BEIR folder or a corpus.jsonl)")
    check_writable(Path(out), "run", bool(finetune_overrides.get("force")))    # before the LLM's minutes
    loss = finetune_overrides.get("loss", GPL_DEFAULTS["loss"])
    if loss not in ("distill", "mnrl"):
        raise HonedError(f"--loss {loss}: adapt trains with distill or mnrl")
    path = synthetic_pairs_file(out)
    if path.exists():
        say(f"reusing the synthetic pairs in {path} (delete it to write new ones)")
    else:
        filter_model = filter_model or filter_model_for(finetune_overrides.get("base", "minilm"))
        say(f"writing synthetic queries for up to {max_docs} passages of {corpus} with {llm} "
             f"(round-trip filter: {filter_model}) → {path}")
        stats = write_synthetic_pairs(corpus, path, split=split, max_docs=max_docs, per_doc=per_doc, llm=llm,
                                      filter_model=filter_model, filter_pool=filter_pool)
        say(f"synthetic: kept {stats['kept']} of {stats['candidates']} queries from {stats['docs']} passages")
    if loss != "distill":
        finetune_overrides["teacher"] = None      # no margins to score: no teacher to train
    cfg = finetune_config({**GPL_DEFAULTS, **finetune_overrides}, "adapt settings", out=str(out), pairs=[str(path)],
                          corpus=str(corpus), corpus_split=split, data=None)
    return finetune(cfg)
