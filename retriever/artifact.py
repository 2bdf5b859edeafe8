"""Ship a retriever artifact: package it with the evaluation that justified it, upgrade old ones, describe one.

:func:`package_artifact` copies an index (its model, documents and vectors)
into a new artifact folder, optionally with a newer export of the same model
(an ``onnx/`` made after the index was built) and the evaluation summary from a
``honed eval beir`` report. :func:`upgrade_index` turns an index folder of
format 1 (honed 0.1: ``docs.jsonl``, model referenced by a path relative to
where honed ran) into the current format in place.

Example:
    >>> from honed.retriever.artifact import package_artifact
    >>> package_artifact("indexes/cuad-clauses-test-tuned", "dist/cuad-retriever", model="runs/demo",
    ...                  report="reports/demo/report.json", system="tuned")           # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import read_artifact, sha256_file
from .errors import HonedError
from .index import FORMAT, load_index, read_manifest, write_artifact


def evaluation_summary(report: str | os.PathLike, system: str, dataset: str | None = None) -> dict:
    """What a release decision rests on, from a ``honed eval beir`` report: the system vs the baseline."""
    from .report_schema import read_report

    p = Path(report)
    doc, verified = read_report(p, kind="beir")
    names = list(doc["datasets"])
    dataset = dataset or names[0]
    if dataset not in doc["datasets"]:
        raise HonedError(f"{p}: dataset {dataset!r} is not in the report (has: {', '.join(names)})")
    d = doc["datasets"][dataset]
    if system not in d["systems"]:
        raise HonedError(f"{p}: system {system!r} is not in the report (has: {', '.join(d['systems'])})")
    for name, value in d["systems"][system]["metrics"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # repr: a key is user data and may hold a newline; the error stays one line
            raise HonedError(f"{p}: datasets.{dataset!r}.systems.{system!r}.metrics.{name!r} is not a number "
                             f"({value!r})")
    base = doc.get("baseline")
    base = base if isinstance(base, str) else None
    sig = _table(_table(_table(d.get("significance")).get(system)).get("NDCG@10"))
    return {"report": str(p.resolve()), "report_sha256": sha256_file(p), "report_verified": verified,
            "dataset": dataset,
            "split": d.get("split"), "n_queries": d.get("n_queries"), "system": system,
            "metrics": d["systems"][system]["metrics"], "baseline": base if base != system else None,
            "baseline_metrics": d["systems"][base]["metrics"] if base in d["systems"] and base != system else None,
            "ndcg@10_delta": sig.get("delta"), "p_value": sig.get("p_value")}


def package_artifact(index: str | os.PathLike, out: str | os.PathLike, model: str | os.PathLike | None = None,
                     report: str | os.PathLike | None = None, system: str | None = None,
                     dataset: str | None = None, force: bool = False, bm25: bool | None = None,
                     reranker: str | os.PathLike | bool | None = None) -> Path:
    """Write a new artifact at `out`: `index`'s documents and vectors, `model` (same weights) or its own,
    and the evaluation summary of `system` in `report`. `bm25` True adds a BM25 index (no re-encoding),
    False leaves it out; None keeps what `index` has (and its recorded fusion). `reranker`: a
    cross-encoder folder to carry as the second stage; False leaves it out; None keeps `index`'s.

    The source is verified in full first (:func:`~retriever.verify.check_index`): the new artifact's
    record vouches only for files that were checked.
    """
    from .models import model_fingerprint
    from .verify import check_index

    if reranker is True:
        raise HonedError("reranker: give the cross-encoder folder to carry (or False to leave it out)")
    src = load_index(index, mmap=False)
    check_index(src, full=True)
    evaluation = evaluation_summary(report, system or "tuned", dataset) if report else src.manifest.get("eval")
    model_dir = Path(model) if model else src.model_dir
    enc = _Recorded(src)
    if model:
        if not (model_dir / "modules.json").exists():
            raise HonedError(f"{model}: not a sentence-transformers model folder (no modules.json)")
        fp = model_fingerprint(model_dir)
        if fp != enc.fingerprint:
            raise HonedError(f"{model}: fingerprint {fp} is not the model that built {index} "
                             f"({enc.fingerprint}); rebuild the index with it instead")
    rows, labels = [], []
    for pos, doc in src.store.iter_docs():
        rows.append(doc)
        labels.append(pos)
    build = {**src.manifest.get("build", {}), "packaged_from": str(Path(index).resolve())}
    return write_artifact(out, enc, rows, None, src.manifest["faiss"]["factory"], build, evaluation=evaluation,
                          model_src=model_dir, labels=np.asarray(labels), faiss_index=_live_copy(src, labels),
                          force=force, bm25=src.bm25 is not None if bm25 is None else bm25,
                          hybrid=src.hybrid if bm25 is not False else None,
                          reranker=src.reranker_dir if reranker is None else (reranker or None),
                          rerank=src.rerank if reranker is None else None)   # a new reranker needs its own weight


def _table(value) -> dict:
    """A report's optional sub-table, or an empty one: its absence is allowed, a wrong type is not used."""
    return value if isinstance(value, dict) else {}


class _Recorded:
    """The identity of an artifact's own model, without loading it."""

    def __init__(self, index):
        m = index.manifest["model"]
        self.ref, self.fingerprint, self.path = m["ref"], m["fingerprint"], str(index.model_dir)
        self.max_seq_length = m.get("max_seq_length")
        self.routing = index.manifest.get("routing")       # its passages' vectors were routed: keep the router


def _live_copy(index, labels: list[int]):
    """The FAISS index holding only the live documents' vectors (under `labels`), ready to write.

    HNSW cannot remove the vectors its deletes only masked, so its graph is built
    again from the live vectors; the new artifact then has no masked labels.
    """
    import faiss

    from .index import make_faiss

    if not len(index.tombstones):
        return faiss.clone_index(index.faiss_index)
    live = np.asarray(labels, dtype=np.int64)
    vectors = index.faiss_index.reconstruct_batch(live)
    return make_faiss(vectors, index.manifest["faiss"]["factory"], live)


def upgrade_index(path: str | os.PathLike, model: str | os.PathLike | None = None) -> Path:
    """Rewrite a format-1 index folder as a current artifact, in place (atomically).

    Format 1 recorded the model as a path relative to the folder honed ran in:
    give `model` when that path does not resolve from here. The vectors are kept
    (Flat and HNSW exactly; IVF-PQ codes as they are), under labels 0..n-1.
    """
    import faiss

    from .data.beir import iter_jsonl
    from .encoder import load_encoder
    from .models import resolve_model

    p = Path(path)
    mf = p / "manifest.json"
    try:
        old = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise HonedError(f"{mf}: cannot read the manifest ({e})") from None
    if old.get("format") == FORMAT:
        read_manifest(p)
        return p
    if old.get("manifest_version") != 1:
        raise HonedError(f"{mf}: not an index of format 1 (manifest_version {old.get('manifest_version')!r})")
    ref = model or (old["model"]["path"] if Path(old["model"]["path"]).is_dir() else old["model"]["ref"])
    try:
        enc = load_encoder(resolve_model(ref), backend="torch", routing=False)   # format 1 predates routing
    except HonedError as e:
        raise HonedError(f"{p}: its model {old['model']['ref']!r} does not resolve from here ({e}); "
                         "pass --model with the model folder that built it") from None
    if enc.fingerprint != old["model"]["fingerprint"]:
        raise HonedError(f"{p}: model {ref} has fingerprint {enc.fingerprint}, the index was built with "
                         f"{old['model']['fingerprint']}; pass --model with the model that built it")
    rows = [{"id": o["id"], "title": o.get("title", ""), "text": o["text"], "metadata": o.get("metadata", {})}
            for _, o in iter_jsonl(p / "docs.jsonl")]
    fi = faiss.read_index(str(p / "index.faiss"))
    if fi.ntotal != len(rows):
        raise HonedError(f"{p}: index.faiss has {fi.ntotal} vectors but docs.jsonl has {len(rows)}")
    labels = np.arange(len(rows), dtype=np.int64)
    factory = old["faiss"]["factory"]
    if factory.startswith("IVF"):   # IVF already stores labels 0..n-1: keep its codes as they are
        new_factory, vectors, ready = factory, None, fi
    else:
        from .index import faiss_factory, make_faiss

        vectors = fi.reconstruct_n(0, fi.ntotal)
        new_factory = faiss_factory("hnsw" if factory.startswith("HNSW") else "flat", len(rows), fi.d)
        ready = make_faiss(vectors, new_factory, labels)
    build = {**old.get("build", {}), "upgraded_from": "manifest_version 1"}
    return write_artifact(p, enc, rows, vectors, new_factory, build, labels=labels, faiss_index=ready, force=True)


def artifact_info(path: str | os.PathLike) -> dict:
    """What an artifact holds (manifest, document count, generation, files, query path), once verified.

    The fast verification (:func:`~retriever.verify.verify_index`): every recorded file, the model's
    weights and the store's binding; ``honed index verify`` also checks every row.
    """
    from .ort_encoder import cpu_int8_target
    from .verify import check_index

    idx = load_index(path)
    checked = check_index(idx, full=False)
    meta = idx.store.meta()
    model = idx.model_dir
    onnx = (model / "onnx" / "manifest.json").exists()
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {**idx.manifest, "documents": len(idx), "generation": idx.generation,
            "deleted_masked": int(len(idx.tombstones)), "faiss_file": meta["faiss_file"],
            "modes": ["dense", "bm25", "hybrid"] if idx.bm25 is not None else ["dense"], "hybrid": idx.hybrid,
            "rerank": idx.reranker_dir is not None, "rerank_weight": idx.rerank,
            "query_path": f"onnx (int8 for {cpu_int8_target()} if gated, else fp32)" if onnx else "torch",
            "record": bool(read_artifact(path)), "verified": checked["checked"], "bytes": size}
