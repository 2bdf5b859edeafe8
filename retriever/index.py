"""Build, save and load a FAISS index with its doc store and manifest.

An index folder holds three files, none of them pickle:

- ``index.faiss``  FAISS's own binary format (``faiss.write_index``)
- ``docs.jsonl``   one ``{"id", "title", "text", "metadata"}`` per vector, in vector order
- ``manifest.json`` model identity (fingerprint, dim), metric, FAISS factory, counts, build params

The folder is written beside its destination and renamed into place, so a
crash mid-build leaves the previous index loadable.

Example:
    >>> from retriever.index import build_index, load_index
    >>> build_index("minilm", "../shared/datasets/scifact", "indexes/scifact")  # doctest: +SKIP
    >>> idx = load_index("indexes/scifact")                                      # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, check_writable, recover_swap, verify_artifact
from .data.beir import dataset_root, doc_text, read_corpus
from .errors import HonedError, IndexMismatchError

MANIFEST_VERSION = 1
FAISS_KINDS = ("flat", "hnsw", "ivfpq")


@dataclass
class Index:
    """A loaded index: FAISS vectors + the docs they stand for + how they were made."""

    faiss_index: object
    docs: list[dict]
    manifest: dict
    path: Path | None = None

    @property
    def doc_ids(self) -> list[str]:
        return [d["id"] for d in self.docs]

    def __len__(self) -> int:
        return len(self.docs)


def load_corpus(source: str | os.PathLike | dict, split: str = "test") -> dict[str, dict]:
    """A corpus dict from a dict, a ``corpus.jsonl`` file, or a (per-split) BEIR folder."""
    if isinstance(source, dict):
        return source
    p = Path(source)
    if p.is_file():
        return read_corpus(p)
    return read_corpus(dataset_root(p, split) / "corpus.jsonl")


def faiss_factory(kind: str, n: int, dim: int) -> str:
    """The FAISS index-factory string for a kind and corpus size.

    flat: exact search. hnsw: graph, no training, ~exact at efSearch 128.
    ivfpq: compressed (dim/8 bytes per vector); needs ≥ 39×nlist training points.
    """
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return "HNSW32,Flat"
    if kind == "ivfpq":
        if n < 10_000:
            raise HonedError(f"--faiss ivfpq needs ≥ 10,000 documents to train its codebooks "
                             f"(corpus has {n:,}); use flat or hnsw")
        nlist = int(min(4 * np.sqrt(n), n / 39))
        m = next(m for m in (dim // 8, dim // 12, dim // 16, dim // 4) if dim % m == 0)
        return f"IVF{nlist},PQ{m}"
    raise HonedError(f"--faiss must be one of {', '.join(FAISS_KINDS)}, got {kind!r}")


def _make_faiss(vectors: np.ndarray, factory: str):
    import faiss

    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    if factory.startswith("HNSW"):
        index.hnsw.efSearch = 128
    return index


def build_index(model, corpus, out: str | os.PathLike, faiss_kind: str = "flat",
                split: str = "test", batch_size: int = 32, show_progress: bool = True,
                force: bool = False) -> Path:
    """Embed a corpus and write an index folder atomically; return its path.

    `model` is a model reference (``"minilm"``, a folder, a hub id) or a loaded
    :class:`~retriever.encoder.Encoder`. `corpus` is a corpus dict, a
    ``corpus.jsonl`` file or a BEIR folder (its `split` corpus when split by document).
    """
    from .encoder import Encoder, load_encoder

    docs_by_id = load_corpus(corpus, split)
    if not docs_by_id:
        raise HonedError("corpus is empty: nothing to index")
    if faiss_kind not in FAISS_KINDS:  # fail before minutes of encoding, not after
        raise HonedError(f"--faiss must be one of {', '.join(FAISS_KINDS)}, got {faiss_kind!r}")
    if batch_size < 1:
        raise HonedError(f"--batch-size must be ≥ 1, got {batch_size}")
    check_writable(out, "index", force)
    enc = model if isinstance(model, Encoder) else load_encoder(model, batch_size=batch_size)
    factory = faiss_factory(faiss_kind, len(docs_by_id), enc.dim)
    ids = list(docs_by_id)
    texts = [doc_text(docs_by_id[i]) for i in ids]
    t0 = time.perf_counter()
    vectors = enc.encode_documents(texts, show_progress=show_progress)
    encode_s = time.perf_counter() - t0
    index = _make_faiss(vectors, factory)

    import faiss

    docs_lines = "\n".join(json.dumps({
        "id": i, "title": docs_by_id[i].get("title", ""), "text": docs_by_id[i]["text"],
        "metadata": docs_by_id[i].get("metadata", {})}, ensure_ascii=False) for i in ids) + "\n"
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": {"ref": enc.ref, "path": enc.path, "fingerprint": enc.fingerprint,
                  "backend": enc.backend, "max_seq_length": enc.max_seq_length},
        "dim": enc.dim,
        "metric": "inner_product",
        "normalized": True,
        "count": len(ids),
        "faiss": {"kind": faiss_kind, "factory": factory, "version": faiss.__version__},
        "docs_sha256": hashlib.sha256(docs_lines.encode()).hexdigest(),
        "build": {"batch_size": enc.batch_size, "encode_seconds": round(encode_s, 2),
                  "docs_per_second": round(len(ids) / max(encode_s, 1e-9), 2)},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_dir(out, kind="index", force=force) as tmp:
        faiss.write_index(index, str(tmp / "index.faiss"))
        (tmp / "docs.jsonl").write_text(docs_lines, encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Path(out)


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check an index folder's manifest.json."""
    p = Path(path)
    mf = p / "manifest.json"
    if not p.exists():
        recover_swap(p)          # a kill mid-swap leaves only the previous index, beside it
    if p.is_file():
        raise HonedError(f"{p}: is a file, not an index folder")
    if not mf.exists():
        raise HonedError(f"{p}: not an index folder (no manifest.json); build one with `honed index build`")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HonedError(f"{mf}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(manifest, dict):
        raise HonedError(f"{mf}: expected a JSON object")
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise HonedError(f"{mf}: manifest_version {manifest.get('manifest_version')!r} is not supported "
                         f"(expected {MANIFEST_VERSION}); rebuild the index")
    for key, typ in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), typ):
            raise HonedError(f"{mf}: key {key!r} is missing or not a {typ.__name__}; rebuild the index")
    for key in ("fingerprint", "ref", "path"):
        if not isinstance(manifest["model"].get(key), str):
            raise HonedError(f"{mf}: key 'model.{key}' is missing or not a string; rebuild the index")
    if not isinstance(manifest["faiss"].get("factory"), str):
        raise HonedError(f"{mf}: key 'faiss.factory' is missing or not a string; rebuild the index")
    return manifest


_MANIFEST_KEYS = {"model": dict, "dim": int, "count": int, "faiss": dict, "docs_sha256": str}


def load_index(path: str | os.PathLike) -> Index:
    """Load an index folder written by :func:`build_index`, checking its parts agree."""
    import faiss

    p = Path(path)
    manifest = read_manifest(p)
    docs_path = p / "docs.jsonl"
    verify_artifact(p)        # size + sha256 of index.faiss and docs.jsonl, as written
    if not docs_path.is_file():
        raise HonedError(f"{docs_path}: missing; rebuild the index")
    raw = docs_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != manifest["docs_sha256"]:
        raise HonedError(f"{docs_path}: contents do not match manifest.json (docs_sha256); rebuild the index")
    docs = _parse_docs(docs_path, raw)
    try:
        index = faiss.read_index(str(p / "index.faiss"))
    except RuntimeError as e:
        raise HonedError(f"{p / 'index.faiss'}: unreadable FAISS index ({str(e).splitlines()[0]})") from None
    if index.ntotal != len(docs) or index.ntotal != manifest["count"]:
        raise HonedError(f"{p}: index.faiss has {index.ntotal} vectors but docs.jsonl has {len(docs)} "
                         f"and manifest says {manifest['count']}; rebuild the index")
    if index.d != manifest["dim"]:
        raise HonedError(f"{p}: index.faiss has dim {index.d}, manifest says {manifest['dim']}")
    if manifest["faiss"]["factory"].startswith("IVF"):
        faiss.extract_index_ivf(index).nprobe = 16
    return Index(faiss_index=index, docs=docs, manifest=manifest, path=p)


def _parse_docs(path: Path, raw: bytes) -> list[dict]:
    docs = []
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line:
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise HonedError(f"{path}:{n}: invalid JSON ({e.msg}); rebuild the index") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not isinstance(doc.get("text"), str):
            raise HonedError(f"{path}:{n}: expected an object with string \"id\" and \"text\"; rebuild the index")
        docs.append(doc)
    return docs


def check_compatible(index: Index, encoder) -> None:
    """Refuse to query an index with a model other than the one that built it."""
    want = index.manifest["model"]["fingerprint"]
    if encoder.dim != index.manifest["dim"]:
        raise IndexMismatchError(
            f"{index.path}: built with {index.manifest['dim']}-d vectors ({index.manifest['model']['ref']}), "
            f"but model {encoder.ref} makes {encoder.dim}-d vectors")
    if encoder.fingerprint != want:
        raise IndexMismatchError(
            f"{index.path}: built with model {index.manifest['model']['ref']} (fingerprint {want}), "
            f"but {encoder.ref} has fingerprint {encoder.fingerprint}; rebuild the index with this model")


def search(index: Index, query_vectors: np.ndarray, k: int = 10,
           allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
    """Top-k (position, score) per query; `allowed` restricts results to those positions.

    Restriction uses FAISS's own ``IDSelectorBatch`` so filtered search is exact
    rather than an over-fetch-and-drop approximation.
    """
    import faiss

    if k < 1:
        raise HonedError(f"top-k must be ≥ 1, got {k}")
    q = np.ascontiguousarray(query_vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    params = None
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=np.int64)
        if allowed.size == 0:
            return [[] for _ in range(len(q))]
        sel = faiss.IDSelectorBatch(allowed)
        factory = index.manifest["faiss"]["factory"]
        if factory.startswith("HNSW"):
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(128, k))
        elif factory.startswith("IVF"):
            params = faiss.SearchParametersIVF(sel=sel, nprobe=16)
        else:
            params = faiss.SearchParameters(sel=sel)
    k_eff = min(k, len(index))
    scores, pos = index.faiss_index.search(q, k_eff, params=params)
    return [[(int(p), float(s)) for p, s in zip(prow, srow) if p >= 0] for prow, srow in zip(pos, scores)]


def open_index_and_encoder(path: str | os.PathLike, model: str | None = None):
    """Load an index and the model that built it (or `model`), checked for compatibility.

    The plain-function twin of ``HonedRetriever.from_dir``, for callers that do
    not need LlamaIndex (the CLI, services): with an ONNX export it imports no torch.
    """
    import os as _os

    from .encoder import load_encoder

    index = load_index(path)
    m = index.manifest["model"]
    enc = load_encoder(model or (m["path"] if _os.path.isdir(m["path"]) else m["ref"]))
    check_compatible(index, enc)
    return index, enc
