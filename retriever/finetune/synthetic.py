"""Synthetic training queries for an unlabelled corpus, written by the local instruct LLM.

The offline answer to llama-index's OpenAI-only ``generate_qa_embedding_pairs``:
for each passage the packaged Qwen model writes a few search queries (JSON-schema
constrained, so the output always parses), and bad ones are filtered out:

- too short / too long, or mostly copied from the passage (the model echoing text);
- duplicates (after normalisation) across the whole set;
- round-trip consistency (as in GPL / InPars): the base embedder must rank the
  source passage in its top `consistency_k` for the query among a pool of
  passages, else the query is too vague to teach anything.

Example:
    >>> from honed.retriever.finetune.synthetic import generate_pairs
    >>> pairs, stats = generate_pairs({"d1": "Vitamin D ..."}, per_doc=2)   # doctest: +SKIP
"""
from __future__ import annotations

import random

from ..llm.generator import chat_json
from ..llm.llama import parse_json
from .config import FILTER_POOL
from .pairs import Pair, normalise_text

# maxLength stops a small model from "answering" with the whole passage (seen with the 0.5B model).
SCHEMA = {"type": "object", "properties": {"queries": {"type": "array",
                                                       "items": {"type": "string", "minLength": 8, "maxLength": 120},
                                                       "minItems": 1, "maxItems": 5}},
          "required": ["queries"]}
PROMPT = ("Write {n} different search queries that a person would type to find the passage below. "
          "Each query is short (3 to 15 words), specific to this passage, and does not copy whole sentences.\n\n"
          "Passage:\n{passage}")


def _copied(query: str, passage: str, n: int = 6) -> bool:
    """True when the query contains a run of `n` consecutive passage words (echo, not a query)."""
    q, p = normalise_text(query).split(), " " + normalise_text(passage) + " "
    return any(" " + " ".join(q[i:i + n]) + " " in p for i in range(max(0, len(q) - n + 1)))


def filter_queries(cands: list[tuple[str, str]], corpus: dict[str, str], encoder=None, consistency_k: int = 5,
                   pool_size: int = FILTER_POOL, min_words: int = 3, max_words: int = 25, seed: int = 0):
    """Keep (doc id, query) candidates that pass the length, echo, duplicate and round-trip filters."""
    stats = {"candidates": len(cands), "length": 0, "copied": 0, "duplicate": 0, "inconsistent": 0}
    kept, seen = [], set()
    for did, q in cands:
        q = " ".join(q.split())
        if not (min_words <= len(q.split()) <= max_words):
            stats["length"] += 1
        elif _copied(q, corpus[did]):
            stats["copied"] += 1
        elif normalise_text(q) in seen:
            stats["duplicate"] += 1
        else:
            seen.add(normalise_text(q))
            kept.append((did, q))
    if encoder is not None and kept:
        ids = list(corpus)
        rng = random.Random(seed)
        sources = list(dict.fromkeys(d for d, _ in kept))
        taken = set(sources)
        others = [d for d in rng.sample(ids, min(len(ids), pool_size)) if d not in taken]
        pool = sources + others[:max(0, pool_size - len(sources))]       # `pool_size` passages in all
        dv = encoder.encode_documents([corpus[d] for d in pool])
        qv = encoder.encode_queries([q for _, q in kept])
        sims = qv @ dv.T
        pos = {d: i for i, d in enumerate(pool)}
        ok = []
        for row, (did, q) in enumerate(kept):
            rank = int((sims[row] > sims[row, pos[did]]).sum())
            if rank < consistency_k:
                ok.append((did, q))
            else:
                stats["inconsistent"] += 1
        kept = ok
    stats["kept"] = len(kept)
    return kept, stats


def generate_pairs(corpus: dict[str, str], per_doc: int = 3, llm: str = "qwen", encoder=None,
                   max_docs: int | None = None, seed: int = 0, show_progress: bool = True,
                   consistency_k: int = 5, filter_pool: int = FILTER_POOL) -> tuple[list[Pair], dict]:
    """Write and filter synthetic queries; return ``source="synthetic"`` pairs and filter statistics."""
    ids = sorted(corpus)
    if max_docs and max_docs < len(ids):
        ids = sorted(random.Random(seed).sample(ids, max_docs))
    it = ids
    if show_progress:
        from rich.progress import track

        it = track(ids, description="writing queries")
    cands, bad_json = [], 0
    for did in it:
        passage = " ".join(corpus[did].split()[:220])      # keep the prompt inside a small context
        obj = parse_json(chat_json(PROMPT.format(n=per_doc, passage=passage), SCHEMA, model=llm, max_tokens=220))
        if not obj or not isinstance(obj.get("queries"), list):
            bad_json += 1
            continue
        cands += [(did, q) for q in obj["queries"][:per_doc] if isinstance(q, str)]
    kept, stats = filter_queries(cands, corpus, encoder, consistency_k=consistency_k, pool_size=filter_pool, seed=seed)
    stats["docs"], stats["unparseable"] = len(ids), bad_json
    pairs = [Pair(q, corpus[d], None, d, source="synthetic") for d, q in kept]
    return pairs, stats
