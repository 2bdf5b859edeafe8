"""Hard negatives: dense candidates from the base model plus BM25 candidates, with a false-negative guard.

Dense candidates come from ``sentence_transformers.util.mine_hard_negatives``.
Lexical look-alikes (the "authentication" passage for an "authorization"
query) often sit outside the dense top-k, so BM25's top candidates are added,
under the same guard: a candidate scoring above ``relative_margin`` below the
positive's own score (cosine, base model) is probably an unlabelled positive
and is dropped.

Example:
    >>> from honed.retriever.finetune.mining import mine_negatives
    >>> triples = mine_negatives(pairs, corpus, encoder, num_negatives=1)   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .pairs import Pair


def mine_negatives(pairs: list[Pair], corpus: dict[str, str], encoder, num_negatives: int = 1,
                   range_max: int = 50, relative_margin: float = 0.05, bm25: bool = True,
                   seed: int = 42, cache_folder: str | None = None,
                   max_seq_length: int | None = None) -> list[Pair]:
    """Return pairs with ``negatives`` filled: one output pair per (pair, negative).

    Args:
        pairs: training pairs with positive ids.
        corpus: doc id → text to mine from (the training corpus, possibly subsampled).
        encoder: the base model's :class:`~retriever.encoder.Encoder`.
        num_negatives: negatives per pair.
        range_max: how deep in each ranking to look.
        relative_margin: keep a candidate only if its score ≤ (1 - margin) × positive score.
        bm25: also take candidates from BM25's top `range_max`.
        cache_folder: where mine_hard_negatives caches embeddings (reused for the BM25 guard).
        max_seq_length: truncate passages to this many tokens while mining (None or 0: the encoder's own).
            Mining only ranks candidates and the guard compares scores from the same encoder,
            so shorter passages cost little and halve the encoding time.
    """
    model = encoder.model
    own_len = model.max_seq_length
    if max_seq_length:
        model.max_seq_length = min(max_seq_length, own_len)
    try:
        return _mine(pairs, corpus, encoder, num_negatives, range_max, relative_margin, bm25, seed, cache_folder)
    finally:
        model.max_seq_length = own_len


def _mine(pairs, corpus, encoder, num_negatives, range_max, relative_margin, bm25, seed, cache_folder):
    import tempfile

    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    ids = list(corpus)
    texts = [corpus[i] for i in ids]
    id_of = {t: i for i, t in zip(ids, texts)}
    ds = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]})
    cache = cache_folder or tempfile.mkdtemp(prefix="honed-mine-")
    mined = mine_hard_negatives(
        ds, encoder.model, corpus=texts, range_max=range_max, relative_margin=relative_margin,
        num_negatives=max(num_negatives * 3, 5), sampling_strategy="top", output_format="n-tuple",
        batch_size=encoder.batch_size, use_faiss=len(texts) > 20000, verbose=False, cache_folder=cache,
    )
    dense: dict[tuple[str, str], list[str]] = {}
    neg_cols = [c for c in mined.column_names if c.startswith("negative")]
    for row in mined:
        dense[(row["anchor"], row["positive"])] = [row[c] for c in neg_cols]

    emb = _cached_embeddings(cache, texts, pairs)
    unique_q = list(dict.fromkeys(p.query for p in pairs))
    qvec = dict(zip(unique_q, encoder.encode_queries(unique_q)))
    lexical: dict[str, list[str]] = {}
    if bm25:
        lexical = _bm25_candidates(pairs, texts, encoder, range_max, relative_margin, emb, qvec)

    positives_of: dict[str, set[str]] = {}
    for p in pairs:
        positives_of.setdefault(p.query, set()).add(p.positive)
    rng = np.random.default_rng(seed)
    out = []
    n_fallback = 0
    for p in pairs:
        cands = dense.get((p.query, p.positive), [])
        # interleave dense and lexical candidates so both kinds of confusion are taught
        lex = lexical.get(p.query, [])
        merged, seen = [], set()
        for c in [x for pair in zip(cands, lex) for x in pair] + cands + lex:
            if c not in seen and c not in positives_of[p.query]:
                seen.add(c)
                merged.append(c)
        if not merged:
            # Every candidate was guarded out (common when a query has many positives and the
            # weakest scores low). Keep the pair with a random non-positive passage rather than drop it.
            n_fallback += 1
            cand = _random_negative(p.query, texts, positives_of[p.query], emb, qvec[p.query], relative_margin, rng)
            if cand is None:
                continue
            merged = [cand]
        take = merged[:num_negatives] if len(merged) >= num_negatives else list(rng.choice(merged, num_negatives))
        for neg in take:
            out.append(Pair(p.query, p.positive, p.query_id, p.positive_id, [str(neg)], [id_of.get(str(neg), "")],
                            p.source))
    mine_negatives.last_stats = {"pairs": len(pairs), "random_fallback": n_fallback}
    return out


def _cached_embeddings(cache: str, texts: list[str], pairs: list[Pair]) -> dict[str, np.ndarray]:
    """Text → embedding from mine_hard_negatives' cache (same corpus order it uses: corpus + positives, deduped)."""
    import glob

    order = list(dict.fromkeys(texts + [p.positive for p in pairs]))
    for f in glob.glob(f"{cache}/corpus_embeddings_*.npy"):
        emb = np.load(f)   # plain float arrays; np.load refuses pickles by default
        if len(emb) == len(order):
            return dict(zip(order, emb))
    return {}


def _random_negative(query, texts, positives, emb, qv, relative_margin, rng, tries: int = 50):
    """A random passage that is not a positive and passes the same guard (None if none found)."""
    floor = min(float(emb[t] @ qv) for t in positives) if emb else None
    for _ in range(tries):
        cand = texts[int(rng.integers(len(texts)))]
        if cand in positives:
            continue
        if floor is None or float(emb[cand] @ qv) <= (1 - relative_margin) * floor:
            return cand
    return None


def _bm25_candidates(pairs, texts, encoder, range_max, relative_margin, emb, qvec) -> dict[str, list[str]]:
    """BM25 top candidates per query that pass the dense false-negative guard."""
    from ..bm25 import bm25_topk

    queries = list(dict.fromkeys(p.query for p in pairs))
    docs, _ = bm25_topk(texts, queries, range_max)
    if not emb:   # cache layout changed upstream: encode what the guard needs
        need = list(dict.fromkeys([texts[int(d)] for row in docs for d in row] + [p.positive for p in pairs]))
        emb = dict(zip(need, encoder.encode_documents(need, show_progress=len(need) > 500)))
    qv = [qvec[q] for q in queries]
    pos_text: dict[str, list[str]] = {}
    for p in pairs:
        pos_text.setdefault(p.query, []).append(p.positive)
    out = {}
    for qi, q in enumerate(queries):
        # Guard against the query's weakest positive: anything scoring near it is likely unlabelled-relevant.
        floor = min(float(emb[t] @ qv[qi]) for t in pos_text[q])
        out[q] = [texts[int(d)] for d in docs[qi]
                  if float(emb[texts[int(d)]] @ qv[qi]) <= (1 - relative_margin) * floor]
    return out
