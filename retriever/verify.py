"""Verify a retriever artifact as a whole: its recorded files, its model, and the store and vectors bound to them.

An artifact has two kinds of parts. The immutable ones (model, manifest) are
listed with their sha256 in ``honed-artifact.json``. The mutable ones (the
document store and the FAISS file of the current generation) change in place,
so the store records, at every generation, the FAISS file's sha256, the
artifact's id, the fingerprint of the model that made its vectors, its
document count and a digest of its rows (:mod:`retriever.store`). Opening an
artifact checks the cheap part of that (:func:`retriever.index.load_index`);
:func:`verify_index` checks all of it:

- ``fast``: every recorded file's sha256, the model's fingerprint recomputed
  from its weights, the store bound to this manifest and model, and the FAISS
  file the store names: seconds, whatever the corpus size;
- ``full``: also every row against the recorded digest, and every live
  document's label against the labels FAISS holds (``honed index verify``,
  and ``honed package`` before it copies anything).

Example:
    >>> from honed.retriever.verify import verify_index
    >>> verify_index("indexes/cuad-minilm")["documents"]          # doctest: +SKIP
    1446
"""
from __future__ import annotations

import os

import numpy as np

from .atomic import read_artifact, verify_artifact
from .errors import HonedError
from .index import STORE_FILE, load_index


def verify_index(path: str | os.PathLike, full: bool = True) -> dict:
    """Check an artifact end to end; return what was checked, or raise a one-line HonedError naming the file."""
    index = load_index(path, mmap=False)   # opening checks the store's binding and its FAISS file
    try:
        return check_index(index, full)
    finally:
        index.store.close()


def check_index(index, full: bool = True) -> dict:
    """:func:`verify_index`'s checks on an index already open (``package`` and ``info`` open it once)."""
    from .models import model_fingerprint

    p, manifest = index.path, index.manifest
    record = read_artifact(p)
    verify_artifact(p)   # a folder without a record passes: the fingerprint below still covers the model
    model_dir = p / manifest["model"]["dir"]
    if not (model_dir / "modules.json").is_file():
        raise HonedError(f"{model_dir}: missing or not a sentence-transformers model folder; the artifact is "
                         "incomplete")
    fp = model_fingerprint(model_dir)
    if fp != manifest["model"]["fingerprint"]:
        raise HonedError(f"{model_dir}: its weights have fingerprint {fp}, the manifest says "
                         f"{manifest['model']['fingerprint']}: the model was changed after the index was built; "
                         "restore it or rebuild the index")
    bound = "artifact_id" in manifest
    checked = ["record" if record else "no record (written before honed recorded files)",
               "model fingerprint", "faiss sha256"]
    if bound:
        checked.append("store bound to manifest and model")
    if full:
        if bound:
            _check_rows(index, index.store.meta())
            checked.append("rows digest")
        live = {pos for (pos,) in index.store.conn.execute("SELECT pos FROM docs")}
        _check_labels(index, live)
        checked.append("faiss labels")
        if index.bm25 is not None:
            _check_bm25_labels(index, live)
            checked.append("bm25 labels")
    return {"path": str(p), "verified": "full" if full else "fast", "documents": len(index),
            "generation": index.generation, "bound": bound, "checked": checked}


def _check_rows(index, meta: dict) -> None:
    got = index.store.rows_digest()
    if got != meta.get("rows_digest"):
        raise HonedError(f"{index.path / STORE_FILE}: its rows do not match the digest recorded at generation "
                         f"{index.generation}: documents were edited outside honed; rebuild or repackage the index")


def _check_labels(index, want: set[int]) -> None:
    """Every live document (`want`: their labels) has a vector in FAISS under its label, and FAISS holds no
    label without one."""
    have = set(_faiss_labels(index.faiss_index).tolist()) - set(index.tombstones.tolist())
    if want != have:
        missing, extra = len(want - have), len(have - want)
        raise HonedError(f"{index.path / STORE_FILE}: {missing} documents have no vector in "
                         f"{index.store.meta()['faiss_file']} and {extra} vectors have no document; rebuild the index")


def _check_bm25_labels(index, want: set[int]) -> None:
    """The BM25 index holds exactly the live documents (its sha256 and count were checked on open)."""
    if set(index.bm25.labels.tolist()) != want:
        raise HonedError(f"{index.bm25.folder}: does not index the documents of {STORE_FILE}; rebuild the index")


def _faiss_labels(fi) -> np.ndarray:
    """The labels a FAISS index holds: its id map (IDMap2) or its inverted lists (IVF)."""
    import faiss

    fi = faiss.downcast_index(fi)
    if hasattr(fi, "id_map"):
        return faiss.vector_to_array(fi.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(fi)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(ivf.nlist) if lists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
