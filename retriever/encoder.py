"""Text → unit-length vectors with a sentence-transformers model (the torch path).

``sentence_transformers`` (and so torch) is imported on first use, not at
module import: ``import honed`` stays fast for paths that never encode.

Example:
    >>> from honed.retriever.encoder import load_encoder
    >>> enc = load_encoder("minilm")                    # doctest: +SKIP
    >>> enc.encode_queries(["what causes scurvy?"]).shape
    (1, 384)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import verify_artifact
from .errors import HonedError
from .models import model_fingerprint, resolve_model


@dataclass
class Encoder:
    """A loaded embedding model plus the identity an index records for it."""

    model: object                 # sentence_transformers.SentenceTransformer
    ref: str                      # what the user asked for ("minilm", a path, a hub id)
    path: str                     # resolved local path or hub id
    fingerprint: str
    dim: int
    max_seq_length: int
    batch_size: int = 32
    backend: str = "torch"
    device: str = "cpu"

    def encode_queries(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed queries (applies the model's query prompt, if it defines one)."""
        return self._encode(self.model.encode_query, texts, show_progress)

    def encode_documents(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed passages (applies the model's document prompt, if it defines one)."""
        return self._encode(self.model.encode_document, texts, show_progress)

    def _encode(self, fn, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = fn(list(texts), batch_size=self.batch_size, show_progress_bar=show_progress,
                  convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(vecs, dtype=np.float32)


def parse_workers(spec: str | None) -> list[str]:
    """Encoding worker devices: ``cuda:0,cuda:1`` (one process per GPU), ``cuda:all``, or ``cpu:N`` (N processes).

    An empty spec means one in-process encoder (``[]``).
    """
    if not spec:
        return []
    spec = spec.strip().lower()
    if spec == "cuda:all":
        import torch

        if not torch.cuda.is_available():
            raise HonedError("--workers cuda:all: torch sees no CUDA GPU")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if spec.startswith("cpu:"):
        n = spec[4:]
        if not n.isdigit() or not 1 <= int(n) <= 256:
            raise HonedError(f"--workers {spec}: cpu:N needs a process count N between 1 and 256")
        return ["cpu"] * int(n)
    from .device import resolve_device

    devices = [d.strip() for d in spec.split(",") if d.strip()]
    for d in devices:
        if not d.startswith("cuda") or resolve_device(d) != d:
            raise HonedError(f"--workers {spec}: expected cuda:0,cuda:1,…, cuda:all or cpu:N, got {d!r}")
    return devices


def encode_with_workers(enc: Encoder, texts: Sequence[str], workers: list[str],
                        show_progress: bool = False) -> np.ndarray:
    """Embed passages with one process per worker device (sentence-transformers' multi-process pool).

    The vectors equal the in-process ones (same model, same normalisation). CPU
    workers split the cores between them: each gets ``cores // workers`` torch
    threads, set through ``OMP_NUM_THREADS`` before the pool spawns them, so N
    processes do not each start a thread per core.
    """
    if len(texts) == 0:
        return np.zeros((0, enc.dim), dtype=np.float32)
    if hasattr(enc, "router"):      # a RoutedEncoder: both of its models on the workers
        from .routing import route_passages

        return route_passages(texts, enc.router, lambda t: encode_with_workers(enc.base, t, workers, show_progress),
                              lambda t: encode_with_workers(enc.tuned, t, workers, show_progress))[0]
    n_cpu = sum(1 for w in workers if w == "cpu")
    saved = os.environ.get("OMP_NUM_THREADS")
    if n_cpu:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_cpu))
    try:
        pool = enc.model.start_multi_process_pool(target_devices=workers)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    try:
        # chunks small enough that the workers share the tail of the corpus evenly
        chunk = max(enc.batch_size, min(1000, -(-len(texts) // (4 * len(workers)))))
        vecs = enc.model.encode_document(list(texts), pool=pool, batch_size=enc.batch_size, chunk_size=chunk,
                                         show_progress_bar=show_progress, normalize_embeddings=True,
                                         convert_to_numpy=True)
    finally:
        enc.model.stop_multi_process_pool(pool)
        enc.model.to(enc.device)          # the pool moved the model to the CPU to share it
    return np.ascontiguousarray(vecs, dtype=np.float32)


_CACHE: dict[tuple, Encoder] = {}


BACKENDS = ("auto", "torch", "onnx", "onnx-fp32", "onnx-int8", "onnx-int8-avx2", "onnx-int8-avx512-vnni")


def split_backend(ref: str | os.PathLike) -> tuple[str, str]:
    """``"runs/x@onnx-int8"`` → (``"runs/x"``, ``"onnx-int8"``); no suffix → ``"auto"``."""
    s = str(ref)
    head, sep, tail = s.rpartition("@")
    if sep and tail in BACKENDS:
        return head, tail
    return s, "auto"


def _with_batch_size(enc, batch_size: int):
    """The cached encoder, or a copy sharing its model with another batch size: callers share the cache, so
    one caller's batch size must never change another's."""
    return enc if enc.batch_size == batch_size else dataclasses.replace(enc, batch_size=batch_size)


def load_encoder(ref: str | os.PathLike = "minilm", batch_size: int = 32,
                 max_seq_length: int | None = None, backend: str | None = None, spin: bool = True,
                 device: str | None = None, routing: bool = True):
    """Load (once per process) the embedding model behind `ref`.

    `ref` is resolved local folder → packaged model → hub id; a ``@backend``
    suffix or `backend` picks the runtime: ``torch`` (sentence-transformers),
    ``onnx-int8`` (the int8 model for this CPU) / ``onnx-fp32`` / ``onnx-int8-avx2``
    / ``onnx-int8-avx512-vnni`` (onnxruntime, no torch import), or ``auto``: the
    folder's exported ONNX model when it has one (int8 only if it passed its
    parity gate), else torch. Vectors are always L2-normalised, so inner product
    equals cosine similarity. `spin` (ONNX only) lets onnxruntime's threads spin
    between ops: fastest alone, but a service that shares the CPU with its event
    loop turns it off (measured: 4.6 ms instead of 6.5 ms per HTTP search).
    `device` (torch only): see :func:`~retriever.device.resolve_device` (default ``$HONED_DEVICE``, else
    cuda > mps > cpu). `routing`: a run folder with a domain router (``router/``, :mod:`~retriever.routing`)
    gives a :class:`~retriever.routing.RoutedEncoder` (passages unlike its training corpus read by the base
    model); False gives the tuned model alone.
    """
    enc = _load_encoder(ref, batch_size, max_seq_length, backend, spin, device)
    if routing and enc.path and Path(enc.path).is_dir():
        from .routing import RoutedEncoder, has_router, load_router

        if has_router(enc.path):
            return RoutedEncoder(enc, *load_router(enc.path), load=load_encoder)
    return enc


def _load_encoder(ref, batch_size, max_seq_length, backend, spin, device):
    ref, suffix = split_backend(ref)
    backend = backend or suffix
    if backend not in BACKENDS:
        raise HonedError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = resolve_model(ref)
    has_onnx = isinstance(path, Path) and (path / "onnx" / "manifest.json").exists()
    if backend.startswith("onnx") or (backend == "auto" and has_onnx and max_seq_length is None):
        from .ort_encoder import load_ort_encoder

        variant = backend.removeprefix("onnx-") if backend.startswith("onnx-") else "auto"
        key = (str(path), "onnx", variant, spin)
        if key not in _CACHE:
            verify_artifact(path)        # a run folder's files, as `honed finetune` wrote them
            _CACHE[key] = load_ort_encoder(path, variant=variant, batch_size=batch_size, ref=str(ref), spin=spin)
        return _with_batch_size(_CACHE[key], batch_size)
    from .device import resolve_device

    device = resolve_device(device)
    key = (str(path), max_seq_length, device)
    if key in _CACHE:
        return _with_batch_size(_CACHE[key], batch_size)
    if isinstance(path, Path):
        verify_artifact(path)
    from sentence_transformers import SentenceTransformer  # heavy: ~10 s, imports torch

    # trust_remote_code stays off: a model folder may come from someone else.
    model = SentenceTransformer(str(path), device=device, trust_remote_code=False)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    enc = Encoder(
        model=model, ref=str(ref), path=str(path),
        fingerprint=model_fingerprint(path) if isinstance(path, Path) else "hub:" + str(path),
        dim=int(model.get_embedding_dimension()), max_seq_length=int(model.max_seq_length),
        batch_size=batch_size, device=device,
    )
    _CACHE[key] = enc
    return enc
