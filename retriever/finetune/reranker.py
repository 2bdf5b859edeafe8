"""Train a domain reranker: a cross-encoder on the labelled pairs and the first stage's hard negatives.

The same preparation as fine-tuning the embedder (:func:`.train.prepare_training`:
pairs, leak-guarded dev split, negatives mined with the *first-stage* model, so
the reranker learns to separate exactly the passages that model confuses), then
sentence-transformers' ``CrossEncoderTrainer`` with its multiple-negatives ranking loss (each query ranks its
positive above its mined negative and other queries' passages; ``loss="bce"``: binary cross-entropy on labelled
pairs) (:func:`.teacher.train_teacher`). The folder written is a plain ``CrossEncoder``
plus ``honed.json``: recipe, and the dev nDCG@10 of the first stage's top 30 in its own
order, reranked (untrained and trained) and mixed with the first stage's scores at weights 0, 0.1, …, 1
(:func:`dev_weight_table`; the best is the weight an artifact packaged with it starts with), so a
reranker that does not beat its first stage says so.

Example:
    >>> from honed.retriever.finetune.reranker import train_reranker
    >>> card = train_reranker("datasets/cuad-clauses", "runs/cuad-reranker", first_stage="runs/cuad")  # doctest: +SKIP
    >>> card["dev"]["rerank_ndcg@10"] > card["dev"]["first_stage_ndcg@10"]                             # doctest: +SKIP
    True
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from pathlib import Path

from ..atomic import atomic_dir, check_writable
from ..errors import HonedError
from .config import FinetuneConfig, check_config
from .progress import phase, say

LOSSES = {"mnrl": "multiple-negatives-ranking", "bce": "binary-cross-entropy"}   # --loss: the card's name of each


def train_reranker(data: str, out: str | os.PathLike, base: str = "minilm", first_stage: str = "minilm",
                   epochs: float = 2.0, max_steps: int = -1, batch_size: int = 16, lr: float = 5e-5,
                   max_length: int = 128, layers: int | None = None, num_negatives: int = 4,
                   max_mine_docs: int = 4000, seed: int = 42,
                   device: str | None = None, precision: str = "auto", drop_eval_overlap: bool = False,
                   force: bool = False, loss: str = "mnrl", batching: str = "texts") -> dict:
    """Train a cross-encoder from `base` on `data`'s train split; write it to `out`; return its card.

    `first_stage`: the bi-encoder whose top candidates the reranker will reorder (mines the
    negatives and the dev candidates). The defaults are the recipe measured in
    benchmarks/bench_rerank.py (the head starts random: 2e-5 for a fraction of an epoch left it
    undertrained); raise `max_length` for passages longer than ~100 words. `layers`: keep only the base's
    first N transformer layers (their compute falls in proportion; :func:`.teacher.keep_layers`). `batching`: as
    `honed finetune --batching` (labels: no passage labelled relevant to a query among its in-batch negatives).
    """
    from ..reranker import best_weight
    from .teacher import train_teacher
    from .train import prepare_training, rerank_dev_samples

    if loss not in LOSSES:
        raise HonedError(f"--loss: {loss!r} is not one of {', '.join(LOSSES)}")
    if batching not in ("labels", "texts"):     # the cross-encoder's loss has no masked form (finetune/losses.py)
        raise HonedError(f"--batching: {batching!r} is not one of labels, texts")
    t0 = time.perf_counter()
    out = Path(out)
    cfg = FinetuneConfig(data=data, out=str(out), base=first_stage, num_negatives=num_negatives,
                         max_seq_length=max_length, max_mine_docs=max_mine_docs, seed=seed, device=device,
                         precision=precision, track=False, drop_eval_overlap=drop_eval_overlap, force=force,
                         batching=batching)
    check_config(cfg)
    check_writable(out, "run", force)    # before minutes of training, not after
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        prep = prepare_training(cfg, work, margins=False, t_start=t0)
        triples, dropped = without_dev_passages(prep)
        samples = rerank_dev_samples(prep.dev_q, prep.dev_rel, prep.dev_pool, prep.base_enc, ranked=True)
        with phase(f"training the reranker from {base} ({len(triples)} triples)"):
            model, metrics = train_teacher(triples, samples, base, work / "reranker", epochs=epochs,
                                           batch_size=batch_size, lr=lr, max_length=max_length, seed=seed,
                                           max_steps=max_steps, device=prep.device, precision=precision,
                                           loss=loss, layers=layers, batching=batching)
        with phase("choosing the reranker's weight against the first stage on dev"):
            rows = dev_weight_table(model, samples)
        mix = best_weight(rows)
        card = {"kind": "reranker", "base": base, "first_stage": first_stage, "data": data, "max_length": max_length,
                "recipe": {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
                           "num_negatives": num_negatives, "layers": model.model.config.num_hidden_layers,
                           "loss": LOSSES[loss], "batching": batching, "seed": seed},
                "pairs": len(prep.train_pairs), "triples": len(triples), "triples_dropped_for_dev": dropped,
                # the first stage's top 30 of each dev query, in its order and reranked: the same candidates
                "dev": {"queries": len(prep.dev_q), "candidates_per_query": 30,
                        "first_stage_ndcg@10": metrics["first_stage_ndcg@10"],
                        "rerank_ndcg@10_untrained": metrics["dev_ndcg@10_before"],
                        "rerank_ndcg@10": metrics["dev_ndcg@10"],
                        "first_stage_full_corpus_ndcg@10": round(prep.base_dev, 4),
                        # the weight a packaged artifact mixes the two stages with until `honed index fuse
                        # --rerank` chooses one on held-out queries
                        "mix": {"weight": mix["weight"], "ndcg@10": mix["ndcg@10"], "rows": rows}},
                "device": prep.device, "seconds": round(time.perf_counter() - t0, 1),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        card["status"], card["reason"] = "ok", ""
        if mix["weight"] == 0.0:
            # kept for inspection, like a fine-tuning run that lost: the caller decides (the CLI exits 1)
            card["status"] = "failed"
            card["reason"] = (f"on dev, no weight of the reranker beats the first stage's own order (nDCG@10 "
                              f"{rows[0]['ndcg@10']:.4f}; the reranker alone {card['dev']['rerank_ndcg@10']:.4f}): "
                              "reranking with it would not help; train longer (--epochs), from a larger base "
                              "(--base mpnet), or with more pairs")
        with atomic_dir(out, kind="run", force=force) as tmp:
            shutil.copytree(work / "reranker", tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoints", ".*"))
            (tmp / "honed.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return card


def without_dev_passages(prep) -> tuple[list, int]:
    """The training triples whose positive is no dev query's relevant passage, and how many were dropped.

    Queries are split, passages are not: where several queries share positives (paraphrases of one
    clause type, claims about one abstract), a dev query's passages are trained on through its siblings,
    and its dev score measures passages the reranker has seen. On cuad-clauses every dev passage was one:
    dev said the reranker alone beat the first stage by +0.08 nDCG@10, test (new contracts) said -0.17
    (rerank.json before 2026-12-05 21:00), and in an exploratory run that dev chose reranker weight 0.8
    where the test queries' best was 0.3. Dropping them makes dev a test of unseen passages, at the cost
    of those pairs (54% of them on cuad-clauses' current split, rerank.json).
    """
    held = {prep.dev_pool[d] for rel in prep.dev_rel.values() for d in rel if d in prep.dev_pool}
    kept = [t for t in prep.triples if t.positive not in held]
    if not kept:
        raise HonedError("every training pair's positive is a dev query's relevant passage: nothing is left to "
                         "train the reranker on; give it pairs whose positives no other query shares")
    if len(kept) < len(prep.triples):
        say(f"{len(prep.triples) - len(kept)} of {len(prep.triples)} training triples left out: their positive is "
            "a dev query's passage, and dev must score passages the reranker never trained on")
    return kept, len(prep.triples) - len(kept)


def dev_weight_table(model, samples: list[dict]) -> list[dict]:
    """nDCG@10 on the dev candidates (``rerank_dev_samples(..., ranked=True)``) with the reranker mixed
    into the first stage at every weight (:func:`honed.retriever.reranker.weight_table`)."""
    from ..reranker import weight_table
    from .teacher import candidate_scores

    return weight_table(*candidate_scores(model, samples))
