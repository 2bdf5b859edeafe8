"""Concept labels of a BEIR set: which concept each query asks about and each passage belongs to.

A *concept* is what a domain must keep apart: a clause type in contracts, an API's module, the
contract a question is about. Labels come from the data when it has them, else from clusters:

- ``query:FIELD`` (``auto`` picks ``query:category`` when most queries carry it): a field of each
  query's metadata; a passage takes the concepts of the queries it is relevant to;
- ``doc:FIELD``: a field of each passage's metadata (``doc:contract``); a query takes the most
  common concept of its relevant passages;
- ``id:REGEX``: the first group of a regular expression on query ids (``id:^(.+)-\\d+$``);
- ``clusters`` or ``clusters:K``: k-means clusters of the corpus on the base model's embeddings
  (no labels needed; said so in every report); a query takes its relevant passages' cluster.

Used by the confusion analysis (:mod:`honed.rag_eval.confusion`) and by confusable-concept negatives
(``honed finetune --negatives confusable``).

Example:
    >>> from honed.retriever.data import load_beir
    >>> from honed.retriever.data.concepts import concept_labels
    >>> labels = concept_labels(load_beir("datasets/cuad-clauses", "test"))
    >>> labels.source, labels.query["cap-on-liability-4"]
    ("query metadata 'category'", 'Cap On Liability')
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import HonedError
from .beir import BeirDataset, doc_text


@dataclass(frozen=True)
class ConceptLabels:
    query: dict[str, str]                 # query id → its concept
    docs: dict[str, tuple[str, ...]]      # passage id → its concepts (empty: unlabelled)
    source: str                           # where the labels came from, in words


def concept_labels(ds: BeirDataset, how: str = "auto", encoder=None, seed: int = 0) -> ConceptLabels:
    """Concept labels of `ds`'s queries and passages by the rule `how` (see the module's docstring).

    `encoder` (an :class:`~retriever.encoder.Encoder`) is needed only for ``clusters``.
    """
    kind, arg = parse_concepts(how)
    if kind == "auto":
        kind, arg = ("query", "category") if queries_carry(ds, "category") else ("clusters", "")
    if kind == "query":
        meta = {q: (ds.query_metadata.get(q) or {}).get(arg) for q in ds.queries}
        missing = [q for q, v in meta.items() if v in (None, "")]
        if len(missing) > 0.2 * len(meta):
            raise HonedError(f"--concepts {how}: {len(missing)} of {len(meta)} queries have no metadata field "
                             f"{arg!r} (first: {missing[0]})")
        return _from_queries({q: str(v) for q, v in meta.items() if v not in (None, "")}, ds,
                             f"query metadata {arg!r}")
    if kind == "id":
        rx = re.compile(arg)
        found = {q: m.group(1) for q in ds.queries if (m := rx.search(q)) and m.group(1)}
        if len(found) < 0.8 * len(ds.queries):
            raise HonedError(f"--concepts {how}: matches only {len(found)} of {len(ds.queries)} query ids")
        return _from_queries(found, ds, f"query ids ~ {arg}")
    if kind == "doc":
        docs = {d: (str(v),) for d, doc in ds.corpus.items()
                if (v := (doc.get("metadata") or {}).get(arg)) not in (None, "")}
        if not docs:
            raise HonedError(f"--concepts {how}: no passage has a metadata field {arg!r}")
        return _from_docs(docs, ds, f"passage metadata {arg!r}")
    if encoder is None:
        raise HonedError("--concepts clusters needs the base model to embed the corpus")
    return _clusters(ds, encoder, int(arg) if arg else None, seed)


def queries_carry(ds: BeirDataset, field: str, share: float = 0.8) -> bool:
    """Whether at least `share` of the queries carry a non-empty metadata `field`."""
    return sum(1 for q in ds.queries if (ds.query_metadata.get(q) or {}).get(field)) >= share * len(ds.queries)


def parse_concepts(how: str) -> tuple[str, str]:
    """(kind, argument) of a ``--concepts`` rule, refused now if malformed (before any encoding)."""
    kind, _, arg = how.partition(":")
    ok = {"auto": not arg, "query": bool(arg), "doc": bool(arg), "id": bool(arg),
          "clusters": not arg or (arg.isdigit() and int(arg) >= 2)}
    if not ok.get(kind, False):
        raise HonedError(f"--concepts must be auto, query:FIELD, doc:FIELD, id:REGEX or clusters[:K≥2], got {how!r}")
    if kind == "id":
        try:
            rx = re.compile(arg)
        except re.error as e:
            raise HonedError(f"--concepts {how}: not a regular expression ({e})") from None
        if rx.groups < 1:
            raise HonedError(f"--concepts {how}: the expression needs one group, the concept")
    return kind, arg


def _from_queries(query: dict[str, str], ds: BeirDataset, source: str) -> ConceptLabels:
    docs: dict[str, set[str]] = {}
    for q, c in query.items():
        for d, g in ds.qrels.get(q, {}).items():
            if g > 0:
                docs.setdefault(d, set()).add(c)
    return ConceptLabels(query, {d: tuple(sorted(v)) for d, v in docs.items()}, source)


def _from_docs(docs: dict[str, tuple[str, ...]], ds: BeirDataset, source: str) -> ConceptLabels:
    query = {}
    for q in ds.queries:
        votes = Counter(c for d, g in ds.qrels.get(q, {}).items() if g > 0 for c in docs.get(d, ()))
        if votes:   # the most common concept; ties go to the first in sorted order, so reruns agree
            query[q] = min(votes, key=lambda c: (-votes[c], c))
    return ConceptLabels(query, docs, source)


def _clusters(ds: BeirDataset, encoder, k: int | None, seed: int) -> ConceptLabels:
    from sklearn.cluster import KMeans

    ids = list(ds.corpus)
    k = k or int(np.clip(round(np.sqrt(len(ids) / 4)), 2, 20))
    if len(ids) < 2 * k:
        raise HonedError(f"--concepts clusters: {len(ids)} passages are too few for {k} clusters")
    vecs = encoder.encode_documents([doc_text(ds.corpus[d]) for d in ids], show_progress=len(ids) > 200)
    lab = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vecs)
    return _from_docs({d: (f"cluster {c}",) for d, c in zip(ids, lab)}, ds,
                      f"k-means clusters (k={k}) of the corpus on the base model's embeddings: no labels")
