"""Build a retriever artifact for a corpus too big for one machine: embed it on Ray, assemble the FAISS index.

Ray Data streams the corpus file's lines to a pool of encoder actors (one model
copy each); the driver writes their vectors to shard files as batches finish,
then assembles the index from the shards:

- ``flat`` / ``hnsw`` (exact or graph): every vector, placed at its document's
  position. The result equals :func:`~retriever.index.build_index` in one process
  (same ids in the same order; vectors equal within float tolerance, since batches
  are padded differently).
- ``ivfpq`` (compressed, for corpora of millions): codebooks trained on a random
  sample read from the shards, then filled shard by shard, so the driver never
  holds more than one shard of float vectors. The filled index holds
  ``m + 8`` bytes per passage (PQ code + id), 56 MB per million at dim 384, so it
  is assembled in memory; faiss's on-disk inverted lists (``faiss.contrib.ondisk``)
  pay off only when the codes themselves exceed RAM, and an artifact must stay one
  self-contained FAISS file.

The model travels to the workers through Ray's object store; the corpus file is
read by the workers, so on a cluster it must be on storage every node sees (NFS,
or a path mounted alike everywhere: Ray Data has deprecated reading driver-local
files). Workers need honed installed, as any Ray job needs its code. With no
address Ray starts locally, which is what the tests run.

Example:
    >>> from honed.retriever.ray_build import build_index_on_ray
    >>> build_index_on_ray("minilm", "datasets/cuad-clauses", "indexes/cuad", workers=2)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .data.beir import dataset_root, doc_text
from .errors import HonedError
from .index import checked_build_rows, faiss_factory, make_faiss, write_artifact
from .routing import ROUTER_DIR, routing_of

SHARD_ROWS = 8192          # vectors per shard file: 12 MB at dim 384
TRAIN_PER_LIST = 64        # IVF k-means sample: 64 points per list (faiss warns under 39)


class PassageEncoder:
    """One Ray actor: a private copy of the model, embedding batches of corpus lines."""

    def __init__(self, model_files, fingerprint: str, device: str, batch_size: int, threads: int):
        import ray
        import torch

        from .encoder import load_encoder
        from .models import model_fingerprint

        model_files = ray.get(model_files[0])   # a ref in a list: fetched here, not pinned as an actor argument
        if threads:
            torch.set_num_threads(threads)
        folder = Path(tempfile.mkdtemp(prefix="honed-ray-model-"))
        try:
            for rel, data in model_files.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
            if model_fingerprint(folder) != fingerprint:
                raise HonedError("the model a Ray worker received differs from the driver's (fingerprint)")
            self.encoder = load_encoder(folder, batch_size=batch_size, backend="torch", device=device)
            if hasattr(self.encoder, "router"):
                self.encoder.base          # a routed encoder loads its base model lazily: now, while the files exist
        finally:
            shutil.rmtree(folder, ignore_errors=True)   # the weights are in memory now; leave no copy per build

    def __call__(self, batch: dict) -> dict:
        docs = [json.loads(line) for line in batch["text"]]
        vectors = self.encoder.encode_documents([doc_text(d) for d in docs])
        return {"id": np.array([str(d["_id"]) for d in docs]), "embedding": vectors}


def model_files(folder: str | os.PathLike, router: bool = True) -> dict[str, bytes]:
    """A model folder's files as ``{relative path: bytes}``, without its ONNX export and checkpoints (and without
    its domain router unless `router`: the workers load what they receive, router included)."""
    folder = Path(folder)
    skip = ("onnx",) if router else ("onnx", ROUTER_DIR)
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and rel.parts[0] not in skip and not rel.parts[0].startswith(("checkpoint-", ".")):
            out[rel.as_posix()] = p.read_bytes()
    return out


def corpus_file(corpus, split: str, scratch: Path) -> Path:
    """The JSONL file Ray reads: the corpus file itself, or a copy of an in-memory corpus."""
    if isinstance(corpus, dict):
        path = scratch / "corpus.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for did, d in corpus.items():
                f.write(json.dumps({"_id": did, "title": d.get("title") or "", "text": d["text"]}) + "\n")
        return path
    p = Path(corpus)
    return p if p.is_file() else dataset_root(p, split) / "corpus.jsonl"


def embed_on_ray(encoder, path: Path, positions: dict[str, int], shard_dir: Path, workers: int,
                 gpus_per_worker: float = 0.0, batch_size: int = 32, show_progress: bool = True) -> list[Path]:
    """Embed every line of `path` on a Ray actor pool; write ``shard-N.npz`` (positions, vectors) as batches finish.

    Needs ``ray.init`` done. Returns the shard files. Each document id must appear
    in `positions` exactly once; a missing or repeated one is an error.
    """
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    ray.data.DataContext.get_current().enable_progress_bars = False   # ours below counts passages
    logging.getLogger("ray.data").setLevel(logging.ERROR)              # its plan and "bars disabled" notes
    cpus = actor_cpus(workers) if not gpus_per_worker else 0
    device = "cuda" if gpus_per_worker else "cpu"
    files_ref = ray.put(model_files(encoder.path, router=routing_of(encoder) is not None))
    # several blocks per actor, so the pool shares the tail of the corpus evenly
    ds = ray.data.read_text(str(path.resolve()), override_num_blocks=max(4 * workers, len(positions) // 2048))
    ds = ds.map_batches(
        PassageEncoder, fn_constructor_args=([files_ref], encoder.fingerprint, device, encoder.batch_size, cpus),
        batch_size=max(batch_size * 8, 256), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus, num_gpus=gpus_per_worker or None)
    seen = np.zeros(len(positions), dtype=bool)
    shards, held = [], []

    def write_shard():
        shard = shard_dir / f"shard-{len(shards):05d}.npz"
        np.savez(shard, pos=np.concatenate([p for p, _ in held]), vectors=np.concatenate([v for _, v in held]))
        shards.append(shard)
        held.clear()

    with Progress(TextColumn("embedding on Ray"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not show_progress) as bar:
        task = bar.add_task("", total=len(positions))
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):   # each as it finishes
            try:
                pos = np.fromiter((positions[i] for i in batch["id"]), dtype=np.int64, count=len(batch["id"]))
            except KeyError as e:
                raise HonedError(f"{path}: Ray returned id {e.args[0]!r}, which is not in the corpus") from None
            if seen[pos].any():
                raise HonedError(f"{path}: document {batch['id'][seen[pos].argmax()]!r} was embedded twice")
            seen[pos] = True
            held.append((pos, np.asarray(batch["embedding"], dtype=np.float32)))
            if sum(len(p) for p, _ in held) >= SHARD_ROWS:
                write_shard()
            bar.advance(task, len(pos))
        if held:
            write_shard()
    if not seen.all():
        raise HonedError(f"{path}: {int((~seen).sum())} documents came back without a vector")
    return shards


def actor_cpus(workers: int) -> int:
    """CPUs (and torch threads) per encoder actor: the cluster's CPUs less one for reading, split evenly.

    Reserving everything for the actors would leave Ray Data's read tasks no CPU to
    run on, and the pipeline would wait forever. One actor never asks for more
    than the largest node has.
    """
    import ray

    total = int(ray.cluster_resources().get("CPU", 1))
    largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=total)
    return max(1, min(largest, (total - 1) // workers))


def read_shard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(positions, vectors) of one shard; never unpickles."""
    with np.load(path, allow_pickle=False) as z:
        return z["pos"], z["vectors"]


def assemble_index(shards: list[Path], n: int, dim: int, factory: str, seed: int = 0):
    """A FAISS index over every shard's vectors, labelled by document position.

    Exact kinds gather all vectors first; IVF kinds train on a random sample of
    ``TRAIN_PER_LIST × nlist`` vectors, then add shard by shard.
    """
    if not factory.startswith("IVF"):
        vectors = np.empty((n, dim), dtype=np.float32)
        for s in shards:
            pos, vecs = read_shard(s)
            vectors[pos] = vecs
        return make_faiss(vectors, factory, np.arange(n, dtype=np.int64))
    import faiss

    nlist = int(factory.split(",")[0][3:])
    want = np.sort(np.random.default_rng(seed).choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))
    sample = []
    for s in shards:
        pos, vecs = read_shard(s)
        sample.append(vecs[np.isin(pos, want)])
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    index.train(np.concatenate(sample))
    for s in shards:
        pos, vecs = read_shard(s)
        index.add_with_ids(vecs, pos)
    return index


def build_index_on_ray(model, corpus, out: str | os.PathLike, faiss_kind: str = "flat", split: str = "test",
                       batch_size: int = 32, workers: int = 2, address: str | None = None,
                       gpus_per_worker: float = 0.0, show_progress: bool = True, force: bool = False,
                       bm25: bool = False, routing: bool = True) -> Path:
    """Embed a corpus on Ray and write a retriever artifact atomically; return its path.

    `address` is a running cluster's (``auto``, ``ray://head:10001``); None starts a
    local Ray over this machine's cores. `gpus_per_worker` > 0 runs each encoder on a GPU.
    Same artifact as :func:`~retriever.index.build_index`, with ``build.ray`` recorded.
    """
    from .encoder import load_encoder

    if workers < 1:
        raise HonedError(f"--ray-workers must be ≥ 1, got {workers}")
    try:
        import ray
    except ImportError:
        raise HonedError("--ray needs Ray: pip install 'honed[scale]' (or 'ray[data]')") from None
    rows = checked_build_rows(corpus, split, out, faiss_kind, batch_size, force)   # before a worker starts
    enc = model if hasattr(model, "encode_documents") else load_encoder(model, batch_size=batch_size, backend="torch",
                                                                        routing=routing)
    if getattr(enc, "backend", "torch") != "torch" or not Path(enc.path).is_dir():
        raise HonedError("--ray needs a torch model with a local folder (the workers receive a copy of it)")
    factory = faiss_factory(faiss_kind, len(rows), enc.dim)
    started = not ray.is_initialized()
    if started:
        # local: every core for the actors, plus one logical CPU for the reader (see actor_cpus)
        ray.init(address=address, num_cpus=None if address else max(workers, os.cpu_count() or 1) + 1,
                 include_dashboard=False,
                 log_to_driver=False, logging_level="warning")
    Path(out).absolute().parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.shards-", dir=Path(out).absolute().parent))
    try:
        t0 = time.perf_counter()
        positions = {r["id"]: i for i, r in enumerate(rows)}
        shards = embed_on_ray(enc, corpus_file(corpus, split, scratch), positions, scratch, workers,
                              gpus_per_worker, batch_size, show_progress)
        encode_s = time.perf_counter() - t0
        index = assemble_index(shards, len(rows), enc.dim, factory)
        build = {"batch_size": enc.batch_size, "encode_seconds": round(encode_s, 2), "encode_workers": None,
                 "docs_per_second": round(len(rows) / max(encode_s, 1e-9), 2), "faiss_kind": faiss_kind,
                 "ray": {"address": address or "local", "workers": workers, "gpus_per_worker": gpus_per_worker,
                         "shards": len(shards), "assemble_seconds": round(time.perf_counter() - t0 - encode_s, 2)}}
        return write_artifact(out, enc, rows, None, factory, build, faiss_index=index, force=force, bm25=bm25)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if started:
            ray.shutdown()
