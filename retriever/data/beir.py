"""Load and write BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/{split}.tsv).

beir's own ``GenericDataLoader`` silently skips or crashes on bad lines; this
loader is written by hand so every problem is reported as ``file:line: what``
before any model time is spent.

A dataset folder is either a BEIR folder or a folder whose ``{split}/``
subfolder is one (datasets split by source document, like cuad-clauses, keep a
corpus per split so no test passage was seen in training).

Example:
    >>> from retriever.data import load_beir
    >>> ds = load_beir("../shared/datasets/scifact", split="test")   # doctest: +SKIP
    >>> len(ds.queries), len(ds.corpus)
    (300, 5183)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import DataError


@dataclass
class BeirDataset:
    """Corpus, queries and relevance judgements of one split."""

    corpus: dict[str, dict]           # doc id → {"title", "text", "metadata"?}
    queries: dict[str, str]           # query id → text (only queries judged in this split)
    qrels: dict[str, dict[str, int]]  # query id → {doc id: grade}
    path: Path = field(default_factory=Path)
    split: str = "test"

    def doc_text(self, doc_id: str) -> str:
        """Title and text joined the way sentence-transformers BEIR models were trained."""
        return doc_text(self.corpus[doc_id])


def doc_text(doc: dict) -> str:
    """``title + " " + text`` (beir's convention), or just text when there is no title."""
    title = (doc.get("title") or "").strip()
    return f"{title} {doc.get('text', '')}".strip() if title else doc.get("text", "")


def dataset_root(path: str | os.PathLike, split: str) -> Path:
    """The BEIR folder holding `split`: `path` itself, or `path/split` for per-split corpora."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{p}: dataset folder does not exist")
    if (p / "corpus.jsonl").exists():
        return p
    if (p / split / "corpus.jsonl").exists():
        return p / split
    raise DataError(f"{p}: no corpus.jsonl (nor {split}/corpus.jsonl)")


def iter_jsonl(path: str | os.PathLike):
    """Yield (line number, object) for each non-blank line; bad JSON or a non-object names file:line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: expected a JSON object")
            yield n, obj


def _read_jsonl(path: Path):
    """BEIR records: like :func:`iter_jsonl`, and every record needs an ``_id``."""
    for n, obj in iter_jsonl(path):
        if "_id" not in obj:
            raise DataError(f"{path}:{n}: missing \"_id\"")
        yield n, obj


def read_corpus(path: str | os.PathLike) -> dict[str, dict]:
    """Read corpus.jsonl into ``{id: {"title", "text", "metadata"}}``; validate ids and text."""
    path = Path(path)
    corpus: dict[str, dict] = {}
    for n, obj in _read_jsonl(path):
        did = str(obj["_id"])
        if did in corpus:
            raise DataError(f"{path}:{n}: duplicate _id {did!r}")
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}:{n}: \"text\" must be a string")
        doc = {"title": str(obj.get("title") or ""), "text": text}
        if isinstance(obj.get("metadata"), dict):
            doc["metadata"] = obj["metadata"]
        corpus[did] = doc
    if not corpus:
        raise DataError(f"{path}: corpus is empty")
    return corpus


def read_queries(path: str | os.PathLike) -> dict[str, str]:
    """Read queries.jsonl into ``{id: text}``."""
    path = Path(path)
    queries: dict[str, str] = {}
    for n, obj in _read_jsonl(path):
        qid = str(obj["_id"])
        if qid in queries:
            raise DataError(f"{path}:{n}: duplicate _id {qid!r}")
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{n}: query \"text\" must be a non-empty string")
        queries[qid] = text
    return queries


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read a TREC-style qrels TSV (``query-id corpus-id score``, optional header)."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if n == 1 and cols[0] == "query-id":
                continue
            if len(cols) != 3:
                raise DataError(f"{path}:{n}: expected 3 tab-separated columns, got {len(cols)}")
            qid, did, score = cols
            try:
                grade = int(float(score))
            except ValueError:
                raise DataError(f"{path}:{n}: score {score!r} is not a number") from None
            qrels.setdefault(qid, {})[did] = grade
    if not qrels:
        raise DataError(f"{path}: no judgements")
    return qrels


def load_beir(path: str | os.PathLike, split: str = "test") -> BeirDataset:
    """Load one split of a BEIR dataset folder and check that every judgement resolves."""
    root = dataset_root(path, split)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(f"{qrels_path}: no such split (have: {', '.join(have) or 'none'})")
    corpus = read_corpus(root / "corpus.jsonl")
    all_queries = read_queries(root / "queries.jsonl")
    qrels = read_qrels(qrels_path)
    bad_q = [q for q in qrels if q not in all_queries]
    bad_d = sorted({d for rel in qrels.values() for d in rel if d not in corpus})
    if bad_q or bad_d:
        parts = []
        if bad_q:
            parts.append(f"{len(bad_q)} query ids not in queries.jsonl (e.g. {', '.join(bad_q[:3])})")
        if bad_d:
            parts.append(f"{len(bad_d)} doc ids not in corpus.jsonl (e.g. {', '.join(bad_d[:3])})")
        raise DataError(f"{qrels_path}: " + "; ".join(parts))
    queries = {q: all_queries[q] for q in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, path=root, split=split)


def write_beir(out: str | os.PathLike, corpus: dict[str, dict], queries: dict[str, str],
               qrels: dict[str, dict[str, dict[str, int]]]) -> None:
    """Write a BEIR folder; `qrels` maps split name → qrels. Files are written atomically."""
    out = Path(out)
    lines = []
    for did, doc in corpus.items():
        row = {"_id": did, "title": doc.get("title", ""), "text": doc["text"]}
        if doc.get("metadata"):
            row["metadata"] = doc["metadata"]
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    atomic_write_text(out / "corpus.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(out / "queries.jsonl", "\n".join(
        json.dumps({"_id": q, "text": t}, ensure_ascii=False) for q, t in queries.items()) + "\n")
    for split, rel in qrels.items():
        rows = ["query-id\tcorpus-id\tscore"] + [
            f"{q}\t{d}\t{g}" for q, docs in rel.items() for d, g in docs.items()]
        atomic_write_text(out / "qrels" / f"{split}.tsv", "\n".join(rows) + "\n")
