"""Load and write BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/{split}.tsv).

beir's own ``GenericDataLoader`` silently skips or crashes on bad lines; this
loader is written by hand so every problem is reported as ``file:line: what``
before any model time is spent.

A dataset folder is either a BEIR folder or a folder whose ``{split}/``
subfolder is one (datasets split by source document, like cuad-clauses, keep a
corpus per split so no test passage was seen in training).

Example:
    >>> from honed.retriever.data import load_beir
    >>> ds = load_beir("../shared/datasets/scifact", split="test")   # doctest: +SKIP
    >>> len(ds.queries), len(ds.corpus)
    (300, 5183)
"""
from __future__ import annotations

import json
import os
import re
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
    negative_grades: int = 0          # qrels lines with a grade < 0, read as non-relevant (0)
    # query id → the query's "metadata" object, where queries.jsonl has one (e.g. a reference "answer")
    query_metadata: dict[str, dict] = field(default_factory=dict)

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


MAX_ID_LENGTH = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_id(value, where: str, what: str = "id") -> str:
    """An id as a string; a NUL or other control character, or an empty or over-long id, is a DataError.

    trec_eval (under pytrec-eval) reads ids as C strings, so an id with a NUL is
    cut short and silently matched to the wrong judgements.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: {what} must be a string, got {type(value).__name__}")
    s = str(value)
    if not s or not s.strip():
        raise DataError(f"{where}: {what} is empty")
    if len(s) > MAX_ID_LENGTH:
        raise DataError(f"{where}: {what} is {len(s)} characters long (limit {MAX_ID_LENGTH})")
    bad = _CONTROL.search(s)
    if bad:
        raise DataError(f"{where}: {what} {s[:40]!r} holds control character U+{ord(bad.group()):04X}")
    return s


def _lines(path: str | os.PathLike):
    """(line number, text) of a UTF-8 file; a leading BOM (Excel exports) is skipped."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            yield from enumerate(f, 1)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None


def iter_jsonl(path: str | os.PathLike):
    """Yield (line number, object) for each non-blank line; bad JSON or a non-object names file:line."""
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise DataError(f"{path}:{n}: JSON nested too deeply") from None
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
        did = check_id(obj["_id"], f"{path}:{n}", "_id")
        if did in corpus:
            raise DataError(f"{path}:{n}: duplicate _id {did!r}")
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}:{n}: \"text\" must be a string")
        title = obj.get("title")
        if title is not None and not isinstance(title, str):
            raise DataError(f"{path}:{n}: \"title\" must be a string")
        doc = {"title": title or "", "text": text}
        if isinstance(obj.get("metadata"), dict):
            doc["metadata"] = obj["metadata"]
        corpus[did] = doc
    if not corpus:
        raise DataError(f"{path}: corpus is empty")
    if not any(d["text"].strip() or d["title"].strip() for d in corpus.values()):
        raise DataError(f"{path}: every document's title and text is empty: nothing to index")
    return corpus


def read_queries(path: str | os.PathLike, metadata: dict[str, dict] | None = None) -> dict[str, str]:
    """Read queries.jsonl into ``{id: text}``; each query's ``metadata`` object goes into `metadata` if given."""
    path = Path(path)
    queries: dict[str, str] = {}
    for n, obj in _read_jsonl(path):
        qid = check_id(obj["_id"], f"{path}:{n}", "_id")
        if qid in queries:
            raise DataError(f"{path}:{n}: duplicate _id {qid!r}")
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{n}: query \"text\" must be a non-empty string")
        queries[qid] = text
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise DataError(f"{path}:{n}: query \"metadata\" must be a JSON object")
        if meta and metadata is not None:
            metadata[qid] = meta
    return queries


_GRADE = re.compile(r"[+-]?\d+(\.0*)?")
MAX_GRADE = 2**31 - 1        # trec_eval stores grades as C ints


def read_qrels(path: str | os.PathLike, stats: dict | None = None) -> dict[str, dict[str, int]]:
    """Read a TREC-style qrels TSV (``query-id corpus-id score``, optional header).

    Grades are integers; a negative grade is read as non-relevant (0), as
    trec_eval reads it, and counted in ``stats["negative_grades"]``. A pair
    judged twice with different grades is an error naming both lines.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], tuple[int, int]] = {}
    negatives = 0
    for n, line in _lines(path):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if n == 1 and cols[0] == "query-id":
            continue
        if len(cols) != 3:
            raise DataError(f"{path}:{n}: expected 3 tab-separated columns, got {len(cols)}")
        qid = check_id(cols[0], f"{path}:{n}", "query-id")
        did = check_id(cols[1], f"{path}:{n}", "corpus-id")
        score = cols[2].strip()
        if not _GRADE.fullmatch(score):
            try:
                float(score)
            except ValueError:
                raise DataError(f"{path}:{n}: score {score!r} is not a number") from None
            raise DataError(f"{path}:{n}: score {score!r} is not an integer grade (graded relevance: 0, 1, 2, …)")
        grade = int(score.split(".")[0])
        if abs(grade) > MAX_GRADE:
            raise DataError(f"{path}:{n}: score {score!r} is out of range (|grade| ≤ {MAX_GRADE})")
        if grade < 0:
            negatives += 1
            grade = 0
        seen = first_line.get((qid, did))
        if seen is not None and seen[1] != grade:
            raise DataError(f"{path}:{n}: ({qid}, {did}) is judged {grade} here and {seen[1]} on line {seen[0]}")
        first_line.setdefault((qid, did), (n, grade))
        qrels.setdefault(qid, {})[did] = grade
    if not qrels:
        raise DataError(f"{path}: no judgements")
    if not any(g > 0 for rel in qrels.values() for g in rel.values()):
        raise DataError(f"{path}: no relevant judgement (every grade is ≤ 0): every metric would be 0")
    if stats is not None:
        stats["negative_grades"] = negatives
    return qrels


def load_beir(path: str | os.PathLike, split: str = "test") -> BeirDataset:
    """Load one split of a BEIR dataset folder and check that every judgement resolves."""
    root = dataset_root(path, split)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(f"{qrels_path}: no such split (have: {', '.join(have) or 'none'})")
    corpus = read_corpus(root / "corpus.jsonl")
    all_meta: dict[str, dict] = {}
    all_queries = read_queries(root / "queries.jsonl", all_meta)
    stats: dict = {}
    qrels = read_qrels(qrels_path, stats)
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
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, path=root, split=split,
                       negative_grades=stats["negative_grades"],
                       query_metadata={q: all_meta[q] for q in queries if q in all_meta})


def write_beir(out: str | os.PathLike, corpus: dict[str, dict], queries: dict[str, str],
               qrels: dict[str, dict[str, dict[str, int]]], query_metadata: dict[str, dict] | None = None) -> None:
    """Write a BEIR folder; `qrels` maps split name → qrels; `query_metadata` (query id → object, such as
    ``{"category": …}``) goes to each query's ``metadata``. Files are written atomically."""
    out = Path(out)
    lines = []
    for did, doc in corpus.items():
        row = {"_id": did, "title": doc.get("title", ""), "text": doc["text"]}
        if doc.get("metadata"):
            row["metadata"] = doc["metadata"]
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    atomic_write_text(out / "corpus.jsonl", "\n".join(lines) + "\n")
    meta = query_metadata or {}
    atomic_write_text(out / "queries.jsonl", "\n".join(
        json.dumps({"_id": q, "text": t, **({"metadata": meta[q]} if meta.get(q) else {})}, ensure_ascii=False)
        for q, t in queries.items()) + "\n")
    for split, rel in qrels.items():
        rows = ["query-id\tcorpus-id\tscore"] + [
            f"{q}\t{d}\t{g}" for q, docs in rel.items() for d, g in docs.items()]
        atomic_write_text(out / "qrels" / f"{split}.tsv", "\n".join(rows) + "\n")
