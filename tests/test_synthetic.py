"""Synthetic queries: the real local LLM writes them, the filters drop the bad ones."""
from __future__ import annotations

import pytest

from honed.retriever.data.beir import doc_text
from honed.retriever.finetune.synthetic import filter_queries


@pytest.fixture(scope="module")
def docs(scifact_test):
    ids = sorted(scifact_test.corpus)[:40]
    return {d: doc_text(scifact_test.corpus[d]) for d in ids}


def test_filters_drop_echo_duplicates_vague_and_bad_length(docs, minilm):
    d0, d1 = list(docs)[:2]
    echo = " ".join(docs[d0].split()[3:12])          # nine words copied from the passage (d0: dendritic arbors)
    good = "How do dendritic arbors adjust their geometry to changes in synaptic input?"
    cands = [(d0, good),
             (d0, good.lower().rstrip("?")),                                    # duplicate after normalisation
             (d0, echo),
             (d1, "p53"),                                                       # too short
             (d1, "an interesting scientific finding about biology")]           # vague: fails round-trip
    kept, stats = filter_queries(cands, docs, encoder=minilm, consistency_k=3)
    assert [q for _, q in kept] == [good]
    assert (stats["duplicate"], stats["copied"], stats["length"], stats["inconsistent"]) == (1, 1, 1, 1)


