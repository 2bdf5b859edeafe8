"""Training batches in which no query meets, as an in-batch negative, a passage labelled relevant to it.

MultipleNegativesRankingLoss scores each query against every passage in its batch and treats all but its own
positive as negatives. Where a query has many labelled positives (a cuad-clauses clause type is answered by that
clause in every contract: 5,680 training pairs for 1,234 queries), a random batch of 32 puts ~5% of a query's
in-batch negatives among its own labelled positives (measured on cuad-clauses' train split), and the loss pushes
them away. sentence-transformers' ``NoDuplicatesBatchSampler`` keeps identical texts apart, not a query from its
other positives, and ``GISTEmbedLoss`` masks what a guide model thinks relevant, not what the labels say; no
maintained library keeps labelled positives out of a query's batch, hence this sampler.

Example:
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"anchor": ["notice period", "notice period", "governing law"],
    ...                         "positive": ["30 days notice", "60 days notice", "laws of Delaware"]})
    >>> batches = list(NoLabelledNegativesBatchSampler(ds, batch_size=2, drop_last=False))
    >>> sorted(len(b) for b in batches)     # the two "notice period" rows never share a batch
    [1, 2]
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

TEXT_COLUMNS_SKIPPED = {"label", "dataset_name"}


class NoLabelledNegativesBatchSampler(DefaultBatchSampler):
    """Shuffled batches where no row's texts are a labelled positive of another row's query, and no text repeats.

    A query's labelled positives are the positives of every row with that query (the anchor column). Rows that
    conflict with a batch wait for a later one, as in ``NoDuplicatesBatchSampler``. When the rows left would
    no longer fit the epoch's planned number of batches (late in an epoch of a dataset whose queries share many
    positives), a batch is topped up with rows that merely repeat no text, as ``NoDuplicatesBatchSampler`` does.
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None,
                 seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, seed=seed,
                         generator=generator if generator is not None else torch.Generator())
        columns = [c for c in dataset.column_names if c not in TEXT_COLUMNS_SKIPPED]
        rows = list(zip(*(dataset[c] for c in columns)))
        relevant: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            relevant[row[0]].add(row[1])
        self.texts = [frozenset(row) for row in rows]
        self.relevant = [frozenset(relevant[row[0]]) for row in rows]

    def __iter__(self) -> Iterator[list[int]]:
        self.generator.manual_seed(self.seed + self.epoch)
        waiting = torch.randperm(len(self.texts), generator=self.generator).tolist()
        batches_left = len(self)
        while waiting:
            batch = self.fill(waiting, strict=True)
            if len(waiting) - len(batch) > (batches_left - 1) * self.batch_size:
                # the rows left would not fit the epoch's planned batches (the trainer plans its steps by
                # len(self)): late in an epoch of cuad-clauses only rows of clause types asked several ways are
                # left, each way sharing ~115 positives; top the batch up as NO_DUPLICATES would
                batch = self.fill(waiting, strict=False, batch=batch)
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch
            batches_left -= 1
            chosen = set(batch)
            waiting = [i for i in waiting if i not in chosen]

    def fill(self, waiting: list[int], strict: bool, batch: list[int] | None = None) -> list[int]:
        """`batch` topped up from `waiting` in order with rows that repeat no text of it, and (`strict`) hold no
        labelled positive of its queries and none of whose positives it holds."""
        batch = list(batch or [])
        texts = set().union(*(self.texts[i] for i in batch))
        relevant = set().union(*(self.relevant[i] for i in batch))
        chosen = set(batch)
        for i in waiting:
            if len(batch) == self.batch_size:
                break
            if i in chosen or not self.texts[i].isdisjoint(texts):
                continue
            if strict and not (self.texts[i].isdisjoint(relevant) and self.relevant[i].isdisjoint(texts)):
                continue
            batch.append(i)
            chosen.add(i)
            texts |= self.texts[i]
            relevant |= self.relevant[i]
        return batch
