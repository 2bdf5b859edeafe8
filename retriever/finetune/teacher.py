"""A cross-encoder teacher trained here, then used to label triples for MarginMSE distillation.

No pretrained reranker exists offline, so honed trains one (GPL-style): a
``CrossEncoder`` initialised from a packaged encoder (MiniLM on CPU, mpnet when
a GPU is there), fitted with binary cross-entropy on the positives and mined
hard negatives. Its scores for (query, positive, negative) triples become the
``label = s(q,pos) - s(q,neg)`` targets of ``MarginMSELoss``.

Example:
    >>> from honed.retriever.finetune.teacher import train_teacher, score_margins
    >>> teacher, metrics = train_teacher(train_triples, dev_samples, "minilm", "runs/x/teacher")  # doctest: +SKIP

A folder written by ``honed reranker train`` is used as trained, mixed with the student's base model as a
two-stage artifact serves it (:func:`trained_teacher`, :func:`served_margins`): the student then learns the
very two-stage ranking it is meant to replace.
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
                  loss: str = "bce", layers: int | None = None, batching: str = "texts"):
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
    from .batching import NoLabelledNegativesBatchSampler

    device = resolve_device(device)
    # The packaged bi-encoders have no classification head: it starts random (scores ≈ 0.5).
    model = CrossEncoder(str(resolve_model(base)), num_labels=1, max_length=max_length, device=device,
                         trust_remote_code=False)
    if layers:
        keep_layers(model, layers)
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
        # in-batch negatives (mnrl): no row may lend a query one of its labelled positives as a negative
        batch_sampler=(BatchSamplers.BATCH_SAMPLER if loss != "mnrl" else
                       NoLabelledNegativesBatchSampler if batching == "labels" else BatchSamplers.NO_DUPLICATES),
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


def keep_layers(model, n: int) -> None:
    """Keep the first `n` transformer layers of a cross-encoder (its config says so, so the saved folder loads so).

    A reranker's latency is mostly its layers' compute over every (query, passage) pair: the first `n` of
    MiniLM's 6, fine-tuned together with the head, do n/6 of that work. The first ones, not every other one: each
    layer adds to the residual stream the one below it wrote, so a contiguous stack keeps what it learned
    to read.
    """
    import torch

    encoder = model.model.base_model.encoder
    if not 1 <= n <= len(encoder.layer):
        from ..errors import HonedError

        raise HonedError(f"--layers {n}: the base model has {len(encoder.layer)} transformer layers")
    encoder.layer = torch.nn.ModuleList(list(encoder.layer)[:n])
    model.model.config.num_hidden_layers = n


def trained_teacher(path: str | os.PathLike, dev_samples: list[dict], device: str | None = None):
    """A reranker already trained (``honed reranker train``) as the two-stage system serves it: (model, dev metrics).

    The student replaces the first stage + reranker, and that system ranks by the two scores mixed
    (:func:`honed.retriever.reranker.rerank_hits`), so the teacher is the reranker mixed with the student's base at
    the weight best on this run's dev split (`dev_samples`: ``rerank_dev_samples(..., ranked=True)``, the base
    model's top candidates with its scores). The reranker alone can be the weaker ranker and still improve the mix:
    on SciFact's dev candidates it scored 0.682 nDCG@10 alone, the first stage 0.724, the two mixed 0.745
    (rerank.json). ``weaker_than_base`` is true when no weight beats the base model's own order. The pairs are
    cut where the reranker's training cut them, as serving does (read at 256 tokens, a reranker trained at 128
    ranked SciFact's dev candidates at 0.59 nDCG@10 alone instead of 0.70).
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    from ..device import resolve_device
    from ..reranker import best_weight, reranker_config, weight_table

    model = CrossEncoder(str(path), max_length=reranker_config(path)["max_length"], device=resolve_device(device),
                         trust_remote_code=False)
    reranked, first, relevant = candidate_scores(model, dev_samples)
    rows = weight_table(reranked, first, relevant)
    mix = best_weight(rows)
    return model, {"dev_ndcg@10": mix["ndcg@10"], "first_stage_dev_ndcg@10": rows[0]["ndcg@10"],
                   "rerank_alone_dev_ndcg@10": rows[-1]["ndcg@10"], "mix_weight": mix["weight"],
                   "scale": round(score_span(first) / max(score_span(reranked), 1e-9), 4), "mix_rows": rows,
                   "weaker_than_base": mix["weight"] == 0.0, "trained_here": False, "from": str(path)}


def candidate_scores(model, samples: list[dict]) -> tuple[list, list, list]:
    """The reranker's and the first stage's scores of each dev query's candidates, and which are relevant.

    `samples`: ``rerank_dev_samples(..., ranked=True)``; returns (reranked, first, relevant) as
    :func:`honed.retriever.reranker.weight_table` takes them (candidates labelled by their rank).
    """
    pairs = [(s["query"], d) for s in samples for d in s["documents"]]
    scores = model.predict(pairs, batch_size=32, show_progress_bar=len(pairs) > 500)
    reranked, first, relevant, at = [], [], [], 0
    for s in samples:
        n = len(s["documents"])
        reranked.append([(i, float(x)) for i, x in enumerate(scores[at:at + n])])
        first.append(list(enumerate(s["scores"])))
        at += n
        found = {i: 1 for i, d in enumerate(s["documents"]) if d in s["positive"]}
        missed = max(len(s["positive"]) - len(found), 0)   # not among the candidates: still in the ideal ranking
        relevant.append({**found, **{-1 - j: 1 for j in range(missed)}})
    return reranked, first, relevant


def score_span(ranked: list[list[tuple[int, float]]]) -> float:
    """The median over queries of (highest − lowest) score among its candidates: what serving's min-max divides by."""
    import numpy as np

    spans = [max(s for _, s in r) - min(s for _, s in r) for r in ranked if r]
    return float(np.median(spans)) if spans else 1.0


def served_margins(teacher, base_enc, triples: list[Pair], weight: float, scale: float,
                   batch_size: int = 64) -> list[float]:
    """Each triple's margin under the two-stage system: ``(1 − w)·Δcos(base) + w·scale·Δreranker``.

    Serving mixes per-query min-max normalised scores (:mod:`honed.retriever.mixing`). Over a triple only
    the difference of two scores counts, so dividing each scorer by its typical span among a query's
    candidates (`scale` = the first stage's span / the reranker's, :func:`trained_teacher`) mixes them as
    serving does without a candidate list, and leaves the margin in the base model's cosine units, the
    units the student's MarginMSE compares its own margins with.
    """
    import numpy as np

    ce = score_margins(teacher, triples, batch_size) if weight > 0 else [0.0] * len(triples)
    queries = sorted({t.query for t in triples})
    passages = sorted({t.positive for t in triples} | {t.negatives[0] for t in triples})
    qv = dict(zip(queries, base_enc.encode_queries(queries, show_progress=len(queries) > 256)))
    pv = dict(zip(passages, base_enc.encode_documents(passages, show_progress=len(passages) > 256)))
    cos = [float(np.dot(qv[t.query], pv[t.positive]) - np.dot(qv[t.query], pv[t.negatives[0]])) for t in triples]
    return [(1 - weight) * c + weight * scale * m for c, m in zip(cos, ce)]


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
