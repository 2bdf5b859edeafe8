"""Human relevance labels into a versioned BEIR evaluation set: pooling, labels, agreement, adjudication, export.

The workflow behind ``honed annotate`` (the app's annotation pages call the same
functions; nothing here imports Streamlit):

1. **Queries** go into a named set: from a file (:func:`read_queries`), from the
   app's and the service's query log (:func:`logged_queries`), or synthetic
   queries awaiting review (:func:`synthetic_queries`; a reviewer accepts, edits
   or rejects each before it becomes a training pair, :func:`reviewed_pairs`).
2. **Pooling**, as TREC builds judgements: the top-``depth`` passages of every
   system (candidate, baseline, BM25), de-duplicated and shuffled once per query,
   so every annotator sees the same order and no system names (:func:`pool_query`).
3. **Labels**: graded relevance 0–3 (:data:`GRADES`) and a free note, appended to
   the feedback store (the same SQL database and concurrency rules as votes); the
   latest label per (query, passage, annotator) counts.
4. **Agreement**: Cohen's kappa per pair of annotators, Fleiss' kappa over the
   items every annotator judged, with counts (:func:`agreement`);
   **adjudication** of the items where annotators disagree (:func:`disagreements`).
5. **Export** (:func:`export_eval_set`): a BEIR folder as a *new version*
   (``OUT/v1``, ``OUT/v2``, …; a version is never overwritten) with ``corpus.jsonl``,
   ``queries.jsonl``, ``qrels/test.tsv`` and a dataset card (who labelled, when,
   agreement, pool depth). The **leak guard**: an exported set is a frozen eval set,
   so its queries and judged passages never enter training: ``honed finetune
   --frozen-eval DIR``, ``honed feedback export --eval-data DIR`` and
   :func:`reviewed_pairs` drop them (:func:`~retriever.finetune.pairs.drop_frozen`).

Example:
    >>> from honed.app.store import FeedbackStore
    >>> from honed.app import annotate as an
    >>> store = FeedbackStore("feedback.db")                                              # doctest: +SKIP
    >>> an.add_queries(store, "contracts-v", an.read_queries("my-queries.txt"), "file")  # doctest: +SKIP
    >>> an.record_label(store, "contracts-v", "q1", "doc-7", "alice", 3)                  # doctest: +SKIP
    >>> an.export_eval_set(store, "contracts-v", "datasets/cuad-clauses", "evalsets/contracts")  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Iterable

from honed.retriever.errors import DataError, HonedError

from .store import FeedbackStore

GRADES = {0: "not relevant", 1: "related", 2: "relevant", 3: "highly relevant"}   # TREC-style graded scale
SOURCES = ("file", "log", "synthetic")
LABEL, ADJUDICATION, REVIEW = "label", "adjudication", "review"


@dataclass
class PooledPassage:
    doc_id: str
    text: str
    systems: list[str]             # which systems retrieved it (kept, never shown to annotators)


# -- queries ---------------------------------------------------------------------------------------
def read_queries(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(id, text) from a BEIR ``queries.jsonl`` (``_id``, ``text``) or a text file with one query per line."""
    path = Path(path)
    if not path.is_file():
        raise HonedError(f"--queries {path}: no such file")
    out = []
    if path.suffix == ".jsonl":
        from honed.retriever.data.beir import iter_jsonl

        for n, obj in iter_jsonl(path):
            text = str(obj.get("text", "")).strip()
            if not text or "_id" not in obj:
                raise DataError(f"{path}:{n}: a query needs '_id' and a non-empty 'text'")
            out.append((str(obj["_id"]), text))
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                out.append((f"q{n}", line.strip()))
    if not out:
        raise DataError(f"{path}: holds no queries")
    return out


def logged_queries(store: FeedbackStore, limit: int = 200) -> list[tuple[str, str]]:
    """Distinct queries people asked in the app (votes) and the service (impressions), most frequent first."""
    from honed.retriever.finetune.pairs import normalise_text

    counts: Counter = Counter()
    first: dict[str, str] = {}
    for table in (store.votes, store.impressions):
        for r in store.rows(_select(table.c.query)):
            key = normalise_text(r["query"])
            if key:
                counts[key] += 1
                first.setdefault(key, r["query"].strip())
    return [(f"log-{_short_hash(k)}", first[k]) for k, _ in counts.most_common(limit)]


def synthetic_queries(path: str | os.PathLike) -> list[dict]:
    """Synthetic pairs (``honed data synth`` output) as queries awaiting review, each with its source passage."""
    from honed.retriever.finetune.pairs import read_pairs

    out = []
    for p in read_pairs(path):
        qid = p.query_id or f"syn-{_short_hash(p.query + (p.positive_id or ''))}"
        out.append({"query_id": qid, "text": p.query, "positive_id": p.positive_id, "positive_text": p.positive})
    return out


def add_queries(store: FeedbackStore, set_name: str, queries: Iterable, source: str) -> int:
    """Add queries (``(id, text)`` tuples or :func:`synthetic_queries` dicts) to a set; returns how many were new."""
    if source not in SOURCES:
        raise HonedError(f"query source must be one of {SOURCES}, got {source!r}")
    check_set_name(set_name)
    rows = []
    for q in queries:
        q = q if isinstance(q, dict) else {"query_id": q[0], "text": q[1]}
        rows.append({"set_name": set_name, "created_at": _now(), "source": source, "positive_id": None,
                     "positive_text": None, **q})
    if not rows:
        return 0
    before = len(set_queries(store, set_name))
    store.write(lambda conn: conn.execute(store.insert_ignore(store.annotation_queries), rows))
    return len(set_queries(store, set_name)) - before


def set_queries(store: FeedbackStore, set_name: str) -> list[dict]:
    """The set's queries in the order they were added."""
    t = store.annotation_queries
    return store.rows(t.select().where(t.c.set_name == set_name).order_by(t.c.id))


def check_set_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise HonedError(f"--set {name!r}: a set name holds letters, digits, '.', '_' and '-' (up to 100)")
    return name


# -- pooling ---------------------------------------------------------------------------------------
def pool_query(rankings: dict[str, list[str]], depth: int, seed: str) -> list[tuple[str, list[str]]]:
    """The union of every system's top-`depth` doc ids, shuffled by `seed`: [(doc id, systems that found it)]."""
    pool: dict[str, list[str]] = {}
    for name in sorted(rankings):
        for doc_id in rankings[name][:depth]:
            pool.setdefault(doc_id, []).append(name)
    order = sorted(pool)
    random.Random(seed).shuffle(order)   # a fixed shuffle: ranks and system names must not show
    return [(d, pool[d]) for d in order]


def save_pool(store: FeedbackStore, set_name: str, query_id: str, pool: list[PooledPassage],
              depth: int | None = None) -> None:
    rows = [{"set_name": set_name, "query_id": query_id, "doc_id": p.doc_id, "position": i, "text": p.text,
             "systems": json.dumps(p.systems), "depth": depth} for i, p in enumerate(pool)]
    if rows:   # the first writer wins: two annotators opening one query at once get the same pool
        store.write(lambda conn: conn.execute(store.insert_ignore(store.annotation_pool), rows))


def get_pool(store: FeedbackStore, set_name: str, query_id: str) -> list[PooledPassage]:
    t = store.annotation_pool
    rows = store.rows(t.select().where((t.c.set_name == set_name) & (t.c.query_id == query_id))
                      .order_by(t.c.position))
    return [PooledPassage(r["doc_id"], r["text"], json.loads(r["systems"])) for r in rows]


def ensure_pools(store: FeedbackStore, set_name: str, data: str | os.PathLike, systems: list[str],
                 depth: int = 10, index_dir: str | os.PathLike = "indexes") -> int:
    """Pool every query of the set that has none yet, over `data`'s corpus; returns how many were pooled.

    `systems` are ``bm25`` or ``NAME=MODEL`` specs, as ``honed eval beir --system`` takes them;
    dense systems reuse (or build once) a cached index of the corpus.
    """
    from honed.rag_eval.beir_eval import parse_system, system_run
    from honed.retriever.data.beir import BeirDataset, doc_text, read_corpus

    if depth < 1:
        raise HonedError(f"--depth must be ≥ 1, got {depth}")
    if not systems:
        raise HonedError("pooling needs at least one --system (e.g. --system bm25 --system base=minilm)")
    t = store.annotation_pool
    done = {r["query_id"] for r in store.rows(_select(t.c.query_id).where(t.c.set_name == set_name).distinct())}
    reviews = _reviews(store, set_name)
    todo = {q["query_id"]: _query_text(store, set_name, q, reviews) for q in set_queries(store, set_name)
            if q["query_id"] not in done and _accepted(store, set_name, q, reviews)}
    if not todo:
        return 0
    data = Path(data)
    corpus = read_corpus(data / "corpus.jsonl" if data.is_dir() else data)
    ds = BeirDataset(corpus, todo, {}, path=data, split="annotate")
    runs = {}
    for spec in systems:
        sysm = parse_system(spec)
        run, _ = system_run(ds, sysm, depth, Path(index_dir) / f"{data.resolve().name}-annotate-{sysm.name}")
        runs[sysm.name] = {q: sorted(r, key=r.get, reverse=True) for q, r in run.items()}
    for qid in todo:
        pooled = pool_query({name: run.get(qid, []) for name, run in runs.items()}, depth, seed=f"{set_name}:{qid}")
        save_pool(store, set_name, qid, [PooledPassage(d, doc_text(corpus[d]), names) for d, names in pooled],
                  depth=depth)
    return len(todo)


# -- labels ----------------------------------------------------------------------------------------
def record_label(store: FeedbackStore, set_name: str, query_id: str, doc_id: str, annotator: str, grade: int,
                 note: str = "", kind: str = LABEL, edited_text: str | None = None) -> int:
    """Append one label (or an adjudication, or a review of a synthetic query); returns its row id."""
    annotator = (annotator or "").strip()
    if not annotator:
        raise HonedError("an annotator name is needed (who labelled is part of the dataset card)")
    if kind not in (LABEL, ADJUDICATION, REVIEW):
        raise HonedError(f"label kind must be label, adjudication or review, got {kind!r}")
    allowed = (0, 1) if kind == REVIEW else tuple(GRADES)
    if grade not in allowed:
        raise HonedError(f"grade must be one of {allowed}, got {grade!r}")
    row = {"created_at": _now(), "set_name": set_name, "query_id": query_id, "doc_id": doc_id,
           "annotator": annotator, "kind": kind, "grade": int(grade), "note": note or None,
           "edited_text": edited_text}
    t = store.relevance_labels
    return store.write(lambda conn: conn.execute(t.insert().values(**row)).inserted_primary_key[0])


def latest_labels(store: FeedbackStore, set_name: str, kind: str = LABEL) -> dict[tuple[str, str, str], dict]:
    """(query id, doc id, annotator) → the annotator's latest label row of `kind`."""
    t = store.relevance_labels
    latest = {}
    for r in store.rows(t.select().where((t.c.set_name == set_name) & (t.c.kind == kind)).order_by(t.c.id)):
        latest[(r["query_id"], r["doc_id"], r["annotator"])] = r
    return latest


def review_synthetic(store: FeedbackStore, set_name: str, query_id: str, reviewer: str, accept: bool,
                     edited_text: str | None = None, note: str = "") -> int:
    """Accept (optionally with an edited text) or reject a synthetic query awaiting review."""
    return record_label(store, set_name, query_id, "", reviewer, int(accept), note, kind=REVIEW,
                        edited_text=(edited_text or "").strip() or None)


def _reviews(store: FeedbackStore, set_name: str) -> dict[str, dict]:
    return {qid: r for (qid, _, _), r in latest_labels(store, set_name, REVIEW).items()}


def _accepted(store: FeedbackStore, set_name: str, q: dict, reviews: dict | None = None) -> bool:
    """File and log queries are in; a synthetic query only once a reviewer accepted it."""
    if q["source"] != "synthetic":
        return True
    r = (reviews if reviews is not None else _reviews(store, set_name)).get(q["query_id"])
    return bool(r and r["grade"] == 1)


def _query_text(store: FeedbackStore, set_name: str, q: dict, reviews: dict | None = None) -> str:
    r = (reviews if reviews is not None else _reviews(store, set_name)).get(q["query_id"])
    return (r or {}).get("edited_text") or q["text"]


def reviewed_pairs(store: FeedbackStore, set_name: str, eval_data: list[str | os.PathLike] | None = None):
    """Accepted synthetic queries (as edited) with their source passage as training pairs, leak-guarded.

    Returns (pairs, counts): queries of an eval set and its judged passages are dropped
    (:func:`~retriever.finetune.pairs.drop_frozen`), and so are the set's own judged passages.
    """
    from honed.retriever.finetune.pairs import FrozenEvalSet, Pair, drop_frozen, frozen_eval_set, normalise_text

    reviews = _reviews(store, set_name)
    pairs, rejected, pending = [], 0, 0
    for q in set_queries(store, set_name):
        if q["source"] != "synthetic":
            continue
        r = reviews.get(q["query_id"])
        if r is None:
            pending += 1
        elif r["grade"] == 0:
            rejected += 1
        else:
            pairs.append(Pair(_query_text(store, set_name, q, reviews), q["positive_text"], q["query_id"],
                              q["positive_id"], source="synthetic-reviewed"))
    # the eval sets given, plus this set's own eval queries and judged passages
    given = frozen_eval_set(tuple(str(d) for d in eval_data or ()))
    judged = {d for (_, d, _) in latest_labels(store, set_name)}
    own_queries = {normalise_text(_query_text(store, set_name, q, reviews)) for q in set_queries(store, set_name)
                   if q["source"] != "synthetic"}
    frozen = FrozenEvalSet(given.queries | own_queries, given.doc_ids | judged, given.doc_texts)
    kept, stats = drop_frozen(pairs, frozen)
    return kept, {"accepted": len(pairs), "rejected": rejected, "pending_review": pending, **stats,
                  "pairs": len(kept)}


# -- agreement, adjudication, final labels -----------------------------------------------------------
def label_matrix(store: FeedbackStore, set_name: str) -> dict[tuple[str, str], dict[str, int]]:
    """(query id, doc id) → {annotator: grade}: the latest label of every annotator."""
    items: dict[tuple[str, str], dict[str, int]] = {}
    for (qid, did, who), r in latest_labels(store, set_name).items():
        items.setdefault((qid, did), {})[who] = r["grade"]
    return items


def cohen_kappa(a: list[int], b: list[int]) -> float | None:
    """Cohen's kappa of two raters over the same items (sklearn); None when it is undefined (one category)."""
    from sklearn.metrics import cohen_kappa_score

    if not a or len(set(a) | set(b)) < 2:
        return None
    return float(cohen_kappa_score(a, b, labels=sorted(GRADES)))


def fleiss_kappa(ratings: list[list[int]], categories: Iterable[int] = tuple(GRADES)) -> float | None:
    """Fleiss' kappa for items each rated by the same number of raters (≥ 2).

    Written out (Fleiss 1971): scikit-learn has only Cohen's kappa, and statsmodels,
    which has this formula, would be a dependency for ten lines.
    """
    cats = list(categories)
    ratings = [r for r in ratings if len(r) >= 2]
    if not ratings or len({len(r) for r in ratings}) != 1:
        return None
    n, m = len(ratings[0]), len(ratings)
    counts = [[r.count(c) for c in cats] for r in ratings]
    p_j = [sum(row[j] for row in counts) / (m * n) for j in range(len(cats))]
    p_i = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts]
    p_bar, p_e = sum(p_i) / m, sum(p * p for p in p_j)
    if p_e >= 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


def agreement(store: FeedbackStore, set_name: str) -> dict:
    """Inter-annotator agreement with counts: pairwise Cohen's kappa (and raw agreement), Fleiss' kappa.

    Kappa is computed on the 0–3 grades and, as most relevance sets are used, on
    binary relevance (grade ≥ 2).
    """
    items = label_matrix(store, set_name)
    annotators = sorted({w for v in items.values() for w in v})
    pairs = []
    for a, b in combinations(annotators, 2):
        both = [(v[a], v[b]) for v in items.values() if a in v and b in v]
        ga, gb = [x for x, _ in both], [y for _, y in both]
        pairs.append({"annotators": [a, b], "items": len(both),
                      "agreement": round(sum(x == y for x, y in both) / len(both), 4) if both else None,
                      "kappa": _round(cohen_kappa(ga, gb)),
                      "kappa_binary": _round(cohen_kappa([int(x >= 2) for x in ga], [int(y >= 2) for y in gb]))})
    multi = [v for v in items.values() if len(v) >= 2]
    n_raters = Counter(len(v) for v in multi).most_common(1)[0][0] if multi else 0
    same_n = [list(v.values()) for v in multi if len(v) == n_raters]
    return {"annotators": annotators, "items": len(items), "items_multiply_labelled": len(multi),
            "labels": sum(len(v) for v in items.values()), "pairs": pairs,
            "fleiss_kappa": _round(fleiss_kappa(same_n)),
            "fleiss_items": len(same_n), "fleiss_raters": n_raters}


def disagreements(store: FeedbackStore, set_name: str) -> list[dict]:
    """Items whose annotators gave different grades, with any adjudication made so far."""
    adj = {(q, d): r for (q, d, _), r in latest_labels(store, set_name, ADJUDICATION).items()}
    texts = _pool_texts(store, set_name)
    queries = {q["query_id"]: q["text"] for q in set_queries(store, set_name)}
    out = []
    for (qid, did), grades in sorted(label_matrix(store, set_name).items()):
        if len(set(grades.values())) > 1:
            a = adj.get((qid, did))
            out.append({"query_id": qid, "query": queries.get(qid, ""), "doc_id": did, "text": texts.get((qid, did), ""),
                        "grades": grades, "adjudicated": a["grade"] if a else None,
                        "adjudicator": a["annotator"] if a else None})
    return out


def final_qrels(store: FeedbackStore, set_name: str) -> tuple[dict[str, dict[str, int]], dict]:
    """One grade per judged (query, passage) and how it was reached.

    An adjudication wins; otherwise a unanimous grade, else the majority; a tie
    with no adjudication takes the lower grade (a conservative judgement) and is
    counted as unresolved.
    """
    adj = {(q, d): r["grade"] for (q, d, _), r in latest_labels(store, set_name, ADJUDICATION).items()}
    qrels: dict[str, dict[str, int]] = {}
    how = Counter()
    for (qid, did), grades in label_matrix(store, set_name).items():
        votes = Counter(grades.values()).most_common()
        if (qid, did) in adj:
            g, kind = adj[(qid, did)], "adjudicated"
        elif len(votes) == 1:
            g, kind = votes[0][0], "unanimous" if len(grades) > 1 else "single"
        elif votes[0][1] > votes[1][1]:
            g, kind = votes[0][0], "majority"
        else:
            g, kind = min(k for k, c in votes if c == votes[0][1]), "unresolved_tie"
        qrels.setdefault(qid, {})[did] = g
        how[kind] += 1
    return qrels, dict(how)


def progress(store: FeedbackStore, set_name: str, annotator: str) -> dict[str, tuple[int, int]]:
    """query id → (passages this annotator labelled, passages in the pool)."""
    t = store.annotation_pool
    sizes = Counter(r["query_id"] for r in store.rows(_select(t.c.query_id).where(t.c.set_name == set_name)))
    done = Counter(q for (q, _, who) in latest_labels(store, set_name) if who == annotator)
    return {q: (done.get(q, 0), n) for q, n in sizes.items()}


# -- export ----------------------------------------------------------------------------------------
def export_eval_set(store: FeedbackStore, set_name: str, corpus: str | os.PathLike, out_root: str | os.PathLike,
                    pool_depth: int | str | None = None, min_annotators: int = 1) -> Path:
    """Write the set's labels as a new BEIR version ``out_root/vN`` with a dataset card; returns its folder.

    `corpus` is the BEIR folder the systems searched (its ``corpus.jsonl`` is copied, so
    the version evaluates on its own). Queries with fewer than `min_annotators` annotators
    are left out and counted.
    """
    from honed.retriever.atomic import atomic_dir
    from honed.retriever.data.beir import read_corpus

    corpus_dir = Path(corpus)
    corpus_file = corpus_dir / "corpus.jsonl" if corpus_dir.is_dir() else corpus_dir
    if not corpus_file.is_file():
        raise HonedError(f"--data {corpus}: no corpus.jsonl")
    qrels, how = final_qrels(store, set_name)
    items = label_matrix(store, set_name)
    per_query_annotators = {}
    for (qid, _), grades in items.items():
        per_query_annotators.setdefault(qid, set()).update(grades)
    reviews = _reviews(store, set_name)
    queries = {q["query_id"]: _query_text(store, set_name, q, reviews) for q in set_queries(store, set_name)}
    keep = sorted(q for q in qrels if q in queries and len(per_query_annotators.get(q, ())) >= min_annotators)
    if not keep:
        raise HonedError(f"set {set_name!r}: no query has labels from {min_annotators} annotator(s) yet; "
                         "nothing to export")
    if not any(g >= 1 for q in keep for g in qrels[q].values()):
        raise HonedError(f"set {set_name!r}: every label is 0 (not relevant); an eval set needs relevant passages")
    docs = read_corpus(corpus_file)
    missing = sorted({d for q in keep for d in qrels[q] if d not in docs})
    if missing:
        raise HonedError(f"--data {corpus}: {len(missing)} judged passage(s) are not in its corpus "
                         f"(e.g. {missing[0]!r}); export against the corpus the systems searched")
    if pool_depth is None:   # what pooling recorded (several depths if the set was pooled more than once)
        t = store.annotation_pool
        depths = sorted({r["depth"] for r in store.rows(_select(t.c.depth).where(t.c.set_name == set_name))
                         if r["depth"] is not None})
        pool_depth = depths[-1] if len(depths) == 1 else (", ".join(map(str, depths)) or None)
    out_root = Path(out_root)
    version = 1 + max([int(p.name[1:]) for p in out_root.glob("v*") if p.name[1:].isdigit()] or [0])
    out = out_root / f"v{version}"
    ag = agreement(store, set_name)
    labels = latest_labels(store, set_name)
    times = sorted(r["created_at"] for r in labels.values())
    card = {"schema": "honed.eval-set/1", "name": set_name, "version": version,
            "created": _now(), "corpus": str(corpus_file), "queries": len(keep),
            "judged_passages": sum(len(qrels[q]) for q in keep),
            "relevant_passages": sum(1 for q in keep for g in qrels[q].values() if g >= 1),
            "grades": GRADES, "annotators": ag["annotators"], "labels": ag["labels"],
            "labelled_from": times[0] if times else None, "labelled_to": times[-1] if times else None,
            "agreement": ag, "resolution": how, "pool_depth": pool_depth,
            "left_out_queries": len(qrels) - len(keep), "min_annotators": min_annotators,
            "leak_guard": "A frozen eval set: pass this folder to `honed finetune --frozen-eval` and "
                          "`honed feedback export --eval-data`; its queries and judged passages never enter training"}
    with atomic_dir(out, "eval-set") as tmp:
        import shutil

        shutil.copyfile(corpus_file, tmp / "corpus.jsonl")
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in keep:
                f.write(json.dumps({"_id": q, "text": queries[q]}, ensure_ascii=False) + "\n")
        (tmp / "qrels").mkdir()
        with open(tmp / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in keep:
                for d, g in sorted(qrels[q].items()):
                    f.write(f"{q}\t{d}\t{g}\n")
        (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(dataset_card_md(card), encoding="utf-8")
    return out


# -- answers: human faithfulness labels, the judge's calibration set ----------------------------------
def answer_items(reports: list[str | os.PathLike]) -> list[dict]:
    """(question, contexts, answer) items to label, from RAG reports (``honed eval rag``) or calibration files.

    A ``.jsonl`` file is read as a calibration set (:func:`honed.rag_eval.calibration.read_calibration`'s
    format, labels ignored) to label again; anything else as a RAG ``report.json``.
    """
    from honed.retriever.atomic import read_json

    items = []
    for path in map(Path, reports):
        if path.suffix == ".jsonl":
            from honed.rag_eval.calibration import read_calibration

            items += [{k: it[k] for k in ("item_id", "question", "contexts", "answer")}
                      for it in read_calibration(path)]
            continue
        doc = read_json(path)
        if doc.get("kind") != "rag":
            raise HonedError(f"--answers {path}: not a RAG report from `honed eval rag`")
        for name, sd in doc.get("systems", {}).items():
            for s in sd.get("samples", []):
                if "contexts" not in s:
                    raise HonedError(f"--answers {path}: written by an older honed without the contexts; "
                                     "rerun `honed eval rag`")
                items.append({"item_id": f"{path.parent.name}:{name}:{s['query_id']}", "question": s["query"],
                              "contexts": s["contexts"], "answer": s["answer"]})
    return items


def record_answer_label(store: FeedbackStore, set_name: str, item: dict, annotator: str, faithful: int,
                        note: str = "") -> int:
    """Append one human faithfulness label (1: every claim is supported by the contexts, 0: not)."""
    if not (annotator or "").strip():
        raise HonedError("an annotator name is needed (who labelled is part of the calibration card)")
    if faithful not in (0, 1):
        raise HonedError(f"faithful must be 0 or 1, got {faithful!r}")
    row = {"created_at": _now(), "set_name": set_name, "item_id": item["item_id"], "question": item["question"],
           "contexts": json.dumps(item["contexts"], ensure_ascii=False), "answer": item["answer"],
           "annotator": annotator.strip(), "faithful": int(faithful), "note": note or None}
    t = store.answer_labels
    return store.write(lambda conn: conn.execute(t.insert().values(**row)).inserted_primary_key[0])


def _answer_labels(store: FeedbackStore, set_name: str) -> dict[tuple[str, str], dict]:
    t = store.answer_labels
    latest = {}
    for r in store.rows(t.select().where(t.c.set_name == set_name).order_by(t.c.id)):
        latest[(r["item_id"], r["annotator"])] = r
    return latest


def labelled_answers(store: FeedbackStore, set_name: str, annotator: str) -> set[str]:
    return {item for (item, who) in _answer_labels(store, set_name) if who == annotator}


def export_calibration(store: FeedbackStore, set_name: str, out: str | os.PathLike) -> Path:
    """Write the answer labels as a calibration JSONL (majority label; ties left out) beside a card; returns it."""
    from honed.retriever.atomic import atomic_write_text

    out = Path(out)
    if out.exists():
        raise HonedError(f"{out}: exists; choose a new file (a calibration set is never overwritten)")
    per: dict[str, dict] = {}
    for (item, who), r in _answer_labels(store, set_name).items():
        e = per.setdefault(item, {"item_id": item, "question": r["question"], "contexts": json.loads(r["contexts"]),
                                  "answer": r["answer"], "labels": {}})
        e["labels"][who] = r["faithful"]
    lines, ties = [], 0
    for e in per.values():
        votes = Counter(e["labels"].values())
        if votes[0] == votes[1]:
            ties += 1
            continue
        e["faithful"] = int(votes[1] > votes[0])
        lines.append(json.dumps(e, ensure_ascii=False))
    if not lines:
        raise HonedError(f"set {set_name!r}: no labelled answers to export" + (f" ({ties} ties)" if ties else ""))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def dataset_card_md(card: dict) -> str:
    ag = card["agreement"]
    lines = [f"# {card['name']} v{card['version']}: a human-labelled evaluation set", "",
             f"Exported by `honed annotate export` on {card['created']} from the labels in the feedback store.", "",
             f"- **Queries**: {card['queries']} ({card['left_out_queries']} with fewer than "
             f"{card['min_annotators']} annotator(s) left out)",
             f"- **Judged passages**: {card['judged_passages']} ({card['relevant_passages']} with grade ≥ 1)",
             f"- **Pooling**: top-{card['pool_depth'] or '?'} of every system, de-duplicated, shuffled, system "
             "names hidden",
             "- **Grades**: " + ", ".join(f"{g} {name}" for g, name in card["grades"].items()),
             f"- **Annotators**: {', '.join(card['annotators'])} ({card['labels']} labels, "
             f"{card['labelled_from']} to {card['labelled_to']})",
             f"- **Resolution**: {', '.join(f'{k} {v}' for k, v in sorted(card['resolution'].items()))}",
             f"- **Corpus**: copied from `{card['corpus']}`", "", "## Agreement", ""]
    if ag["pairs"]:
        lines += ["| annotators | items | raw agreement | Cohen's kappa (0–3) | kappa (grade ≥ 2) |",
                  "|---|---:|---:|---:|---:|"]
        for p in ag["pairs"]:
            lines.append(f"| {' / '.join(p['annotators'])} | {p['items']} | {_fmt(p['agreement'])} | "
                         f"{_fmt(p['kappa'])} | {_fmt(p['kappa_binary'])} |")
        lines += ["", f"Fleiss' kappa: {_fmt(ag['fleiss_kappa'])} over {ag['fleiss_items']} items with "
                      f"{ag['fleiss_raters']} raters each."]
    else:
        lines.append("One annotator: no agreement to report.")
    lines += ["", "## Leak guard", "", card["leak_guard"] + ".", ""]
    return "\n".join(lines)


def _pool_texts(store: FeedbackStore, set_name: str) -> dict[tuple[str, str], str]:
    t = store.annotation_pool
    return {(r["query_id"], r["doc_id"]): r["text"] for r in store.rows(t.select().where(t.c.set_name == set_name))}


def _select(*cols):
    import sqlalchemy as sa

    return sa.select(*cols)


def _round(x):
    return None if x is None else round(x, 4)


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _short_hash(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:10]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
