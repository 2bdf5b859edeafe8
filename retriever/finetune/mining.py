"""Hard negatives: dense candidates from the base model plus BM25 candidates, with a false-negative guard.

Dense candidates come from ``sentence_transformers.util.mine_hard_negatives``
(which also excludes every labelled positive of the query). Lexical look-alikes
(the "authentication" passage for an "authorization" query) often sit outside
the dense top-k, so BM25's top candidates are added.

**The guard, per query.** A candidate scoring near what the query's relevant
passages score is probably an unlabelled positive. honed compares it with the
*median* of the query's positive scores (cosine, base model): it is kept only if
its score ≤ (1 − ``relative_margin``) × that median. Why not the pair's own
positive (sentence-transformers' per-pair ``relative_margin``) or the weakest
one: with tens of positives per query (cuad-clauses trains with a median of 24)
the weakest positives score below nearly every candidate in the top 50, so those
pairs found no negative at all and fell back to a random passage (77% of pairs on
a medical Q&A set). The median is what a typical relevant passage scores, robust
to a few weak labels, and equals the positive's own score when there is one.

A query's surviving candidates form its pool, hardest first; its pairs take
negatives from the pool in turn, so 24 pairs of one query do not all repeat the
same negative. When the guard leaves a pool short (a broad query whose top 50 all
score like its positives), it is *deepened* with the best-scoring passages of the
whole mining corpus that pass the guard. Only a query with nothing below its
ceiling falls back to random passages; how often is counted in ``stats``.

Example:
    >>> from honed.retriever.finetune.mining import mine_negatives
    >>> stats = {}
    >>> triples = mine_negatives(pairs, corpus, encoder, num_negatives=1, stats=stats)   # doctest: +SKIP
    >>> stats["random_fallback_rate"]                                                     # doctest: +SKIP
    0.0
"""
from __future__ import annotations

import contextlib
import functools
import tempfile
from collections import Counter

import numpy as np

from ..errors import HonedError
from .pairs import Pair


def mine_negatives(pairs: list[Pair], corpus: dict[str, str], encoder, num_negatives: int = 1,
                   range_max: int = 50, relative_margin: float = 0.05, bm25: bool = True,
                   seed: int = 42, cache_folder: str | None = None,
                   max_seq_length: int | None = None, stats: dict | None = None,
                   concepts: tuple[dict[str, str], dict[str, tuple[str, ...]]] | None = None) -> list[Pair]:
    """Return pairs with ``negatives`` filled: one output pair per (pair, negative).

    Args:
        pairs: training pairs with positive ids.
        corpus: doc id → text to mine from (the training corpus, possibly subsampled).
        encoder: the base model's :class:`~retriever.encoder.Encoder`.
        num_negatives: negatives per pair.
        range_max: how deep in each query's ranking (dense and BM25) to look, positives not counted.
        relative_margin: keep a candidate only if its score ≤ (1 - margin) × the median positive score.
        bm25: also take candidates from BM25's top `range_max`.
        cache_folder: where mine_hard_negatives caches embeddings (reused for the guard).
        max_seq_length: truncate passages to this many tokens while mining (None or 0: the encoder's own).
            Mining only ranks candidates and the guard compares scores from the same encoder,
            so shorter passages cost little and halve the encoding time.
        stats: if given, filled with counts: pairs, queries, positives per query (median, max),
            candidates guarded out, pairs that fell back to a random negative and their rate.
        concepts: (query text → concept, passage text → concepts) for *confusable* negatives: each
            query's pool puts first the candidates of the concepts the base model confuses with the
            query's (:func:`base_confusions`), hardest first within each; the guard applies as before.
    """
    if max_seq_length and max_seq_length < encoder.max_seq_length:
        # its own instance at the shorter length (cached by length): the caller's encoder is shared, never changed
        from ..encoder import load_encoder

        encoder = load_encoder(encoder.path, batch_size=encoder.batch_size, max_seq_length=max_seq_length,
                               backend="torch", device=encoder.device)
    # the embeddings cache outlives mining only where the caller asked for one
    scratch = contextlib.nullcontext(cache_folder) if cache_folder else tempfile.TemporaryDirectory(prefix="honed-mine-")
    with scratch as cache:
        return _mine(pairs, corpus, encoder, num_negatives, range_max, relative_margin, bm25, seed, cache,
                     stats if stats is not None else {}, concepts)


def _mine(pairs, corpus, encoder, num_negatives, range_max, relative_margin, bm25, seed, cache, stats,
          concepts=None):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    ids = list(corpus)
    texts = [corpus[i] for i in ids]
    id_of = {t: i for i, t in zip(ids, texts)}
    positives_of: dict[str, list[str]] = {}
    for p in pairs:
        if p.positive not in positives_of.setdefault(p.query, []):
            positives_of[p.query].append(p.positive)
    queries = list(positives_of)
    max_pos = max(len(v) for v in positives_of.values())
    # ONE row per query: the ranking is the same for every positive of a query, and a row per (query,
    # positive) made mine_hard_negatives hold pairs × depth passage texts (24 GB for 110k pairs with ~40
    # positives each). The query's other positives are dropped from its candidates below (`_query_pool`),
    # so the ranking looks max_pos deeper to leave `range_max` candidates after them. No margin there: the
    # guard below is per query.
    firsts = [positives_of[q][0] for q in queries]
    _check_memory(len(set(texts) | {t for v in positives_of.values() for t in v}),
                  encoder.dim, len(queries), range_max + max_pos,
                  sum(map(len, texts)) / max(len(texts), 1))
    ds = Dataset.from_dict({"anchor": queries, "positive": firsts})
    depth = max(1, min(range_max + max_pos, len(set(texts) | set(firsts)) - 2))
    mined = mine_hard_negatives(
        ds, encoder.model, corpus=texts, range_max=depth, num_negatives=depth, sampling_strategy="top",
        output_format="n-tuple", batch_size=encoder.batch_size, use_faiss=len(texts) > 20000, verbose=False,
        cache_folder=cache,
    )
    neg_cols = [c for c in mined.column_names if c.startswith("negative")]
    dense: dict[str, list[str]] = {}
    for row in mined:            # the first range_max that are not positives: the ranking one row per positive gave
        pos = set(positives_of[row["anchor"]])
        dense[row["anchor"]] = [t for t in (row[c] for c in neg_cols) if t not in pos][:range_max]
    del mined, ds

    emb = _cached_embeddings(cache, texts, firsts)
    # the guard scores every positive: encode those mine_hard_negatives did not (positives outside the
    # mining corpus beyond each query's first; all of them if its cache layout changed upstream)
    need = [t for t in dict.fromkeys(texts + [t for q in queries for t in positives_of[q]]) if t not in emb]
    if need:
        emb.update(zip(need, encoder.encode_documents(need, show_progress=len(need) > 500)))
    qvec = dict(zip(queries, encoder.encode_queries(queries)))
    lexical = _bm25_candidates(queries, texts, range_max) if bm25 else {}

    n_pairs_of: dict[str, int] = {}
    for p in pairs:
        n_pairs_of[p.query] = n_pairs_of.get(p.query, 0) + 1
    corpus_matrix = functools.cache(lambda: np.stack([emb[t] for t in texts]))   # built only if a pool is deepened
    confused = base_confusions(queries, dense, *concepts) if concepts else None
    pools, ceilings, guarded, deepened = {}, {}, 0, 0
    for q in queries:
        ceilings[q] = guard_ceiling(emb, qvec[q], positives_of[q], relative_margin)
        pools[q], n_guarded, deep = _query_pool(
            dense.get(q, []), lexical.get(q, []), set(positives_of[q]), emb, qvec[q], ceilings[q],
            want=min(range_max, n_pairs_of[q] * num_negatives), texts=texts, corpus_matrix=corpus_matrix)
        if confused is not None:
            pools[q] = prefer_confusable(pools[q], concepts[0].get(q), concepts[1], confused)
        guarded, deepened = guarded + n_guarded, deepened + deep

    rng = np.random.default_rng(seed)
    out, n_fallback = [], 0
    taken = dict.fromkeys(queries, 0)
    for p in pairs:
        q, pool = p.query, pools[p.query]
        if not pool:             # nothing in the whole corpus passes the guard
            n_fallback += 1
            take = [c for c in (_random_negative(texts, set(positives_of[q]), emb, qvec[q], ceilings[q], rng)
                                for _ in range(num_negatives)) if c is not None]
        else:
            # this pair's turn in the pool: hardest first, then the next ones for the query's next pair
            start = taken[q]
            take = [pool[(start + j) % len(pool)] for j in range(num_negatives)]
            taken[q] = (start + num_negatives) % len(pool)
        for neg in take:
            out.append(Pair(p.query, p.positive, p.query_id, p.positive_id, [str(neg)], [id_of.get(str(neg), "")],
                            p.source))
    n_pos = [len(v) for v in positives_of.values()]
    stats.update({"corpus": len(corpus), "pairs": len(pairs), "queries": len(queries), "positives_per_query_median": float(np.median(n_pos)),
                  "positives_per_query_max": int(max(n_pos)), "guarded_out": guarded, "queries_deepened": deepened,
                  "random_fallback": n_fallback, "random_fallback_rate": round(n_fallback / max(len(pairs), 1), 4)})
    if confused is not None:
        stats["confusable"] = confusable_stats(out, concepts, confused)
    return out


def base_confusions(queries: list[str], dense: dict[str, list[str]], query_concept: dict[str, str],
                    doc_concepts: dict[str, tuple[str, ...]], depth: int = 10) -> dict[str, dict[str, float]]:
    """concept → {other concept: share of its queries with a passage of that concept among the base model's
    `depth` best non-positive candidates}: what the base model confuses, read off the ranking mining made anyway."""
    hits: dict[str, Counter] = {}
    n: Counter = Counter()
    for q in queries:
        c = query_concept.get(q)
        if c is None:
            continue
        n[c] += 1
        hits.setdefault(c, Counter()).update({o for t in dense.get(q, [])[:depth] if c not in doc_concepts.get(t, ())
                                              for o in doc_concepts.get(t, ())})
    return {c: {o: k / n[c] for o, k in other.items()} for c, other in hits.items() if other}


def prefer_confusable(pool: list[str], concept: str | None, doc_concepts: dict[str, tuple[str, ...]],
                      confused: dict[str, dict[str, float]]) -> list[str]:
    """The pool reordered: candidates of the concepts most confused with `concept` first (by rate), then the
    rest; the sort is stable, so the hardest stays first within each rate."""
    rates = confused.get(concept, {}) if concept is not None else {}
    if not rates:
        return pool
    return sorted(pool, key=lambda t: -max((rates.get(o, 0.0) for o in doc_concepts.get(t, ())), default=0.0))


def confusable_stats(triples: list[Pair], concepts, confused: dict[str, dict[str, float]]) -> dict:
    """How many chosen negatives belong to a concept the base model confuses with the query's, and the top pairs."""
    query_concept, doc_concepts = concepts
    hit = sum(1 for t in triples for neg in t.negatives
              if any(confused.get(query_concept.get(t.query), {}).get(o, 0) > 0 for o in doc_concepts.get(neg, ())))
    n = sum(len(t.negatives) for t in triples)
    top = sorted(((r, c, o) for c, other in confused.items() for o, r in other.items()), reverse=True)[:5]
    return {"negatives_of_confused_concepts": round(hit / max(n, 1), 4), "labelled_queries": len(query_concept),
            "top_confused": [{"concept": c, "confused_with": o, "rate": round(r, 4)} for r, c, o in top]}


def _check_memory(n_texts: int, dim: int, n_queries: int, depth: int, avg_chars: float) -> None:
    """Refuse, in one line, a mining run that would not fit in memory (a kill by the OOM killer saves nothing).

    What grows: the embeddings (kept twice: by text, and as the matrix a deepened pool ranks), and each
    query's ranked candidate texts from mine_hard_negatives (Arrow, then Python strings).
    """
    need = n_texts * dim * 4 * 2 + n_queries * depth * avg_chars * 3
    avail = _available_bytes()
    if avail and need > 0.7 * avail:
        raise HonedError(f"mining hard negatives needs ~{need / 2**30:.1f} GB, {avail / 2**30:.1f} GB available "
                         f"({n_texts} passages, {n_queries} queries): lower --max-mine-docs, use --time-budget, "
                         "or pass fewer pairs")


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def _query_pool(dense: list[str], lexical: list[str], positives: set[str], emb: dict, qv: np.ndarray,
                ceiling: float, want: int, texts: list[str], corpus_matrix) -> tuple[list[str], int, bool]:
    """One query's negatives, hardest first: (pool, candidates guarded out, whether it was deepened)."""
    pool, seen, guarded = [], set(), 0
    # interleave dense and lexical candidates so both kinds of confusion are taught
    for c in [x for pair in zip(dense, lexical) for x in pair] + dense + lexical:
        if c in seen or c in positives:
            continue
        seen.add(c)
        if float(emb[c] @ qv) <= ceiling:
            pool.append(c)
        else:
            guarded += 1
    if len(pool) >= want:
        return pool, guarded, False
    # A broad query's top ranks can all score above its ceiling (they are likely unlabelled
    # positives); its hard negatives are then the best-scoring passages just below it.
    scores = corpus_matrix() @ qv
    for i in np.argsort(-scores):
        if len(pool) >= want:
            break
        t = texts[int(i)]
        if scores[i] <= ceiling and t not in positives and t not in seen:
            seen.add(t)
            pool.append(t)
    return pool, guarded, True


def guard_ceiling(emb: dict, qv: np.ndarray, positives: list[str], relative_margin: float) -> float:
    """The highest score a negative may have: (1 − margin) × the median positive score of the query."""
    med = float(np.median([float(emb[t] @ qv) for t in positives]))
    # a negative median (a badly matched query) must move the ceiling down, not up
    return med - relative_margin * abs(med)


def _cached_embeddings(cache: str, texts: list[str], positives: list[str]) -> dict[str, np.ndarray]:
    """Text → embedding from mine_hard_negatives' cache (its corpus order: corpus + the dataset's positives, deduped)."""
    import glob

    order = list(dict.fromkeys(texts + list(positives)))
    for f in glob.glob(f"{cache}/corpus_embeddings_*.npy"):
        emb = np.load(f)   # plain float arrays; np.load refuses pickles by default
        if len(emb) == len(order):
            return dict(zip(order, emb))
    return {}


def _random_negative(texts, positives, emb, qv, ceiling, rng, tries: int = 50):
    """A random passage that is not a positive and passes the same guard (None if none found)."""
    for _ in range(tries):
        cand = texts[int(rng.integers(len(texts)))]
        if cand not in positives and float(emb[cand] @ qv) <= ceiling:
            return cand
    return None


def _bm25_candidates(queries: list[str], texts: list[str], range_max: int) -> dict[str, list[str]]:
    """BM25's top `range_max` passages per query (guarded by the caller, with the dense candidates)."""
    from ..bm25 import bm25_topk

    docs, _ = bm25_topk(texts, queries, range_max)
    return {q: [texts[int(d)] for d in docs[qi]] for qi, q in enumerate(queries)}
