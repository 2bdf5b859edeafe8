"""MNRL without a query's labelled positives among its in-batch negatives (finetune/losses.py, --batching mask), and
MarginMSE beside it (--loss distill-mnrl)."""
from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from honed.retriever.finetune.losses import (
    CachedLabelMaskedRankingLoss,
    DistilledRankingLoss,
    LabelledPositives,
    LabelMaskedRankingLoss,
)

# two ways of asking for a notice period share both notice clauses; the contract question has one of them only
ROWS = {"anchor": ["notice period", "notice period", "notice period in the ZTO agreement", "governing law"],
        "positive": ["30 days notice", "60 days notice", "30 days notice", "laws of Delaware"],
        "negative": ["laws of Delaware", "laws of New York", "60 days notice", "30 days notice"],
        "label": [0, 1, 2, 3]}


def test_the_mask_marks_other_rows_passages_labelled_relevant_to_the_query():
    mask = LabelledPositives(Dataset.from_dict(ROWS)).mask(torch.tensor([0, 1, 2, 3]))
    # columns: the four positives, then the four negatives
    assert mask.int().tolist() == [
        [0, 1, 1, 0, 0, 0, 1, 1],    # "notice period": both notice clauses wherever they stand, but not its own
        [1, 0, 1, 0, 0, 0, 1, 1],
        [1, 0, 0, 0, 0, 0, 0, 1],    # the ZTO question: its clause elsewhere; the other contract's stays a negative
        [0, 0, 0, 0, 1, 0, 0, 0],
    ]
    # a batch is any subset of rows in any order
    assert LabelledPositives(Dataset.from_dict(ROWS)).mask([3, 0]).int().tolist() == [[0, 0, 0, 1], [0, 0, 1, 0]]


def embeddings(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 8, generator=g, requires_grad=True) for _ in range(3)]


def test_without_labelled_positives_in_the_batch_it_is_mnrl():
    rows = {k: v[:] for k, v in ROWS.items()}
    rows.update(anchor=["a", "b", "c", "d"], positive=["p1", "p2", "p3", "p4"], negative=["n1", "n2", "n3", "n4"])
    emb = embeddings()
    masked = LabelMaskedRankingLoss(None, LabelledPositives(Dataset.from_dict(rows)))
    plain = MultipleNegativesRankingLoss(None)
    labels = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(masked.compute_loss_from_embeddings(emb, labels),
                          plain.compute_loss_from_embeddings(emb, labels))


def test_masked_scores_leave_the_softmax():
    emb = embeddings()
    loss = LabelMaskedRankingLoss(None, LabelledPositives(Dataset.from_dict(ROWS)))
    value = loss.compute_loss_from_embeddings(emb, torch.tensor([0, 1, 2, 3]))
    q = torch.nn.functional.normalize(emb[0], dim=-1)
    p = torch.nn.functional.normalize(torch.cat(emb[1:]), dim=-1)
    scores = 20.0 * q @ p.T
    keep = [[0, 3, 4, 5], [1, 3, 4, 5], [1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 5, 6, 7]]    # see the mask test
    by_hand = -sum(scores[i, i] - torch.logsumexp(scores[i, keep[i]], 0) for i in range(4)) / 4
    assert torch.allclose(value, by_hand)


@pytest.fixture(scope="module")
def minilm_model():
    from sentence_transformers import SentenceTransformer

    from honed.retriever.models import resolve_model

    model = SentenceTransformer(str(resolve_model("minilm")), device="cpu")
    model.eval()     # the chunked forward draws dropout masks in another order (see test_device.py)
    return model


def test_the_cached_form_gives_the_same_loss_and_gradients(minilm_model):
    """The real MiniLM, one step through `forward`: the masked loss in chunks of 2 (GradCache) equals it whole."""
    positives = LabelledPositives(Dataset.from_dict(ROWS))
    labels = torch.tensor([2, 0, 3, 1])

    def step(cached: bool):
        minilm_model.zero_grad()
        loss = (CachedLabelMaskedRankingLoss(minilm_model, positives, mini_batch_size=2) if cached
                else LabelMaskedRankingLoss(minilm_model, positives))
        features = [minilm_model.preprocess([ROWS[c][int(r)] for r in labels]) for c in ("anchor", "positive",
                                                                                           "negative")]
        value = loss(features, labels)
        value.backward()
        return value.item(), torch.cat([p.grad.flatten() for p in minilm_model.parameters() if p.grad is not None])

    (l0, g0), (l1, g1) = step(False), step(True)
    assert abs(l0 - l1) < 1e-5 and g0.shape == g1.shape
    assert torch.allclose(g0, g1, rtol=1e-3, atol=1e-6), float((g0 - g1).abs().max())


def test_the_trainer_hands_the_loss_each_rows_index(minilm_model, tmp_path):
    """One real training step with `--batching mask`: the row-index column reaches the loss as the batch's rows."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from honed.retriever.finetune.config import FinetuneConfig
    from honed.retriever.finetune.pairs import Pair
    from honed.retriever.finetune.train import _loss, _train_dataset

    cfg = FinetuneConfig(batching="mask", track=False)
    triples = [Pair(query=a, positive=p, negatives=[n]) for a, p, n in zip(ROWS["anchor"], ROWS["positive"],
                                                                             ROWS["negative"])]
    ds = _train_dataset(cfg, triples, None)
    loss = _loss(cfg, minilm_model, False, ds)
    seen, mask = [], loss.positives.mask
    loss.positives.mask = lambda rows: (seen.append(sorted(int(r) for r in rows)), mask(rows))[1]
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                                                batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none",
                                                save_strategy="no", use_cpu=True)
    SentenceTransformerTrainer(model=minilm_model, args=args, train_dataset=ds, loss=loss).train()
    # NO_DUPLICATES keeps rows repeating a text apart, so the first batch is rows that repeat none
    assert seen and all(len(b) == len(set(b)) and set(b) <= {0, 1, 2, 3} for b in seen)


@pytest.mark.parametrize("kw, message", [
    (dict(batching="masked"), "--batching must be one of labels, mask, texts"),
])
def test_batching_settings_are_checked_before_any_work(kw, message, tmp_path):
    from honed.retriever.errors import HonedError
    from honed.retriever.finetune import FinetuneConfig, finetune

    with pytest.raises(HonedError, match=message):
        finetune(FinetuneConfig(data="datasets/cuad-clauses", out=str(tmp_path / "r"), **kw))
    assert not (tmp_path / "r").exists()


def test_the_reranker_refuses_a_mask_it_cannot_apply(tmp_path):
    from honed.retriever.errors import HonedError
    from honed.retriever.finetune.reranker import train_reranker

    with pytest.raises(HonedError, match="--batching: 'mask' is not one of labels, texts"):
        train_reranker("datasets/cuad-clauses", tmp_path / "ce", batching="mask")
    assert not (tmp_path / "ce").exists()


@pytest.mark.parametrize("loss, cached, masked", [("mnrl", False, LabelMaskedRankingLoss),
                                                  ("mnrl", True, CachedLabelMaskedRankingLoss),
                                                  ("cached-mnrl", False, CachedLabelMaskedRankingLoss),
                                                  ("matryoshka", False, LabelMaskedRankingLoss)])
def test_every_in_batch_negatives_loss_is_masked(minilm_model, loss, cached, masked):
    from honed.retriever.finetune.config import FinetuneConfig
    from honed.retriever.finetune.pairs import Pair
    from honed.retriever.finetune.train import _loss, _train_dataset

    cfg = FinetuneConfig(loss=loss, batching="mask", track=False, mini_batch_size=2)
    ds = _train_dataset(cfg, [Pair(query=a, positive=p, negatives=[n]) for a, p, n in
                              zip(ROWS["anchor"], ROWS["positive"], ROWS["negative"])], None)
    fn = _loss(cfg, minilm_model, cached, ds)
    assert type(fn.loss if loss == "matryoshka" else fn) is masked
    labels = torch.tensor(ds["label"])
    features = [minilm_model.preprocess(ds[c]) for c in ("anchor", "positive", "negative")]
    with torch.no_grad():
        assert torch.isfinite(fn(features, labels))


def test_distilled_ranking_is_the_masked_ranking_plus_margin_mse_in_its_logits():
    """--loss distill-mnrl: with the teacher's margins equal to the student's it is the masked ranking loss alone
    (the rows reach the mask); a margin off by d adds (scale · d)² averaged over the batch."""
    emb = embeddings()
    positives = LabelledPositives(Dataset.from_dict(ROWS))
    loss = DistilledRankingLoss(None, LabelMaskedRankingLoss(None, positives))
    rows = torch.tensor([0, 1, 2, 3])
    cos = torch.nn.functional.cosine_similarity
    student = (cos(emb[0], emb[1]) - cos(emb[0], emb[2])).detach()
    ranking = LabelMaskedRankingLoss(None, positives).compute_loss_from_embeddings(emb, rows)
    matched = loss.compute_loss_from_embeddings(emb, torch.stack([student, rows.float()], 1))
    assert torch.allclose(matched, ranking)
    assert not torch.allclose(ranking, MultipleNegativesRankingLoss(None).compute_loss_from_embeddings(emb, rows))
    off = loss.compute_loss_from_embeddings(emb, torch.stack([student + torch.tensor([0.1, 0, 0, 0]), rows.float()], 1))
    assert torch.allclose(off - ranking, torch.tensor((20.0 * 0.1) ** 2 / 4))


def test_the_trainer_hands_distill_mnrl_each_rows_margin_and_index(minilm_model, tmp_path):
    """One real training step of --loss distill-mnrl: the (margin, row) label column arrives as the batch's rows."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from honed.retriever.finetune.config import FinetuneConfig
    from honed.retriever.finetune.pairs import Pair
    from honed.retriever.finetune.train import _loss, _train_dataset

    cfg = FinetuneConfig(loss="distill-mnrl", teacher="minilm", batching="mask", track=False)
    triples = [Pair(query=a, positive=p, negatives=[n]) for a, p, n in zip(ROWS["anchor"], ROWS["positive"],
                                                                             ROWS["negative"])]
    margins = [0.5, 0.25, -0.25, 0.125]
    ds = _train_dataset(cfg, triples, margins)
    loss = _loss(cfg, minilm_model, False, ds)
    assert type(loss) is DistilledRankingLoss and type(loss.ranking) is LabelMaskedRankingLoss
    seen, forward = [], loss.compute_loss_from_embeddings
    loss.compute_loss_from_embeddings = lambda emb, labels: (seen.append(labels.tolist()), forward(emb, labels))[1]
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                                                batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none",
                                                save_strategy="no", use_cpu=True)
    SentenceTransformerTrainer(model=minilm_model, args=args, train_dataset=ds, loss=loss).train()
    assert seen and all(margins[int(row)] == margin for batch in seen for margin, row in batch)
