"""MultipleNegativesRankingLoss that does not count a query's labelled positives among its in-batch negatives.

MNRL scores each query against every passage of its batch and treats all but its own positive as negatives. Where
a query has many labelled positives (a cuad-clauses clause type is answered by that clause in every contract),
batches that merely repeat no text (``NO_DUPLICATES``) put 5% of a query's in-batch negatives among its own
positives (benchmarks/results/batching.json), and the loss pushes them away. Keeping such rows out of each other's
batches (:mod:`.batching`) fixes that but also keeps a contract question ("term of the ZTO agreement") from the
rows that carry other contracts' term clauses, the negatives that teach *which contract*. Masking per query keeps
the batch as it is and drops only the (query, passage) scores the labels call relevant: each query still meets
every other passage of its batch. sentence-transformers' losses mask a guide model's judgement
(``GISTEmbedLoss``) or a query's own columns, never the labels, hence these two subclasses.

The dataset carries each row's index in its ``label`` column (the trainer hands that column to the loss as
``labels``); :class:`LabelledPositives` maps row indices to texts.

Example:
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"anchor": ["notice period", "notice period", "governing law"],
    ...                         "positive": ["30 days notice", "60 days notice", "laws of Delaware"],
    ...                         "label": [0, 1, 2]})
    >>> LabelledPositives(ds).mask([0, 1, 2]).int().tolist()   # row 0's query is also answered by row 1's passage
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)

from .batching import labelled_rows

ROW_COLUMN = "label"    # the collator passes it to the loss as `labels`; labelled_rows skips it


class LabelledPositives:
    """Which passages of a batch are labelled relevant to which of its queries, by row index.

    A query's labelled positives are the positives of every row with that query (the anchor column), as in
    :class:`.batching.NoLabelledNegativesBatchSampler`. Columns after the anchor are the row's passages: its
    positive, then its negatives.
    """

    def __init__(self, dataset) -> None:
        rows, self.relevant = labelled_rows(dataset)
        self.passages = [row[1:] for row in rows]

    def mask(self, rows) -> torch.Tensor:
        """(batch, batch × passage columns) bool: True where the column's passage is labelled relevant to the row's
        query and is not the row's own positive. Columns are ordered as MNRL scores them: every row's positive,
        then every row's first negative, and so on."""
        rows = [int(r) for r in rows]
        columns = [self.passages[r][k] for k in range(len(self.passages[rows[0]])) for r in rows]
        out = torch.tensor([[c in self.relevant[r] for c in columns] for r in rows], dtype=torch.bool)
        out[torch.arange(len(rows)), torch.arange(len(rows))] = False
        return out


def masked_ranking_loss(queries: torch.Tensor, passages: torch.Tensor, mask: torch.Tensor, first: int,
                        similarity_fct, scale: float) -> torch.Tensor:
    """Sum over `queries` (rows `first`… of the batch) of InfoNCE against `passages`, masked scores left out."""
    scores = similarity_fct(queries, passages) * scale
    scores = scores.masked_fill(mask.to(scores.device), float("-inf"))
    own = torch.arange(first, first + len(queries), device=scores.device)
    return F.cross_entropy(scores, own, reduction="sum")


class LabelMaskedRankingLoss(MultipleNegativesRankingLoss):
    """MNRL (query → passage, one softmax) without a query's labelled positives among its in-batch negatives."""

    def __init__(self, model, positives: LabelledPositives, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.positives = positives

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        queries, passages = embeddings[0], torch.cat(embeddings[1:])
        loss = masked_ranking_loss(queries, passages, self.positives.mask(labels), 0, self.similarity_fct, self.scale)
        return loss / len(queries)


class CachedLabelMaskedRankingLoss(CachedMultipleNegativesRankingLoss):
    """:class:`LabelMaskedRankingLoss` with GradCache (the loss computed `mini_batch_size` queries at a time)."""

    def __init__(self, model, positives: LabelledPositives, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.positives = positives

    def calculate_loss(self, reps: list[list[torch.Tensor]], labels: torch.Tensor | None = None, *,
                       with_backward: bool = False) -> torch.Tensor:
        queries, passages = torch.cat(reps[0]), torch.cat([torch.cat(r) for r in reps[1:]])
        mask = self.positives.mask(labels)
        total = []
        for begin in range(0, len(queries), self.mini_batch_size):
            end = min(begin + self.mini_batch_size, len(queries))
            loss = masked_ranking_loss(queries[begin:end], passages, mask[begin:end], begin,
                                       self.similarity_fct, self.scale) / len(queries)
            if with_backward:
                loss.backward()
                loss = loss.detach()
            total.append(loss)
        return sum(total)


class DistilledRankingLoss(torch.nn.Module):
    """MarginMSE on a teacher's margins plus the in-batch ranking loss, on one forward pass (``--loss distill-mnrl``).

    MarginMSE alone fits each row's (positive − mined negative) margin and says nothing of the rest of the
    corpus. Summing the two losses, as TAS-B sums margin-MSE and in-batch negatives, keeps the ranking the first
    stage learned while the margins teach the teacher's finer order. Measured on cuad-clauses from the demo's
    model, 60 steps (benchmarks/results/distill-cuad.json): test nDCG@10 −0.028 with it, −0.039 with MarginMSE
    alone, +0.016 for the control without a teacher: there the teacher's margins are what hurts. Both are taken on the ranking loss's logits (cosine × its scale), so neither
    drowns the other by units: raw cosine margins would make the MSE ~scale² (400×) smaller than the
    ranking loss. sentence-transformers has no combined loss, and two losses on separate batches (its
    multi-dataset training) would encode every text twice.

    The ``label`` column carries ``(margin, row)`` per row: the teacher's margin, and the row index the
    label mask (:class:`LabelMaskedRankingLoss`) looks a query's labelled positives up by.
    """

    def __init__(self, model, ranking: MultipleNegativesRankingLoss) -> None:
        super().__init__()
        self.model, self.ranking = model, ranking

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        query, positive, negative = embeddings[:3]
        student = F.cosine_similarity(query, positive) - F.cosine_similarity(query, negative)
        scale = self.ranking.scale
        margin = F.mse_loss(scale * student, scale * labels[:, 0].to(student.dtype))
        return margin + self.ranking.compute_loss_from_embeddings(embeddings, labels[:, 1].long())
