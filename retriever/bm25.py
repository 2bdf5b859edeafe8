"""BM25 with the ``bm25s`` library: one set-up (Lucene, k1=1.2, b=0.75, English stopwords + Snowball
stemming) for the evaluation baseline, for mining lexical hard negatives, and for the BM25 side of a
hybrid artifact.

An artifact's BM25 index is a folder ``bm25-<generation>/`` beside the FAISS file: bm25s's own arrays
(``.npy``, saved and loaded with ``allow_pickle=False``) and vocabulary (JSON), plus ``labels.npy``, the
store label (``pos``) of each indexed row. bm25s cannot add or remove a document in an index, so an update
writes the next generation's folder from the live rows (see :mod:`retriever.updates`).

Example:
    >>> from honed.retriever.bm25 import bm25_search
    >>> corpus = {"d1": {"text": "cats purr"}, "d2": {"text": "dogs bark loudly"}}
    >>> list(bm25_search(corpus, {"q": "barking dogs"}, k=1)["q"])
    ['d2']
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .data.beir import doc_text
from .errors import HonedError

PARAMS = {"method": "lucene", "k1": 1.2, "b": 0.75}
LABELS_FILE = "labels.npy"


def _tokenize(texts: list[str], show_progress: bool = False, ids: bool = True):
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=show_progress,
                          return_ids=ids)


def _fit(texts: list[str], show_progress: bool = False):
    import bm25s

    model = bm25s.BM25(**PARAMS)
    model.index(_tokenize(texts, show_progress), show_progress=show_progress)
    return model


def bm25_topk(texts: list[str], queries: list[str], k: int, show_progress: bool = False):
    """(doc positions, scores) of the top-k texts per query, each an array of shape (len(queries), k)."""
    model = _fit(texts, show_progress)
    q_tokens = _tokenize(queries)
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


def write_bm25(texts: list[str], labels: np.ndarray, out: str | os.PathLike, show_progress: bool = False) -> Path:
    """Index `texts` (the documents under store `labels`) and save the index as the folder `out`.

    Written beside `out` and renamed into place, so a kill leaves no half-written folder under its name.
    """
    from .extras import require_extra

    out = Path(out)
    require_extra("hybrid", f"writing the BM25 index {out.parent}/{out.name}")
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = _fit(texts or ["placeholder"], show_progress)   # bm25s cannot index nothing; no label, never returned
    model.save(str(tmp), show_progress=False, allow_pickle=False)
    np.save(tmp / LABELS_FILE, np.asarray(labels, dtype=np.int64), allow_pickle=False)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, out)
    return out


def bm25_digest(folder: str | os.PathLike) -> str:
    """sha256 over the folder's files (name and bytes, in name order): what the store records for it."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class Bm25Index:
    """A saved artifact BM25 index: search by query text, results as store labels.

    Example:
        >>> idx = Bm25Index("indexes/cuad-hybrid/bm25-1")               # doctest: +SKIP
        >>> idx.search(["cap on liability"], k=5)[0][:1]               # doctest: +SKIP
        [(812, 11.3)]
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.labels = np.load(self.folder / LABELS_FILE, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise HonedError(f"{self.folder}: unreadable BM25 index ({e}); rebuild the index") from None
        self.empty = not len(self.labels)
        self._model = None

    @property
    def model(self):
        """bm25s's index, read on the first BM25 query: a dense-only user of the artifact needs no bm25s."""
        if self._model is None:
            from .extras import require_extra

            require_extra("hybrid", f"a BM25 query of {self.folder.parent}")
            import bm25s

            try:
                self._model = bm25s.BM25.load(str(self.folder), mmap=False, allow_pickle=False, show_progress=False)
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
                raise HonedError(f"{self.folder}: unreadable BM25 index ({e}); rebuild the index") from None
        return self._model

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: list[str], k: int, allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """Top-k (label, score) per query, matching documents only; `allowed` restricts to those labels."""
        n = len(self.labels)
        if self.empty or k < 1:
            return [[] for _ in queries]
        mask = None
        if allowed is not None:
            mask = np.isin(self.labels, np.asarray(allowed, dtype=np.int64)).astype(np.float32)
            if not mask.any():
                return [[] for _ in queries]
        vocab = self.model.vocab_dict
        tokens = [[t for t in q if t in vocab] for q in _tokenize(list(queries), ids=False)]
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        known = [i for i, t in enumerate(tokens) if t]   # a query of unknown words only matches nothing
        if not known:
            return out
        docs, scores = self.model.retrieve([tokens[i] for i in known], k=min(k, n), show_progress=False,
                                           n_threads=1, weight_mask=mask)
        for i, drow, srow in zip(known, docs, scores):
            out[i] = [(int(self.labels[d]), float(s)) for d, s in zip(drow, srow) if np.isfinite(s) and s > 0]
        return out
