"""Build, open and search a retriever artifact: the tuned model, its FAISS index and the documents, in one folder.

An index folder (format ``honed.retriever/2``) holds everything a query needs,
every path relative to the folder, so it can be copied, tarred or moved to
another machine and opened from any working directory:

- ``model/``            the sentence-transformers folder that built it (and its ``onnx/`` export, if any)
- ``store.sqlite``      the documents, keyed by id, metadata queryable (:mod:`retriever.store`)
- ``index-<gen>.faiss`` FAISS's own binary format; vector labels are the store's ``pos`` column
- ``bm25-<gen>/``       optional: a BM25 index of the same documents (bm25s arrays, no pickle) for
                        ``mode="bm25"`` and ``mode="hybrid"`` (:mod:`retriever.bm25`, :mod:`retriever.fusion`)
- ``manifest.json``     format, model fingerprint and dimension, metric, FAISS factory, build
                        parameters, and the evaluation that justified it (``honed package``)
- ``honed-artifact.json`` sizes and sha256 of the immutable files (:mod:`retriever.atomic`)

No pickle. The folder is written beside its destination and swapped into place;
documents are added and deleted in place (:mod:`retriever.updates`), and the
FAISS file of the current *generation* is recorded, with its sha256, in the
store, so a reader always gets a FAISS file and rows that belong together.

Example:
    >>> from honed.retriever.index import build_index, load_index, search
    >>> build_index("minilm", "datasets/cuad-clauses", "indexes/cuad-minilm")   # doctest: +SKIP
    >>> idx = load_index("indexes/cuad-minilm")                                  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import ARTIFACT_FILE, atomic_dir, check_writable, read_json, recover_swap, sha256_file, verify_artifact
from .data.beir import check_id, dataset_root, doc_text, read_corpus
from .errors import HonedError, IndexMismatchError
from .store import DocStore

FORMAT = "honed.retriever/2"
FAISS_KINDS = ("flat", "hnsw", "ivfpq")
STORE_FILE = "store.sqlite"
MODEL_DIR = "model"


@dataclass
class Index:
    """An open artifact: FAISS vectors, the document store, and how they were made."""

    faiss_index: object
    store: DocStore
    manifest: dict
    path: Path
    generation: int = 0
    tombstones: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bm25: object = None      # a retriever.bm25.Bm25Index of the same generation, when the artifact has one
    hybrid: dict | None = None   # the fusion chosen on a dev split (retriever.fusion.record_fusion), if any
    rerank: dict | None = None   # the reranker's weight chosen on a dev split (retriever.reranker.record_rerank_weight)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)   # one connection, many threads

    def __len__(self) -> int:
        return self.store.count()

    @property
    def doc_ids(self) -> list[str]:
        """Document ids in insertion order."""
        return self.store.ids()

    def docs_at(self, labels: list[int]) -> list[dict | None]:
        """Documents for FAISS labels, in order (None for a label deleted since the search)."""
        return self.store.get_by_pos(labels)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def reranker_dir(self) -> Path | None:
        """The cross-encoder folder inside the artifact, when it carries one (``honed package --reranker``)."""
        second = self.manifest.get("reranker")
        return self.path / second["dir"] if second else None

    def refresh(self) -> bool:
        """Reload the FAISS file when another process updated the artifact; True if it did."""
        if self.store.generation() == self.generation:
            return False
        fresh = load_index(self.path)
        self.store.close()
        self.faiss_index, self.store, self.generation = fresh.faiss_index, fresh.store, fresh.generation
        self.tombstones, self.manifest, self.bm25 = fresh.tombstones, fresh.manifest, fresh.bm25
        self.hybrid, self.rerank = fresh.hybrid, fresh.rerank
        return True


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

    flat: exact search. hnsw: graph, no training, ~exact at efSearch 128 (deletes
    are masked, since HNSW cannot remove). ivfpq: compressed (dim/8 bytes per
    vector); needs ≥ 39×nlist training points. All carry the store's labels.
    """
    if kind == "flat":
        return "IDMap2,Flat"
    if kind == "hnsw":
        return "IDMap2,HNSW32,Flat"
    if kind == "ivfpq":
        if n < 10_000:
            raise HonedError(f"--faiss ivfpq needs ≥ 10,000 documents to train its codebooks "
                             f"(corpus has {n:,}); use flat or hnsw")
        nlist = int(min(4 * np.sqrt(n), n / 39))
        m = next(m for m in (dim // 8, dim // 12, dim // 16, dim // 4) if dim % m == 0)
        return f"IVF{nlist},PQ{m}"
    raise HonedError(f"--faiss must be one of {', '.join(FAISS_KINDS)}, got {kind!r}")


def make_faiss(vectors: np.ndarray, factory: str, labels: np.ndarray):
    """A trained FAISS index holding `vectors` under `labels` (inner product over unit vectors)."""
    import faiss

    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(labels, dtype=np.int64))
    if "HNSW" in factory:
        faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch = 128
    return index


def corpus_docs(docs_by_id: dict[str, dict]) -> list[dict]:
    """Validated store rows from a corpus dict (ids checked, metadata a JSON object)."""
    rows = []
    for did, d in docs_by_id.items():
        did = check_id(did, "corpus", "document id")
        if not isinstance(d, dict) or not isinstance(d.get("text"), str):
            raise HonedError(f"document {did!r}: needs a string \"text\"")
        meta = d.get("metadata") or {}
        if not isinstance(meta, dict):
            raise HonedError(f"document {did!r}: \"metadata\" must be an object")
        rows.append({"id": did, "title": d.get("title") or "", "text": d["text"], "metadata": meta})
    return rows


def checked_build_rows(corpus, split: str, out: str | os.PathLike, faiss_kind: str, batch_size: int,
                       force: bool) -> list[dict]:
    """A build's validated store rows, after every argument is checked: fail before minutes of encoding."""
    docs_by_id = load_corpus(corpus, split)
    if not docs_by_id:
        raise HonedError("corpus is empty: nothing to index")
    if faiss_kind not in FAISS_KINDS:
        raise HonedError(f"--faiss must be one of {', '.join(FAISS_KINDS)}, got {faiss_kind!r}")
    if batch_size < 1:
        raise HonedError(f"--batch-size must be ≥ 1, got {batch_size}")
    check_writable(out, "index", force)
    return corpus_docs(docs_by_id)


def build_index(model, corpus, out: str | os.PathLike, faiss_kind: str = "flat",
                split: str = "test", batch_size: int = 32, show_progress: bool = True,
                force: bool = False, workers: list[str] | None = None, bm25: bool = False, routing: bool = True
                ) -> Path:
    """Embed a corpus and write a retriever artifact atomically; return its path.

    `model` is a model reference (``"minilm"``, a folder, a hub id) or a loaded
    encoder; the model is copied into the artifact. `corpus` is a corpus dict, a
    ``corpus.jsonl`` file or a BEIR folder (its `split` corpus when split by document).
    `workers` (e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu"] * 4``, see
    :func:`~retriever.encoder.parse_workers`) encodes with one process per entry. `bm25` also writes a
    BM25 index of the same documents, for ``mode="bm25"`` and ``mode="hybrid"`` queries. `routing` (a run with a
    domain router, :mod:`~retriever.routing`): False stores the tuned model's vectors for every passage.
    """
    from .encoder import encode_with_workers, load_encoder

    rows = checked_build_rows(corpus, split, out, faiss_kind, batch_size, force)
    parallel = bool(workers) and len(workers) > 1
    enc = model if hasattr(model, "encode_documents") else \
        load_encoder(model, batch_size=batch_size, backend="torch" if parallel else None, routing=routing)
    factory = faiss_factory(faiss_kind, len(rows), enc.dim)
    t0 = time.perf_counter()
    texts = [doc_text(d) for d in rows]
    if parallel:
        if getattr(enc, "backend", "torch") != "torch":
            raise HonedError("--workers needs the torch backend (the ONNX path encodes in one process)")
        vectors = encode_with_workers(enc, texts, workers, show_progress=show_progress)
    else:
        vectors = enc.encode_documents(texts, show_progress=show_progress)
    encode_s = time.perf_counter() - t0
    build = {"batch_size": enc.batch_size, "encode_seconds": round(encode_s, 2), "encode_workers": workers or None,
             "docs_per_second": round(len(rows) / max(encode_s, 1e-9), 2), "faiss_kind": faiss_kind}
    return write_artifact(out, enc, rows, vectors, factory, build, force=force, bm25=bm25)


def write_artifact(out: str | os.PathLike, encoder, rows: list[dict], vectors: np.ndarray, factory: str,
                   build: dict, evaluation: dict | None = None, model_src: str | os.PathLike | None = None,
                   labels: np.ndarray | None = None, faiss_index=None, force: bool = False,
                   bm25: bool = False, hybrid: dict | None = None,
                   reranker: str | os.PathLike | None = None, rerank: dict | None = None) -> Path:
    """Write an artifact folder from documents and their vectors (or a ready FAISS index with `labels`);
    with `bm25`, a BM25 index of the same rows too (and `hybrid`, a fusion chosen for them); with
    `reranker`, a copy of that cross-encoder folder (and its ONNX export) as the second stage, mixed
    with the first at the weight `rerank` records (default: the one its training chose on dev)."""
    import faiss

    from .bm25 import PARAMS, bm25_digest, write_bm25
    from .reranker import copy_reranker, trained_weight
    from .routing import routing_of

    labels = np.arange(len(rows), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    index = faiss_index if faiss_index is not None else make_faiss(vectors, factory, labels)
    routing = routing_of(encoder)
    artifact_id = uuid.uuid4().hex
    with atomic_dir(out, kind="index", force=force) as tmp:
        copy_model(encoder, tmp / MODEL_DIR, model_src, router=routing is not None)
        second_stage = copy_reranker(reranker, tmp) if reranker else None
        faiss_file = "index-1.faiss"
        faiss.write_index(index, str(tmp / faiss_file))
        chosen = {}     # the store meta beyond the FAISS file: BM25 index, fusion and reranker weights
        if bm25:
            folder = write_bm25([doc_text(r) for r in rows], labels, tmp / "bm25-1", show_progress=len(rows) > 5000)
            chosen.update(bm25_dir=folder.name, bm25_sha256=bm25_digest(folder))
            if hybrid:
                chosen["hybrid"] = hybrid
        mix = rerank or (trained_weight(second_stage) if second_stage else None)
        if second_stage and mix:
            chosen["rerank"] = mix
        store = DocStore(tmp / STORE_FILE, create=True)
        with store.conn:
            store.conn.execute("BEGIN")
            store.insert_at(rows, labels)
            store.set_meta({"format": FORMAT, "artifact_id": artifact_id, "model_fingerprint": encoder.fingerprint,
                            "generation": 1, "faiss_file": faiss_file,
                            "faiss_size": (tmp / faiss_file).stat().st_size,
                            "faiss_sha256": sha256_file(tmp / faiss_file), **chosen})
        store.close()
        manifest = {
            "format": FORMAT,
            "artifact_id": artifact_id,
            "model": {"dir": MODEL_DIR, "ref": encoder.ref, "fingerprint": encoder.fingerprint,
                      "max_seq_length": encoder.max_seq_length,
                      "onnx": (tmp / MODEL_DIR / "onnx" / "manifest.json").exists()},
            "dim": int(vectors.shape[1]) if vectors is not None else int(index.d),
            "metric": "inner_product",
            "normalized": True,
            # the passages unlike the model's training corpus hold the base model's vectors (routing.py)
            "routing": routing,
            "faiss": {"factory": factory, "version": faiss.__version__, "removes": "HNSW" not in factory},
            "bm25": {"library": "bm25s", **PARAMS, "stemmer": "english", "stopwords": "en"} if bm25 else None,
            "reranker": second_stage,
            "build": build,
            "eval": evaluation,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Path(out)


def copy_model(encoder, dest: Path, src: str | os.PathLike | None = None, router: bool = False) -> None:
    """Put the encoder's model folder (with its ONNX export, if any, and its domain router if `router`) at `dest`."""
    from .routing import ROUTER_DIR

    src = Path(src) if src else Path(encoder.path)
    if router and not (src / ROUTER_DIR).is_dir():
        raise HonedError(f"{src}: the index's passages were routed by a domain router, but this model folder has "
                         f"no {ROUTER_DIR}/; package the index with its own model")
    if src.is_dir():
        plain = shutil.ignore_patterns(".*", "checkpoint-*", "__pycache__")
        # an index built without routing must not carry the router: its inserts would be routed
        shutil.copytree(src, dest, ignore=lambda d, names: {*plain(d, names), *(
            [ROUTER_DIR] if not router and Path(d) == src and ROUTER_DIR in names else [])})
        record = dest / ARTIFACT_FILE        # the run's own file record: without the router it left behind
        if not router and (src / ROUTER_DIR).is_dir() and record.is_file():
            doc = read_json(record)
            doc["files"] = {k: v for k, v in doc["files"].items() if not k.startswith(ROUTER_DIR + "/")}
            record.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    elif getattr(encoder, "model", None) is not None and hasattr(encoder.model, "save"):
        encoder.model.save(str(dest))   # a hub model: save the loaded weights
    else:
        raise HonedError(f"model {encoder.ref!r} has no local folder to copy into the artifact")


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check an artifact's manifest.json (format, required keys)."""
    p = Path(path)
    mf = p / "manifest.json"
    if not p.exists():
        recover_swap(p)          # a kill mid-swap leaves only the previous artifact, beside it
    if p.is_file():
        raise HonedError(f"{p}: is a file, not an index folder")
    if not mf.exists():
        raise HonedError(f"{p}: not an index folder (no manifest.json); build one with `honed index build`")
    manifest = read_json(mf)
    if manifest.get("manifest_version") == 1:
        raise HonedError(f"{p}: index format 1 (written by honed 0.1, model outside the folder); "
                         f"upgrade it in place with `honed index upgrade {p}`")
    if manifest.get("format") != FORMAT:
        raise HonedError(f"{mf}: artifact format {manifest.get('format')!r} is not supported by honed "
                         f"{_version()} (it reads {FORMAT}); upgrade honed")
    for key, typ in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), typ):
            raise HonedError(f"{mf}: key {key!r} is missing or not a {typ.__name__}; rebuild the index")
    for key in ("fingerprint", "ref", "dir"):
        if not isinstance(manifest["model"].get(key), str):
            raise HonedError(f"{mf}: key 'model.{key}' is missing or not a string; rebuild the index")
    if not isinstance(manifest["faiss"].get("factory"), str):
        raise HonedError(f"{mf}: key 'faiss.factory' is missing or not a string; rebuild the index")
    return manifest


_MANIFEST_KEYS = {"model": dict, "dim": int, "faiss": dict}


def _version() -> str:
    from honed import __version__

    return __version__


def _read_faiss(path: Path, mmap: bool):
    import faiss

    flags = (faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY) if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as e:
        raise HonedError(f"{path}: unreadable FAISS index ({str(e).splitlines()[0]})") from None


def load_index(path: str | os.PathLike, mmap: bool = True) -> Index:
    """Open an artifact, checking that its parts agree; FAISS is memory-mapped where the type allows."""
    p = Path(path)
    manifest = read_manifest(p)
    verify_artifact(p, ["manifest.json"])
    for _ in range(5):   # a writer may switch generations between our reads: take the one the store names
        store = DocStore(p / STORE_FILE)
        try:
            meta, count, tombstones = _snapshot(store)
            fpath = p / str(meta.get("faiss_file", ""))
            if not fpath.is_file():
                store.close()
                continue
            if fpath.stat().st_size != meta.get("faiss_size") or sha256_file(fpath) != meta.get("faiss_sha256"):
                raise HonedError(f"{fpath}: contents do not match {STORE_FILE} (size/sha256): the file was "
                                 "replaced or truncated; rebuild the index")
            check_store_binding(p, manifest, meta, count)
            index = _read_faiss(fpath, mmap)
            if index.ntotal - len(tombstones) != count:
                raise HonedError(f"{p}: {fpath.name} has {index.ntotal - len(tombstones)} live vectors but "
                                 f"{STORE_FILE} has {count} documents; rebuild the index")
            if index.d != manifest["dim"]:
                raise HonedError(f"{p}: {fpath.name} has dim {index.d}, manifest says {manifest['dim']}")
            lexical = _open_bm25(p, meta, count)
            if lexical is False:    # switched away by a writer between our reads: take the next generation
                store.close()
                continue
        except BaseException:
            store.close()
            raise
        break
    else:
        raise HonedError(f"{p}: the FAISS file named in {STORE_FILE} is missing; the artifact is incomplete")
    if manifest["faiss"]["factory"].startswith("IVF"):
        import faiss

        faiss.extract_index_ivf(index).nprobe = 16
    return Index(faiss_index=index, store=store, manifest=manifest, path=p, generation=int(meta["generation"]),
                 tombstones=tombstones, bm25=lexical, hybrid=meta.get("hybrid"), rerank=meta.get("rerank"))


def _open_bm25(path: Path, meta: dict, count: int):
    """The generation's BM25 index (None when the artifact has none; False when its folder is gone)."""
    from .bm25 import Bm25Index, bm25_digest

    name = meta.get("bm25_dir")
    if name is None:
        return None
    folder = path / name
    if not folder.is_dir():
        return False
    if bm25_digest(folder) != meta.get("bm25_sha256"):
        raise HonedError(f"{folder}: contents do not match {STORE_FILE} (sha256): the BM25 index was replaced or "
                         "damaged; rebuild the index")
    lexical = Bm25Index(folder)
    if len(lexical) != count:
        raise HonedError(f"{folder}: indexes {len(lexical)} documents but {STORE_FILE} has {count}; rebuild the index")
    return lexical


def _snapshot(store: DocStore) -> tuple[dict, int, np.ndarray]:
    """The store's meta, row count and tombstones from one read transaction: one generation, never a mix."""
    try:
        store.conn.execute("BEGIN")
        try:
            meta, count, tombstones = store.meta(), store.count(), store.tombstones()
        finally:
            store.conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise HonedError(f"{store.path}: damaged or truncated document store ({e}); rebuild the index") from None
    for key, ok in _META_KEYS.items():
        if not ok(meta.get(key)):
            raise HonedError(f"{store.path}: meta key {key!r} is missing or malformed ({str(meta.get(key))[:40]!r}); "
                             "the store was edited or damaged: rebuild the index")
    return meta, count, tombstones


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# What every generation's meta must hold; a FAISS file name is checked so a store cannot point outside its folder.
_META_KEYS = {"generation": lambda v: _is_int(v) and v >= 1,
              "faiss_file": lambda v: isinstance(v, str) and re.fullmatch(r"index-\d+\.faiss", v) is not None,
              "faiss_size": lambda v: _is_int(v) and v >= 0,
              "faiss_sha256": lambda v: isinstance(v, str),
              "bm25_dir": lambda v: v is None or (isinstance(v, str) and re.fullmatch(r"bm25-\d+", v) is not None)}


def check_store_binding(path: Path, manifest: dict, meta: dict, count: int) -> None:
    """Refuse a store (and the FAISS file it names) that belongs to another artifact or another model, or
    that lost or gained rows behind honed's back: a check of a few meta keys, cheap enough for every open.

    Artifacts written before honed recorded these keys (no ``artifact_id`` in the manifest) are not bound;
    ``honed index verify`` says so, and ``honed package`` writes a bound copy.
    """
    store_file = path / STORE_FILE
    if "artifact_id" not in manifest:
        return
    if meta.get("artifact_id") != manifest["artifact_id"]:
        raise HonedError(f"{store_file}: belongs to another artifact (id {meta.get('artifact_id')!r}, the manifest "
                         f"says {manifest['artifact_id']!r}): the store and its FAISS file were swapped in from "
                         "elsewhere; restore this artifact's own or rebuild it")
    if meta.get("model_fingerprint") != manifest["model"]["fingerprint"]:
        raise HonedError(f"{store_file}: its vectors were made by model {meta.get('model_fingerprint')!r}, not the "
                         f"artifact's model {manifest['model']['fingerprint']!r}; rebuild the index")
    if not _is_int(meta.get("documents")) or meta["documents"] != count:
        raise HonedError(f"{store_file}: holds {count} documents but recorded {meta.get('documents')!r} at its last "
                         "update: rows were added or removed outside honed (or the file was truncated); "
                         "rebuild the index")


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
    """Top-k (label, score) per query; `allowed` restricts results to those labels.

    Restriction uses FAISS's own ``IDSelectorBatch`` so filtered search is exact
    rather than an over-fetch-and-drop approximation. Deleted documents of an
    HNSW index (which cannot remove vectors) are masked the same way.
    """

    if k < 1:
        raise HonedError(f"top-k must be ≥ 1, got {k}")
    with index.lock:
        index.refresh()
        return _search(index, query_vectors, k, allowed)


def _search(index: Index, query_vectors: np.ndarray, k: int, allowed: np.ndarray | None):
    import faiss

    q = np.ascontiguousarray(query_vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    sel = None
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=np.int64)
        if allowed.size == 0:
            return [[] for _ in range(len(q))]
        sel = faiss.IDSelectorBatch(allowed)
    elif len(index.tombstones):
        sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(index.tombstones))
    params = None
    factory = index.manifest["faiss"]["factory"]
    if "HNSW" in factory:
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(128, k))
    elif factory.startswith("IVF"):
        params = faiss.SearchParametersIVF(sel=sel, nprobe=16)
    elif sel is not None:
        params = faiss.SearchParameters(sel=sel)
    n_live = index.faiss_index.ntotal - len(index.tombstones)
    k_eff = max(1, min(k, n_live))
    scores, labels = index.faiss_index.search(q, k_eff, params=params)
    return [[(int(p), float(s)) for p, s in zip(prow, srow) if p >= 0] for prow, srow in zip(labels, scores)]


def open_index_and_encoder(path: str | os.PathLike, model: str | None = None, spin: bool = True):
    """Open an artifact and the model inside it (or `model`), checked for compatibility.

    The plain-function twin of ``HonedRetriever.from_dir``, for callers that do
    not need LlamaIndex (the CLI, services): with an ONNX export it imports no torch.
    """
    from .encoder import load_encoder

    index = load_index(path)
    enc = load_encoder(model or index.model_dir, spin=spin)
    check_compatible(index, enc)
    return index, enc


def recorded_rerank_weight(path: str | os.PathLike) -> float | None:
    """The reranker weight recorded in the artifact at `path`; None for a plain reranker folder or none recorded."""
    if not (Path(path) / "manifest.json").is_file():
        return None
    index = load_index(path)
    try:
        return index.rerank["weight"] if index.rerank else None
    finally:
        index.store.close()
