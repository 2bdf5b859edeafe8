"""Add, replace and delete documents of a retriever artifact in place, atomically.

An update never rewrites what readers are using. Under SQLite's write lock it
writes the next generation's FAISS file beside the current one (and, when the
artifact has one, the next BM25 folder, indexed again from the live rows: bm25s
cannot add or remove a document in place), then changes the rows and names the
new files in one SQLite transaction. A kill before that
commit leaves the previous generation (file and rows) as it was; a kill after it
leaves the new one. The old FAISS file is removed once nothing points to it, and
a stray file from a killed update is removed by the next one.

Document ids are stable: a replaced (upserted) document keeps its id and gets a
new FAISS label; labels are never reused, so a deleted document cannot return.

Example:
    >>> from honed.retriever.index import load_index
    >>> from honed.retriever.updates import add_documents, delete_documents
    >>> idx = load_index("indexes/cuad-minilm")                                           # doctest: +SKIP
    >>> add_documents(idx, {"new-1": {"text": "Either party may terminate on notice."}})   # doctest: +SKIP
    {'added': 1, 'replaced': 0}
    >>> delete_documents(idx, ["new-1"])                                                  # doctest: +SKIP
    {'deleted': 1, 'missing': []}
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from .atomic import sha256_file
from .bm25 import bm25_digest
from .data.beir import doc_text
from .errors import HonedError
from .index import Index, _read_faiss, check_compatible, corpus_docs
from .routing import check_routing


def add_documents(index: Index, docs: dict[str, dict] | list[dict], encoder=None, upsert: bool = False,
                  vectors: np.ndarray | None = None, show_progress: bool = False) -> dict:
    """Embed and add documents; with `upsert`, an existing id is replaced (else refused).

    `docs` is ``{id: {"text", "title"?, "metadata"?}}`` or a list of dicts with
    an ``id``. `vectors` skips encoding (unit vectors from the artifact's model,
    as LlamaIndex passes them). Returns counts of added and replaced documents.
    """
    if isinstance(docs, dict):
        rows = corpus_docs(docs)
    else:
        rows = corpus_docs({_doc_id(d, i): d for i, d in enumerate(docs)})
        for r, d in zip(rows, docs):
            r["ref_doc_id"] = d.get("ref_doc_id")
    if len({r["id"] for r in rows}) != len(rows):
        seen = set()
        dup = next(r["id"] for r in rows if r["id"] in seen or seen.add(r["id"]))
        raise HonedError(f"document id {dup!r} appears twice in the documents to add")
    if not rows:
        return {"added": 0, "replaced": 0}
    _check_bm25_extra(index)   # before the encoding, not after it
    if vectors is None:
        from .encoder import load_encoder

        encoder = encoder or load_encoder(index.model_dir)
        check_compatible(index, encoder)
        check_routing(index, encoder)
        vectors = encoder.encode_documents([doc_text(r) for r in rows], show_progress=show_progress)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(rows), index.manifest["dim"]):
        raise HonedError(f"vectors have shape {vectors.shape}, expected ({len(rows)}, {index.manifest['dim']})")
    with _writing(index) as fi:
        existing = index.store.positions_of([r["id"] for r in rows])
        if existing and not upsert:
            raise HonedError(f"{len(existing)} of the documents are already in {index.path} "
                             f"(e.g. {next(iter(existing))!r}); pass upsert=True (--upsert) to replace them")
        _remove(index, fi, list(existing.values()))
        labels = index.store.insert(rows)
        fi.add_with_ids(vectors, np.asarray(labels, dtype=np.int64))
    return {"added": len(rows) - len(existing), "replaced": len(existing)}


def delete_documents(index: Index, ids: Iterable[str]) -> dict:
    """Delete documents by id; ids not in the index are reported, not an error."""
    ids = list(dict.fromkeys(ids))
    with _writing(index) as fi:
        found = index.store.positions_of(ids)
        _remove(index, fi, list(found.values()))
    return {"deleted": len(found), "missing": [i for i in ids if i not in found]}


def delete_ref_doc(index: Index, ref_doc_id: str) -> int:
    """Delete every node of one LlamaIndex source document; returns how many."""
    with _writing(index) as fi:
        labels = index.store.positions_of_ref(ref_doc_id)
        _remove(index, fi, labels)
    return len(labels)


def _doc_id(d: dict, i: int) -> str:
    if not isinstance(d, dict) or "id" not in d:
        raise HonedError(f"document {i}: needs an \"id\"")
    return d["id"]


def _remove(index: Index, fi, labels: list[int]) -> None:
    import faiss

    if not labels:
        return
    if index.manifest["faiss"].get("removes", True):
        fi.remove_ids(faiss.IDSelectorBatch(np.asarray(labels, dtype=np.int64)))
    else:   # HNSW cannot remove a vector: mask it in every search instead
        index.store.add_tombstones(labels)
    index.store.delete_positions(labels)


def _check_bm25_extra(index: Index) -> None:
    """An artifact with a BM25 index is updated on both sides or not at all: refuse without bm25s, in one line."""
    if index.bm25 is not None:
        from .extras import require_extra

        require_extra("hybrid", f"updating {index.path} (it carries a BM25 index)")


@contextlib.contextmanager
def _writing(index: Index):
    """Yield a writable copy of the current FAISS index; commit it and the row changes as one generation."""
    _check_bm25_extra(index)
    with index.lock:
        yield from _write_generation(index)


def _write_generation(index: Index):
    import faiss

    store, root = index.store, index.path
    store.conn.execute("BEGIN IMMEDIATE")   # one writer at a time; readers go on with the committed state
    new_path = new_bm25 = None
    try:
        meta = store.meta()
        fi = _read_faiss(root / meta["faiss_file"], mmap=False)
        yield fi
        gen = int(meta["generation"]) + 1
        new_path = root / f"index-{gen}.faiss"
        tmp = root / f".{new_path.name}.{os.getpid()}"
        faiss.write_index(fi, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, new_path)
        lexical = {}
        if meta.get("bm25_dir"):   # the rows this transaction leaves, read through its own connection
            new_bm25 = _write_bm25(store, root / f"bm25-{gen}")
            lexical = {"bm25_dir": new_bm25.name, "bm25_sha256": bm25_digest(new_bm25)}
        store.set_meta({"generation": gen, "faiss_file": new_path.name, "faiss_size": new_path.stat().st_size,
                        "faiss_sha256": sha256_file(new_path), **lexical})
        _remove_strays(root, keep={meta["faiss_file"], new_path.name, meta.get("bm25_dir"),
                                   new_bm25 and new_bm25.name})   # we hold the write lock
        store.conn.execute("COMMIT")
    except BaseException:
        if store.conn.in_transaction:
            store.conn.execute("ROLLBACK")
        if new_path is not None:
            with contextlib.suppress(FileNotFoundError):
                new_path.unlink()
        if new_bm25 is not None:
            shutil.rmtree(new_bm25, ignore_errors=True)
        raise
    with contextlib.suppress(FileNotFoundError):   # readers that opened it keep their mapping
        (root / meta["faiss_file"]).unlink()
    if new_bm25 is not None:   # a reader that loaded it holds its arrays in memory
        from .bm25 import Bm25Index

        shutil.rmtree(root / meta["bm25_dir"], ignore_errors=True)
        index.bm25 = Bm25Index(new_bm25)
    index.faiss_index, index.generation = _reopen(new_path, index), gen
    index.tombstones = store.tombstones()


def _write_bm25(store, folder: Path) -> Path:
    from .bm25 import write_bm25

    shutil.rmtree(folder, ignore_errors=True)   # a killed update's folder of this generation: we hold the lock
    labels, texts = [], []
    for pos, doc in store.iter_docs():
        labels.append(pos)
        texts.append(doc_text(doc))
    return write_bm25(texts, np.asarray(labels, dtype=np.int64), folder)


def _reopen(path: Path, index: Index):
    fi = _read_faiss(path, mmap=True)
    if index.manifest["faiss"]["factory"].startswith("IVF"):
        import faiss

        faiss.extract_index_ivf(fi).nprobe = 16
    return fi


def _remove_strays(root: Path, keep: set[str | None]) -> None:
    """FAISS files and BM25 folders a killed update left behind (only the current and the new ones are in use)."""
    for f in [*root.glob("index-*.faiss"), *root.glob(".index-*.faiss.*")]:
        if f.name not in keep:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
    for d in [*root.glob("bm25-*"), *root.glob(".bm25-*")]:
        if d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
