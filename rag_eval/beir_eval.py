"""Evaluate several retrieval systems side by side on BEIR datasets.

A system is ``bm25``, ``NAME=MODEL`` (a dense model: folder, packaged name or
hub id) or ``NAME=MODEL+bm25`` (hybrid: the model fused with the artifact's BM25
index by reciprocal rank; ``+bm25:0.7`` fuses a weighted sum with dense weight
0.7); ``+rerank:DIR`` (last) reranks either's top 50 with a cross-encoder folder
or an artifact's reranker (``+rerank:DIR@0.3`` mixes its scores with the first
stage's, reranker weight 0.3; an artifact's own weight otherwise). Dense and hybrid
systems are indexed with :func:`retriever.index.build_index` and queried through
:func:`retriever.fusion.search_modes`, exactly the path users ship; indexes are
cached per (dataset, system, model fingerprint).

Example:
    >>> from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    >>> res = evaluate_systems(["datasets/cuad-clauses"],
    ...                        [parse_system("bm25"), parse_system("base=minilm")])  # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from honed.retriever.data.beir import BeirDataset, load_beir
from honed.retriever.errors import HonedError

from honed.retriever.bm25 import bm25_search
from .metrics import RunMetrics, evaluate_run


@dataclass(frozen=True)
class System:
    name: str
    model: str | None        # None for bm25
    hybrid: dict | None = None   # MODEL+bm25: {"fusion": "rrf"} or {"fusion": "weighted", "weight": w}
    rerank: str | None = None    # +rerank:DIR: a cross-encoder folder (or artifact) reranking the top RERANK_TOP_N
    rerank_weight: float | None = None   # +rerank:DIR@W: the reranker's weight against the first stage

    @property
    def kind(self) -> str:
        first = "bm25" if self.model is None else "hybrid" if self.hybrid else "dense"
        return f"{first}+rerank" if self.rerank else first


_HYBRID = re.compile(r"\+bm25(?::([0-9.]+))?$", re.IGNORECASE)
_RERANK = re.compile(r"\+rerank:(.+?)(?:@(\d*\.?\d+))?$", re.IGNORECASE)
RERANK_TOP_N = 50    # first-stage candidates a reranked system rescores (the rest keep their order below them)


def parse_system(spec: str) -> System:
    """``bm25`` or ``NAME=bm25`` → BM25; ``NAME=MODEL`` → dense; ``NAME=MODEL+bm25[:W]`` → hybrid;
    any of them ``+rerank:DIR[@W]`` → reranked by that cross-encoder (mixed with weight W); a bare
    ``MODEL`` is named after itself."""
    spec = spec.strip()
    rerank = rerank_weight = None
    if m := _RERANK.search(spec):
        rerank, spec = m.group(1).strip(), spec[:m.start()]
        if m.group(2) is not None:
            rerank_weight = float(m.group(2))
            if rerank_weight > 1.0:
                raise HonedError(f"--system: +rerank:{rerank}@{m.group(2)}: the weight must be in [0, 1]")
        if not Path(rerank).is_dir():
            raise HonedError(f"--system: +rerank:{rerank}: no such folder (a reranker from `honed reranker train`, "
                             "or an artifact that carries one)")
    if rerank and (spec.lower() == "bm25" or spec.lower().endswith("=bm25")):
        raise HonedError("--system: +rerank needs a dense first stage (NAME=MODEL+rerank:DIR), not bm25")
    if spec.lower() == "bm25":
        return System("bm25", None)
    hybrid = None
    if m := _HYBRID.search(spec):
        weight = None if m.group(1) is None else m.group(1)
        if weight is not None and not (re.fullmatch(r"\d*\.?\d+", weight) and float(weight) <= 1.0):
            raise HonedError(f"--system {spec!r}: the weight after +bm25: must be a number in [0, 1]")
        weight = None if weight is None else float(weight)
        hybrid = {"fusion": "rrf"} if weight is None else {"fusion": "weighted", "weight": weight}
        spec = spec[:m.start()]
    name, _, model = spec.partition("=")
    if not model:
        name, model = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec).name or spec).strip("-._")[:64], spec
    if not name or not model:
        raise HonedError(f"--system {spec!r}: expected bm25 or NAME=MODEL")
    if not _SYSTEM_NAME.fullmatch(name):
        # names become file names of plots and cached indexes: refuse them now, not after the evaluation
        raise HonedError(f"--system {spec!r}: name {name!r} may hold only letters, digits, '.', '_' and '-' "
                         "(up to 64); write NAME=MODEL")
    if hybrid and model.lower() == "bm25":
        raise HonedError(f"--system {spec!r}: +bm25 fuses BM25 with a dense MODEL; write NAME=MODEL+bm25")
    return System(name, None if model.lower() == "bm25" else model, hybrid, rerank, rerank_weight)


_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class SystemResult:
    system: System
    metrics: RunMetrics
    run: dict[str, dict[str, float]]
    seconds: float
    model_fingerprint: str | None = None


@dataclass
class DatasetResult:
    name: str
    path: str
    split: str
    n_queries: int
    n_docs: int
    systems: dict[str, SystemResult] = field(default_factory=dict)
    negative_grades: int = 0          # qrels lines with a grade < 0, read as non-relevant
    role: str = "in-domain"           # or "out-of-domain": a set the model was not tuned for (--ood)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)   # the judgements scored against
    queries: dict[str, str] = field(default_factory=dict)            # the query texts


def dataset_name(path: str | os.PathLike) -> str:
    return Path(path).resolve().name


BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


def resolve_dataset(ref: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """A dataset folder as given, or a BEIR name (``scifact``) downloaded once with beir's own util.

    Offline, an unknown name is a clear error rather than a network timeout.
    """
    p = Path(ref)
    if p.exists():
        return str(p)
    name = str(ref)
    if "/" in name or not re.fullmatch(r"[a-z0-9_-]+", name):
        raise HonedError(f"{ref}: dataset folder does not exist")
    import platformdirs

    root = Path(cache_dir or os.environ.get("HONED_DATA_CACHE") or platformdirs.user_cache_dir("honed")) / "beir"
    if (root / name / "corpus.jsonl").exists():
        return str(root / name)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise HonedError(f"{ref}: no such folder, and downloading BEIR dataset {name!r} needs a network "
                         "(HF_HUB_OFFLINE=1 is set)")
    from beir import util

    try:
        return util.download_and_unzip(BEIR_URL.format(name=name), str(root))
    except Exception as e:  # network errors come in many types
        raise HonedError(f"{ref}: not a folder, and downloading BEIR dataset {name!r} failed ({e})") from None


def subsample_queries(ds: BeirDataset, max_queries: int | None) -> BeirDataset:
    """The first `max_queries` judged queries (sorted ids: deterministic)."""
    if max_queries is not None and max_queries < 1:
        raise HonedError(f"--max-queries must be ≥ 1, got {max_queries}")
    if not max_queries or max_queries >= len(ds.queries):
        return ds
    keep = sorted(ds.queries)[:max_queries]
    return replace(ds, queries={q: ds.queries[q] for q in keep}, qrels={q: ds.qrels[q] for q in keep},
                               query_metadata={q: ds.query_metadata[q] for q in keep if q in ds.query_metadata})


def cached_index(ds: BeirDataset, model: str, index_path: Path, workers: list[str] | None = None,
                 bm25: bool = False):
    """(index, encoder) for the dataset's corpus: reuse `index_path` when model and docs match, else rebuild.

    `workers` builds a missing index with one encoding process per device (:func:`~retriever.index.build_index`);
    `bm25` asks for an index with a BM25 side too (for hybrid systems).
    """
    from honed.retriever.encoder import load_encoder
    from honed.retriever.index import build_index, check_compatible, load_index
    from honed.retriever.routing import routing_of

    enc = load_encoder(model)
    index = None
    if (index_path / "manifest.json").exists():
        try:
            index = load_index(index_path)
        except HonedError:   # an index of an older format, or damaged: this cache rebuilds it
            index = None
        if index is not None and (index.manifest["model"]["fingerprint"] != enc.fingerprint
                                  or index.manifest.get("routing") != routing_of(enc)
                                  or index.doc_ids != list(ds.corpus) or (bm25 and index.bm25 is None)):
            index = None
    if index is None:
        build_index(model if workers and len(workers) > 1 else enc, ds.corpus, index_path, workers=workers, bm25=bm25)
        index = load_index(index_path)
    check_compatible(index, enc)
    return index, enc


def labels_and_ids(index) -> tuple[list[int], list[str]]:
    pairs = [(pos, d["id"]) for pos, d in index.store.iter_docs()]
    return [p for p, _ in pairs], [i for _, i in pairs]


def dense_run(ds: BeirDataset, model: str, index_path: Path, k: int = 100,
              workers: list[str] | None = None, hybrid: dict | None = None,
              rerank: str | None = None, rerank_weight: float | None = None) -> tuple[dict, str]:
    """Run every query over a (cached) index of the dataset's corpus, batched; fused with BM25 for `hybrid`;
    the top :data:`RERANK_TOP_N` reranked by the cross-encoder at `rerank` (mixed with `rerank_weight`)."""
    from honed.retriever.fusion import search_modes

    index, enc = cached_index(ds, model, index_path, workers, bm25=bool(hybrid))
    qids = list(ds.queries)
    texts = [ds.queries[q] for q in qids]
    vecs = enc.encode_queries(texts, show_progress=len(qids) > 64)
    # Batched: the same encoder, index and search_modes() that HonedRetriever._retrieve uses.
    hits = search_modes(index, vecs, texts, k, "hybrid" if hybrid else "dense", fusion=hybrid)
    if rerank:
        hits = reranked(index, rerank, texts, hits, weight=rerank_weight)
    ids = dict(zip(*labels_and_ids(index)))
    run = {q: {ids[p]: s for p, s in h} for q, h in zip(qids, hits)}
    return run, enc.fingerprint


def reranked(index, reranker_dir: str, texts: list[str], hits: list[list[tuple[int, float]]],
             top_n: int = RERANK_TOP_N, chunk: int = 8, weight: float | None = None) -> list[list[tuple[int, float]]]:
    """Each query's top `top_n` reordered by the reranker (as the retriever does), the rest kept below in
    first-stage order (scores under every reranked one), so Recall@k past `top_n` is the first stage's."""
    from honed.retriever.index import recorded_rerank_weight
    from honed.retriever.reranker import load_reranker

    reranker = load_reranker(reranker_dir)
    if weight is None:      # an artifact's reranker mixes as the artifact serves it
        weight = recorded_rerank_weight(reranker_dir)
    heads = rerank_in_chunks(index, reranker, texts, hits, top_n, weight, chunk)
    return [with_first_stage_tail(head, h, top_n) for head, h in zip(heads, hits)]


def rerank_in_chunks(index, reranker, texts: list[str], hits: list[list[tuple[int, float]]], top_n: int,
                     weight: float | None = None, chunk: int = 8) -> list[list[tuple[int, float]]]:
    """Each query's top `top_n` reordered by `reranker` (mixed at `weight`), a few queries per call, with a
    progress bar."""
    from tqdm.auto import tqdm

    from honed.retriever.reranker import rerank

    out = []
    for s in tqdm(range(0, len(texts), chunk), desc=f"reranking top {top_n} ({reranker.backend})",
                  disable=len(texts) <= chunk):
        out += rerank(index, reranker, texts[s:s + chunk], [h[:top_n] for h in hits[s:s + chunk]], top_n, weight)
    return out


def with_first_stage_tail(head: list[tuple[int, float]], hits: list[tuple[int, float]],
                          top_n: int) -> list[tuple[int, float]]:
    """`head` (the reranked top `top_n`) followed by the rest of `hits` in their own order, scored below it."""
    floor = min((sc for _, sc in head), default=0.0)
    return head + [(label, floor - 1.0 - i) for i, (label, _) in enumerate(hits[top_n:])]


def system_run(ds: BeirDataset, system: System, k: int, index_path: Path,
               workers: list[str] | None = None) -> tuple[dict, str | None]:
    """(run, model fingerprint) of one system over the dataset's queries: BM25, or dense over a cached index."""
    if system.model is None:
        return bm25_search(ds.corpus, ds.queries, k=k), None
    index_path = index_path.with_name(re.sub(r"[^A-Za-z0-9_.-]+", "-", index_path.name))
    return dense_run(ds, system.model, index_path, k=k, workers=workers, hybrid=system.hybrid,
                     rerank=system.rerank, rerank_weight=system.rerank_weight)


def evaluate_systems(datasets: list[str], systems: list[System], split: str = "test",
                     max_queries: int | None = None, index_dir: str | os.PathLike = "indexes",
                     k_values=(1, 3, 5, 10, 100), ood: list[str] | tuple = (),
                     workers: list[str] | None = None) -> list[DatasetResult]:
    """Evaluate each system on each dataset; returns per-dataset, per-system metrics and runs.

    `ood` datasets are evaluated the same way and marked out-of-domain: sets the tuned model never saw,
    where the report and the gate check that fine-tuning did not make retrieval worse. `workers` encodes
    corpora with one process per device (``["cuda:0", "cuda:1"]``).
    """
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise HonedError(f"--system names must be unique, got {names}")
    roles = [(d, "in-domain") for d in datasets] + [(d, "out-of-domain") for d in ood]
    seen = [dataset_name(resolve_dataset(d)) for d, _ in roles]
    if len(set(seen)) != len(seen):
        raise HonedError(f"a dataset is named twice across --data and --ood: {seen}")
    out = []
    for path, role in roles:
        path = resolve_dataset(path)
        ds = subsample_queries(load_beir(path, split), max_queries)
        res = DatasetResult(name=dataset_name(path), path=str(path), split=split,
                            n_queries=len(ds.queries), n_docs=len(ds.corpus), negative_grades=ds.negative_grades,
                            role=role, qrels=ds.qrels, queries=ds.queries)
        for sysm in systems:
            t0 = time.perf_counter()
            run, fp = system_run(ds, sysm, max(k_values), Path(index_dir) / f"{res.name}-{split}-{sysm.name}",
                                 workers)
            res.systems[sysm.name] = SystemResult(sysm, evaluate_run(ds.qrels, run, k_values), run,
                                                  time.perf_counter() - t0, fp)
        out.append(res)
    return out
