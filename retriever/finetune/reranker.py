"""Train a domain reranker: a cross-encoder on the labelled pairs and the first stage's hard negatives.

The same preparation as fine-tuning the embedder (:func:`.train.prepare_training`:
pairs, leak-guarded dev split, negatives mined with the *first-stage* model, so
the reranker learns to separate exactly the passages that model confuses), then
sentence-transformers' ``CrossEncoderTrainer`` with binary cross-entropy
(:func:`.teacher.train_teacher`). The folder written is a plain ``CrossEncoder``
plus ``honed.json``: recipe, dev reranking nDCG@10 before/after, and the first
stage's own dev score, so a reranker that does not beat its first stage says so.

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
from .config import FinetuneConfig, check_config
from .progress import phase, say


def train_reranker(data: str, out: str | os.PathLike, base: str = "minilm", first_stage: str = "minilm",
                   epochs: float = 1.0, max_steps: int = -1, batch_size: int = 16, lr: float = 2e-5,
                   max_length: int = 256, num_negatives: int = 3, max_mine_docs: int = 4000, seed: int = 42,
                   device: str | None = None, precision: str = "auto", force: bool = False) -> dict:
    """Train a cross-encoder from `base` on `data`'s train split; write it to `out`; return its card.

    `first_stage`: the bi-encoder whose top candidates the reranker will reorder (mines the
    negatives and the dev candidates). `num_negatives` per pair: a reranker sees each
    (query, passage) pair alone, so more negatives than the embedder's one are cheap signal.
    """
    from .teacher import train_teacher
    from .train import prepare_training, rerank_dev_samples

    t0 = time.perf_counter()
    out = Path(out)
    cfg = FinetuneConfig(data=data, out=str(out), base=first_stage, num_negatives=num_negatives,
                         max_seq_length=max_length, max_mine_docs=max_mine_docs, seed=seed, device=device,
                         precision=precision, track=False, force=force)
    check_config(cfg)
    check_writable(out, "run", force)    # before minutes of training, not after
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        prep = prepare_training(cfg, work, margins=False, t_start=t0)
        samples = rerank_dev_samples(prep.dev_q, prep.dev_rel, prep.dev_pool, prep.base_enc)
        with phase(f"training the reranker from {base} ({len(prep.triples)} triples)"):
            _, metrics = train_teacher(prep.triples, samples, base, work / "reranker", epochs=epochs,
                                       batch_size=batch_size, lr=lr, max_length=max_length, seed=seed,
                                       max_steps=max_steps, device=prep.device, precision=precision)
        card = {"kind": "reranker", "base": base, "first_stage": first_stage, "data": data, "max_length": max_length,
                "recipe": {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
                           "num_negatives": num_negatives, "loss": "binary-cross-entropy", "seed": seed},
                "pairs": len(prep.train_pairs), "triples": len(prep.triples),
                "dev": {"queries": len(prep.dev_q), "candidates_per_query": 30,
                        "first_stage_ndcg@10": round(prep.base_dev, 4),
                        "rerank_ndcg@10_untrained": metrics["dev_ndcg@10_before"],
                        "rerank_ndcg@10": metrics["dev_ndcg@10"]},
                "device": prep.device, "seconds": round(time.perf_counter() - t0, 1),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        if card["dev"]["rerank_ndcg@10"] < card["dev"]["first_stage_ndcg@10"]:
            say(f"warning: the reranker's dev nDCG@10 {card['dev']['rerank_ndcg@10']:.4f} is below the first "
                f"stage's {card['dev']['first_stage_ndcg@10']:.4f}: reranking with it would lose; train longer "
                "(--epochs), from a larger base (--base mpnet), or with more pairs")
        with atomic_dir(out, kind="run", force=force) as tmp:
            shutil.copytree(work / "reranker", tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoints", ".*"))
            (tmp / "honed.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return card
