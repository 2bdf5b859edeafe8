"""Training batches in which no query meets, as an in-batch negative, a passage labelled relevant to it.

MultipleNegativesRankingLoss scores each query against every passage in its batch and treats all but its own
positive as negatives. Where a query has many labelled positives (a cuad-clauses clause type is answered by that
clause in every contract: 5,680 training pairs for 1,234 queries), random batches of 32 put 6% of a query's
in-batch negatives among its own labelled positives and ``NO_DUPLICATES`` batches 5% (cuad-clauses' train split,
benchmarks/results/batching.json), and the loss pushes them away. sentence-transformers'
``NoDuplicatesBatchSampler`` keeps identical texts apart, not a query from its other positives, and
``GISTEmbedLoss`` masks what a guide model thinks relevant, not what the labels say; no maintained library keeps
labelled positives out of a query's batch, hence this sampler.

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
LOOKAHEAD_BATCHES = 200


def labelled_rows(dataset) -> tuple[list[tuple[str, ...]], list[frozenset[str]]]:
    """Each training row's texts (anchor, positive, negatives…) and its query's labelled positives: the positives
    of every row with that anchor (one set per query, shared by its rows)."""
    columns = [c for c in dataset.column_names if c not in TEXT_COLUMNS_SKIPPED]
    rows = list(zip(*(dataset[c] for c in columns)))
    relevant: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        relevant[row[0]].add(row[1])
    shared = {q: frozenset(p) for q, p in relevant.items()}
    return rows, [shared[row[0]] for row in rows]


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
        rows, self.relevant = labelled_rows(dataset)
        self.texts = [frozenset(row) for row in rows]
        # how far past a batch's first free row a strict fill looks before it gives up on the labels: bounds an
        # epoch's cost where conflicts are dense (155k pairs, 35 positives a query) to ~n × this / batch size
        self.lookahead = LOOKAHEAD_BATCHES * batch_size

    def __iter__(self) -> Iterator[list[int]]:
        self.generator.manual_seed(self.seed + self.epoch)
        waiting = torch.randperm(len(self.texts), generator=self.generator).tolist()
        batches_left = len(self)
        while waiting:
            batch, scanned = self.fill(waiting, strict=True)
            if len(batch) < self.batch_size and (scanned == self.lookahead or
                                                 len(waiting) - len(batch) > (batches_left - 1) * self.batch_size):
                # too few free rows near the front, or the rows left would not fit the epoch's planned batches
                # (the trainer plans its steps by len(self)): late in an epoch of cuad-clauses only rows of clause
                # types asked several ways are left, each way sharing ~115 positives. Top up as NO_DUPLICATES would
                batch, more = self.fill(waiting, strict=False, batch=batch)
                scanned = max(scanned, more)
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch
            batches_left -= 1
            chosen = set(batch)
            waiting = [i for i in waiting[:scanned] if i not in chosen] + waiting[scanned:]

    def fill(self, waiting: list[int], strict: bool, batch: list[int] | None = None) -> tuple[list[int], int]:
        """(`batch` topped up from `waiting` in order with rows that repeat no text of it and, `strict`, hold no
        labelled positive of its queries and none of whose positives it holds; how many rows were looked at)."""
        batch = list(batch or [])
        texts = set().union(*(self.texts[i] for i in batch))
        relevant = set().union(*(self.relevant[i] for i in batch))
        chosen = set(batch)
        pos = 0
        for pos, i in enumerate(waiting, 1):
            if len(batch) == self.batch_size or (strict and pos > self.lookahead):
                pos -= 1
                break
            if i in chosen or not self.texts[i].isdisjoint(texts):
                continue
            if strict and not (self.texts[i].isdisjoint(relevant) and self.relevant[i].isdisjoint(texts)):
                continue
            batch.append(i)
            chosen.add(i)
            texts |= self.texts[i]
            relevant |= self.relevant[i]
        return batch, pos
