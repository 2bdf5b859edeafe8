"""A cross-encoder teacher trained here, then used to label triples for MarginMSE distillation.

No pretrained reranker exists offline, so honed trains one (GPL-style): a
``CrossEncoder`` initialised from a packaged encoder (MiniLM on CPU, mpnet when
a GPU is there), fitted with binary cross-entropy on the positives and mined
hard negatives. Its scores for (query, positive, negative) triples become the
``label = s(q,pos) - s(q,neg)`` targets of ``MarginMSELoss``.

Example:
    >>> from honed.retriever.finetune.teacher import train_teacher, score_margins
    >>> teacher, metrics = train_teacher(train_triples, dev_samples, "minilm", "runs/x/teacher")  # doctest: +SKIP

A folder written by ``honed reranker train`` is used as it is (:func:`trained_teacher`): the student
then learns from the very reranker it is meant to replace.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .pairs import Pair


def _pairs_dataset(triples: list[Pair]):
    from datasets import Dataset

    q, p, y = [], [], []
    seen = set()
    for t in triples:
        if (t.query, t.positive) not in seen:
            seen.add((t.query, t.positive))
            q.append(t.query), p.append(t.positive), y.append(1.0)
        for n in t.negatives:
            q.append(t.query), p.append(n), y.append(0.0)
    return Dataset.from_dict({"query": q, "passage": p, "label": y})


def _triplets_dataset(triples: list[Pair]):
    """(query, positive, negative) rows, one per mined negative: a pair with 4 negatives is 4 rows.

    Measured on SciFact's dev candidates (2 epochs, MiniLM): a pair's 4 negatives as 4 rows reranked to 0.711
    nDCG@10 alone; side by side in one row (a quarter of the steps, each query against all four) to 0.624.
    """
    from datasets import Dataset

    return Dataset.from_dict({"query": [t.query for t in triples], "positive": [t.positive for t in triples],
                              "negative": [t.negatives[0] for t in triples]})


def train_teacher(triples: list[Pair], dev_samples: list[dict], base: str | os.PathLike, out: str | os.PathLike,
                  epochs: int = 1, batch_size: int = 16, lr: float = 2e-5, max_length: int = 256,
                  seed: int = 42, max_steps: int = -1, device: str | None = None, precision: str = "auto",
                  loss: str = "bce"):
    """Train the cross-encoder; return (model, {"dev_ndcg@10_before", "dev_ndcg@10"}).

    `dev_samples` are ``{"query", "positive": [...], "negative": [...]}`` dicts for
    ``CrossEncoderRerankingEvaluator``: the teacher's own reranking nDCG@10. Samples with a ranked
    ``"documents"`` list instead are scored on those candidates only, and the metrics gain
    ``first_stage_ndcg@10``: that list's own order.
    """
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from sentence_transformers.cross_encoder.training_args import CrossEncoderTrainingArguments

    from ..device import resolve_device, trainer_precision_args
    from ..models import resolve_model

    device = resolve_device(device)
    # The packaged bi-encoders have no classification head: it starts random (scores ≈ 0.5).
    model = CrossEncoder(str(resolve_model(base)), num_labels=1, max_length=max_length, device=device,
                         trust_remote_code=False)
    ranked = "documents" in dev_samples[0]
    evaluator = CrossEncoderRerankingEvaluator(dev_samples, at_k=10, name="dev", batch_size=32,
                                               always_rerank_positives=not ranked, write_csv=False)
    first = evaluator(model)
    before = first["dev_ndcg@10"]
    args = CrossEncoderTrainingArguments(
        output_dir=str(Path(out) / "checkpoints"), num_train_epochs=epochs, max_steps=max_steps,
        per_device_train_batch_size=batch_size, learning_rate=lr, warmup_ratio=0.1, seed=seed,
        save_strategy="no", logging_steps=10, report_to="none", dataloader_drop_last=False,
        **trainer_precision_args(device, precision),
        # in-batch negatives (mnrl): another row of the same query would lend it its own positive as a negative
        batch_sampler=BatchSamplers.NO_DUPLICATES if loss == "mnrl" else BatchSamplers.BATCH_SAMPLER,
        disable_tqdm=False,
    )
    if loss == "mnrl":
        from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

        # each query against its positive, its mined negative and 4 other rows' passages, softmax over them: a
        # ranking signal per row where binary cross-entropy sees one labelled pair (SciFact dev candidates,
        # reranker alone: 0.233 nDCG@10 with bce and 1 negative, 0.711 with this and 4; first stage 0.724)
        train, fn = _triplets_dataset(triples), MultipleNegativesRankingLoss(model)
    else:
        train, fn = _pairs_dataset(triples), BinaryCrossEntropyLoss(model)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=fn, evaluator=evaluator)
    trainer.train()
    after = evaluator(model)["dev_ndcg@10"]
    model.save(str(out))
    shutil.rmtree(Path(out) / "checkpoints", ignore_errors=True)   # save_strategy "no": an empty folder
    metrics = {"dev_ndcg@10_before": round(float(before), 4), "dev_ndcg@10": round(float(after), 4)}
    if ranked:
        metrics["first_stage_ndcg@10"] = round(float(first["dev_base_ndcg@10"]), 4)
    return model, metrics


def trained_teacher(path: str | os.PathLike, dev_samples: list[dict], max_length: int = 256,
                    device: str | None = None):
    """A reranker already trained (``honed reranker train``) as the teacher, as it is: (model, its dev metrics).

    Distilling the product reranker, not a fresh teacher, is what makes the student comparable with the
    two-stage system it replaces.
    """
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    from ..device import resolve_device

    model = CrossEncoder(str(path), max_length=max_length, device=resolve_device(device), trust_remote_code=False)
    evaluator = CrossEncoderRerankingEvaluator(dev_samples, at_k=10, name="dev", batch_size=32,
                                               always_rerank_positives=True, write_csv=False)
    ndcg = round(float(evaluator(model)["dev_ndcg@10"]), 4)
    return model, {"dev_ndcg@10_before": ndcg, "dev_ndcg@10": ndcg, "trained_here": False, "from": str(path)}


def score_margins(teacher, triples: list[Pair], batch_size: int = 64) -> list[float]:
    """``s(q, pos) - s(q, neg)`` per triple, with sigmoid scores.

    Sigmoid (not raw logits) keeps the margins in [-1, 1], the range a
    cosine-similarity student can actually express.
    """
    inputs = []
    for t in triples:
        inputs += [(t.query, t.positive), (t.query, t.negatives[0])]
    scores = teacher.predict(inputs, batch_size=batch_size, show_progress_bar=len(inputs) > 256)
    return [float(scores[2 * i] - scores[2 * i + 1]) for i in range(len(triples))]
