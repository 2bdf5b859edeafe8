"""BM25 baseline with the ``bm25s`` library (English stopwords + Snowball stemming).

Example:
    >>> from honed.rag_eval.bm25 import bm25_search
    >>> corpus = {"d1": {"text": "cats purr"}, "d2": {"text": "dogs bark loudly"}}
    >>> list(bm25_search(corpus, {"q": "barking dogs"}, k=1)["q"])
    ['d2']
"""
from __future__ import annotations

import numpy as np

from honed.retriever.data.beir import doc_text


def bm25_search(corpus: dict[str, dict], queries: dict[str, str], k: int = 100,
                show_progress: bool = False) -> dict[str, dict[str, float]]:
    """Top-k BM25 (Lucene variant, k1=1.2, b=0.75) hits per query as a ``{qid: {doc: score}}`` run."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus)
    tokens = bm25s.tokenize([doc_text(corpus[i]) for i in ids], stopwords="en", stemmer=stemmer,
                            show_progress=show_progress)
    model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    model.index(tokens, show_progress=show_progress)
    qids = list(queries)
    q_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                              show_progress=False)
    k_eff = min(k, len(ids))
    docs, scores = model.retrieve(q_tokens, k=k_eff, show_progress=show_progress, n_threads=1)
    run = {}
    for row, q in enumerate(qids):
        run[q] = {ids[int(d)]: float(s) for d, s in zip(docs[row], scores[row]) if np.isfinite(s) and s > 0}
    return run
