"""Domain routing: the tuned model reads the passages like its training corpus, the base model reads the rest.

Fine-tuning moves passage vectors; out of its domain that is forgetting. `honed diagnose` measured where it
lives on the demo (forgetting-families.json, ``by_side``): the tuned model's *queries* read the base model's
passage vectors of an unseen domain as well as the base model does, while its own passage vectors there lose
0.03 nDCG@10. So a tuned run keeps a small router (k-means centroids of its training corpus in the base model's
space, a threshold set on held-out in-domain passages, and a copy of the base model), and every index built
with the run stores the tuned vector of a passage that scores above the threshold and the base vector of one
below it; queries are always read by the tuned model. Measured in benchmarks/results/domain-routing.json
(docs/measurements.md, "Domain routing"). Written here because no retrieval library routes passages between
two embedding models.

    >>> from honed.retriever.encoder import load_encoder
    >>> enc = load_encoder("runs/demo")          # a run with router/: passages are routed, queries are tuned
    >>> enc.encode_documents(["The Court of Justice of the European Union held ..."]).shape
    (1, 384)
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import HonedError

ROUTER_DIR = "router"
BASE_DIR = "base-model"
FORMAT = 1
# Below these a run keeps no router: its threshold is the lowest held-out score or near it, and one odd passage
# among a few dozen set it below zero in a test run (150 SciFact passages: every passage of any domain "in domain")
MIN_REFERENCE = 500
MIN_HELDOUT = 50


@dataclass
class DomainRouter:
    """Centroids of a training corpus (base-model space) and the score below which a passage is out of domain."""

    centroids: np.ndarray          # (K, dim) unit vectors
    threshold: float
    record: dict = field(default_factory=dict)   # how it was fitted: counts, quantile, held-out routing rate

    def scores(self, base_vectors: np.ndarray) -> np.ndarray:
        """Each passage's cosine to its nearest centroid (`base_vectors`: unit vectors from the base model)."""
        if len(base_vectors) == 0:
            return np.zeros(0, dtype=np.float32)
        return (np.asarray(base_vectors, dtype=np.float32) @ self.centroids.T).max(axis=1)

    def in_domain(self, base_vectors: np.ndarray) -> np.ndarray:
        return self.scores(base_vectors) >= self.threshold


def fit_router(base_vectors: np.ndarray, heldout_vectors: np.ndarray, centroids: int = 64,
               quantile: float = 0.002, seed: int = 0) -> DomainRouter:
    """Spherical k-means on the training corpus's base vectors; the threshold is the `quantile` of held-out
    in-domain passages' scores (so about that share of new in-domain passages is read by the base model).

    The held-out passages must not be among `base_vectors`: scored against centroids fitted on themselves, they
    would set the threshold too high (on the demo, several times as many new contracts' passages routed out).
    """
    import faiss

    if len(heldout_vectors) < 20:
        raise HonedError(f"domain routing needs ≥ 20 held-out passages to set its threshold, got {len(heldout_vectors)}")
    k = max(1, min(centroids, len(base_vectors) // 39))   # FAISS wants ≥ 39 points per centroid
    km = faiss.Kmeans(base_vectors.shape[1], k, niter=25, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(base_vectors, dtype=np.float32))
    cents = km.centroids / np.linalg.norm(km.centroids, axis=1, keepdims=True)
    router = DomainRouter(cents.astype(np.float32), 0.0)
    held = router.scores(heldout_vectors)
    router.threshold = float(np.quantile(held, quantile))
    router.record = {"centroids": k, "reference_passages": len(base_vectors), "heldout_passages": len(held),
                     "quantile": quantile, "threshold": router.threshold}
    return router


def fit_run_router(run_dir: Path, base, train_texts: list[str], heldout_texts: list[str],
                   max_reference: int = 3000, seed: int = 0, show_progress: bool = True) -> dict:
    """Fit a router for a run folder being written and save it, with a copy of the `base` encoder's model, in
    ``run_dir/router``; returns its record (for honed.json). `base` must read at the base model's own length,
    as an index built with the run will."""
    if len(train_texts) < MIN_REFERENCE or len(heldout_texts) < MIN_HELDOUT:
        raise HonedError(f"too little data to tell the domain apart ({len(train_texts)} training passages, "
                         f"{len(heldout_texts)} held-out; a router needs {MIN_REFERENCE} and {MIN_HELDOUT})")
    rng = random.Random(seed)
    if len(train_texts) > max_reference:
        train_texts = rng.sample(train_texts, max_reference)
    ref = base.encode_documents(train_texts, show_progress=show_progress)
    held = base.encode_documents(heldout_texts, show_progress=False)
    router = fit_router(ref, held, seed=seed)
    dest = Path(run_dir) / ROUTER_DIR
    dest.mkdir(parents=True, exist_ok=True)
    copy_base = Path(base.path)
    if copy_base.is_dir():
        shutil.copytree(copy_base, dest / BASE_DIR, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    else:
        base.model.save(str(dest / BASE_DIR))      # a hub model: save the loaded weights
    save_router(router, dest, base_ref=str(base.ref), base_fingerprint=base.fingerprint)
    return {**router.record, "base": {"ref": str(base.ref), "fingerprint": base.fingerprint}}


def save_router(router: DomainRouter, folder: Path, base_ref: str, base_fingerprint: str) -> None:
    # JSON + .npy, never pickle: a run or an artifact may come from someone else
    np.save(folder / "centroids.npy", router.centroids, allow_pickle=False)
    doc = {"format": FORMAT, "threshold": router.threshold, "base_dir": BASE_DIR,
           "base": {"ref": base_ref, "fingerprint": base_fingerprint}, "record": router.record}
    (folder / "router.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def has_router(model_dir: str | os.PathLike) -> bool:
    return (Path(model_dir) / ROUTER_DIR / "router.json").is_file()


def load_router(model_dir: str | os.PathLike) -> tuple[DomainRouter, Path]:
    """The router of a run or artifact model folder and the folder of its base model."""
    folder = Path(model_dir) / ROUTER_DIR
    path = folder / "router.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cents = np.load(folder / "centroids.npy", allow_pickle=False)
        threshold = float(doc["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HonedError(f"{path}: not a readable domain router ({e})") from None
    if doc.get("format") != FORMAT:
        raise HonedError(f"{path}: router format {doc.get('format')!r}, this honed reads {FORMAT}")
    if doc.get("base_dir", BASE_DIR) != BASE_DIR:     # a router from elsewhere names no folder outside its own
        raise HonedError(f"{path}: base_dir must be {BASE_DIR!r}, got {doc.get('base_dir')!r}")
    base = folder / BASE_DIR
    if not base.is_dir():
        raise HonedError(f"{path}: its base model folder {base} is missing")
    return DomainRouter(cents.astype(np.float32), threshold, doc.get("record", {})), base


def route_passages(texts, router: DomainRouter, encode_base: Callable, encode_tuned: Callable
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The base model reads every passage, the tuned one re-reads those the router keeps in domain; returns the
    vectors and that mask. The encode functions map a list of texts to unit vectors (in process or on workers)."""
    vectors = encode_base(texts)
    keep = router.in_domain(vectors)
    if keep.any():
        vectors[keep] = encode_tuned([t for t, k in zip(texts, keep) if k])
    return vectors, keep


@dataclass
class RoutedEncoder:
    """An encoder whose queries are the tuned model's and whose passages are routed by a :class:`DomainRouter`.

    Everything else (``ref``, ``fingerprint``, ``dim``, ``model``…) is the tuned encoder's, so an index built with
    it answers the tuned model's queries. The base model loads on the first passage encoded: a query-only
    service never loads it.
    """

    tuned: object
    router: DomainRouter
    base_dir: Path
    load: Callable            # encoder.load_encoder (passed in: this module does not import the encoder's)
    _base: object = None

    def __getattr__(self, name):
        if name.startswith("__") or name in ("tuned", "router", "base_dir", "load", "_base"):
            raise AttributeError(name)
        return getattr(self.tuned, name)

    @property
    def base(self):
        if self._base is None:
            torch = self.tuned.backend == "torch"      # the same runtime as the tuned model (worker pools need torch)
            self._base = self.load(self.base_dir, batch_size=self.tuned.batch_size,
                                   backend="torch" if torch else None, device=self.tuned.device if torch else None)
        return self._base

    def encode_queries(self, texts, show_progress: bool = False) -> np.ndarray:
        return self.tuned.encode_queries(texts, show_progress)

    def encode_documents(self, texts, show_progress: bool = False) -> np.ndarray:
        vectors, _ = self.encode_routed(texts, show_progress)
        return vectors

    def encode_routed(self, texts, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Passage vectors and, per passage, whether the tuned model read it."""
        return route_passages(texts, self.router, lambda t: self.base.encode_documents(t, show_progress),
                              lambda t: self.tuned.encode_documents(t, show_progress))

    def routing_record(self) -> dict:
        import hashlib

        return {**self.router.record, "threshold": self.router.threshold,
                "centroids_sha256": hashlib.sha256(self.router.centroids.tobytes()).hexdigest()[:16]}


def routing_of(encoder) -> dict | None:
    """What an index records of its encoder's routing (None: every passage read by the model itself); an object
    standing for an artifact's model without loading it carries the record as ``routing``."""
    return encoder.routing_record() if isinstance(encoder, RoutedEncoder) else getattr(encoder, "routing", None)


def check_routing(index, encoder) -> None:
    """Refuse to add passages to an index with an encoder that routes them otherwise than its build did."""
    want, got = index.manifest.get("routing"), routing_of(encoder)
    if want != got:
        say = lambda r: "routed passages" if r else "no routing"   # noqa: E731
        raise HonedError(f"{index.path}: built with {say(want)}, but this encoder has {say(got)}: its vectors would "
                         "not match the index's; add documents with the artifact's own model")
