"""Training batches keep a query's labelled positives out of its in-batch negatives (finetune/batching.py)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from datasets import Dataset

from honed.retriever.finetune.batching import NoLabelledNegativesBatchSampler

REPO = Path(__file__).resolve().parents[1]


def labelled_negatives(batch: list[int], rows: list[tuple[str, ...]]) -> int:
    """(query, candidate) pairs of `batch` where a text of another row is labelled relevant to the query."""
    relevant = defaultdict(set)
    for row in rows:
        relevant[row[0]].add(row[1])
    return sum(1 for i in batch for j in batch if i != j and set(rows[j]) & relevant[rows[i][0]])


@pytest.fixture(scope="module")
def cuad_rows() -> list[tuple[str, str]]:
    """cuad-clauses' training pairs as the trainer reads them: a clause type is asked several ways, and every
    way shares the same ~115 positives (one clause per contract)."""
    from honed.retriever.data import load_beir
    from honed.retriever.data.beir import doc_text

    train = load_beir(REPO / "datasets" / "cuad-clauses", "train")
    return [(train.queries[q], doc_text(train.corpus[d])) for q, rel in sorted(train.qrels.items())
            for d, g in sorted(rel.items()) if g > 0]


def test_batches_hold_no_labelled_positive_of_another_query_while_any_row_is_free(cuad_rows):
    ds = Dataset.from_dict({"anchor": [a for a, _ in cuad_rows], "positive": [p for _, p in cuad_rows]})
    sampler = NoLabelledNegativesBatchSampler(ds, batch_size=32, drop_last=False, seed=42)
    batches = list(sampler)
    # every row once an epoch, in about as many batches as the trainer plans for (len(sampler)): the rows that
    # conflict with one another pile up at the end of an epoch, where even NO_DUPLICATES batches cannot be full,
    # so a few more (~200 of 178 here, batching.json); a one-epoch run, stopping at its planned step, leaves them
    assert sorted(i for b in batches for i in b) == list(range(len(cuad_rows)))
    assert len(sampler) <= len(batches) <= 1.15 * len(sampler)
    found = [labelled_negatives(b, cuad_rows) for b in batches]
    # the demo's 60 steps (a third of an epoch) never push a query's own positives away; random batches do
    # (~5% of in-batch negatives on this split), and so does the end of an epoch here, where only rows that
    # conflict with each other are left
    clean = next(k for k, n in enumerate(found) if n)
    assert clean >= 60, clean
    assert all(len(b) == 32 for b in batches[:60])
    assert sum(found) < sum(labelled_negatives(list(range(k, min(k + 32, len(cuad_rows)))), cuad_rows)
                            for k in range(0, len(cuad_rows), 32))
    # reproducible for a seed, another order for the next epoch
    again = NoLabelledNegativesBatchSampler(ds, batch_size=32, drop_last=False, seed=42)
    assert list(again) == batches
    again.set_epoch(1)
    assert list(again) != batches


def test_a_negative_labelled_relevant_to_another_rows_query_keeps_the_rows_apart():
    rows = [("notice period", "30 days written notice", "a 12 month term"),
            ("renewal term", "renews for 12 months", "notice to terminate"),
            ("notice period", "notice to terminate", "laws of Delaware"),
            ("governing law", "laws of New York", "fees paid")]
    ds = Dataset.from_dict({"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows],
                            "negative": [r[2] for r in rows], "label": [0.5, 0.1, 0.2, 0.3]})
    sampler = NoLabelledNegativesBatchSampler(ds, 4, False)
    # row 1's hard negative is labelled relevant to row 0's query (through row 2): no text repeats between
    # rows 0 and 1, so only the labels keep them apart; row 2 repeats row 0's query
    assert sampler.fill([1, 2, 3], strict=True, batch=[0])[0] == [0, 3]
    assert sampler.fill([0, 2, 3], strict=True, batch=[1])[0] == [1, 3]
    assert sampler.fill([1, 2, 3], strict=False, batch=[0])[0] == [0, 1, 3]     # texts only: as NO_DUPLICATES
