"""BM25 with the ``bm25s`` library: one set-up (Lucene, k1=1.2, b=0.75, English stopwords + Snowball
stemming) for the evaluation baseline and for mining lexical hard negatives.

Example:
    >>> from honed.retriever.bm25 import bm25_search
    >>> corpus = {"d1": {"text": "cats purr"}, "d2": {"text": "dogs bark loudly"}}
    >>> list(bm25_search(corpus, {"q": "barking dogs"}, k=1)["q"])
    ['d2']
"""
from __future__ import annotations

import numpy as np

from .data.beir import doc_text


def bm25_topk(texts: list[str], queries: list[str], k: int, show_progress: bool = False):
    """(doc positions, scores) of the top-k texts per query, each an array of shape (len(queries), k)."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=show_progress)
    model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    model.index(tokens, show_progress=show_progress)
    q_tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    return model.retrieve(q_tokens, k=min(k, len(texts)), show_progress=show_progress, n_threads=1)


def bm25_search(corpus: dict[str, dict], queries: dict[str, str], k: int = 100,
                show_progress: bool = False) -> dict[str, dict[str, float]]:
    """Top-k BM25 hits per query as a ``{qid: {doc: score}}`` run (documents that match no term left out)."""
    ids = list(corpus)
    qids = list(queries)
    docs, scores = bm25_topk([doc_text(corpus[i]) for i in ids], [queries[q] for q in qids], k, show_progress)
    run = {}
    for row, q in enumerate(qids):
        run[q] = {ids[int(d)]: float(s) for d, s in zip(docs[row], scores[row]) if np.isfinite(s) and s > 0}
    return run
