"""What a running service holds: its arms (a loaded artifact each), their batchers, metrics and the store.

:class:`ServiceState` loads the artifacts in a background thread (``/ready`` says when),
starts one :class:`~app.serve.batching.MicroBatcher` per arm, and answers the checks
every protected route makes first (:meth:`ServiceState.refuse`). The routes
(:mod:`.routes`) read it from ``request.app.state.service``.

Example:
    >>> from honed.app.serve.service import ServeConfig
    >>> from honed.app.serve.state import ServiceState
    >>> state = ServiceState(ServeConfig(champion="artifacts/cuad-clauses-tuned"))   # doctest: +SKIP
"""
from __future__ import annotations

import hmac
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from honed.retriever.errors import HonedError

from .batching import MicroBatcher
from .requests import _Filters
from .traffic import CHALLENGER, CHAMPION

log = logging.getLogger("honed.serve")


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """Every error the service answers: ``{"error": "<one line>"}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


@dataclass
class Arm:
    """A loaded artifact: its index, its encoder and the batcher that feeds them."""

    name: str
    path: str
    index: Any = None
    encoder: Any = None
    version: str = ""
    batcher: MicroBatcher | None = None
    mode: str = "dense"
    rerank_top_n: int = 0     # > 0: the artifact's reranker rescores that many first-stage candidates
    reranker: Any = None

    def load(self) -> None:
        from honed.retriever.fusion import check_mode
        from honed.retriever.index import open_index_and_encoder
        from honed.retriever.reranker import artifact_reranker

        self.index, self.encoder = open_index_and_encoder(self.path, spin=False)
        check_mode(self.index, self.mode)
        if self.rerank_top_n:
            self.reranker = artifact_reranker(self.index, spin=False)
        model = self.index.manifest["model"]
        # the model's own name (its run folder), not the mount point: in a container every artifact is /srv/artifact
        self.version = f"{Path(model.get('ref') or self.path).name}@{model['fingerprint'].removeprefix('sha256:')[:12]}"

    def search_batch(self, items: list[tuple[str, int, _Filters | None]]) -> list:
        """Encode every query in one call, then search: unfiltered ones in one FAISS (and BM25) call;
        with a reranker, every query's candidates are scored in one call too, then cut to its k."""
        if self.reranker is None:
            found = self._first_stage(items)
        else:   # the first stage fetches the candidates the reranker cuts to k
            found = self._first_stage([(q, max(k, self.rerank_top_n), f) for q, k, f in items])
            found = self._rerank(items, found)
        return [r if isinstance(r, Exception) else self._hits(r) for r in found]

    def _first_stage(self, items: list[tuple[str, int, _Filters | None]]) -> list:
        """(label, score) hits per query, or the HonedError its filter raised."""
        from honed.retriever.fusion import search_modes

        queries = [q for q, _, _ in items]
        vecs = self.encoder.encode_queries(queries) if self.mode != "bm25" else None
        results: list = [None] * len(items)
        plain = [i for i, (_, _, f) in enumerate(items) if f is None or not f.filters]
        if plain:
            kmax = max(items[i][1] for i in plain)
            found = search_modes(self.index, vecs[plain] if vecs is not None else None, [queries[i] for i in plain],
                                 kmax, self.mode)
            for i, hits in zip(plain, found):
                results[i] = hits[:items[i][1]]
        for i, (q, k, f) in enumerate(items):
            if results[i] is None:
                try:
                    results[i] = search_modes(self.index, vecs[i:i + 1] if vecs is not None else None, [q], k,
                                              self.mode, allowed=self.index.store.select(f))[0]
                except HonedError as e:
                    results[i] = e
        return results

    def _rerank(self, items: list, found: list) -> list:
        from honed.retriever.reranker import rerank

        ok = [i for i, r in enumerate(found) if not isinstance(r, Exception)]
        heads = rerank(self.index, self.reranker, [items[i][0] for i in ok], [found[i] for i in ok],
                       max((items[i][1] for i in ok), default=0))
        for i, head in zip(ok, heads):
            found[i] = head[:items[i][1]]
        return found

    def _hits(self, hits: list[tuple[int, float]]) -> list[dict]:
        docs = self.index.docs_at([label for label, _ in hits])
        return [{"id": d["id"], "score": round(s, 6), "text": d["text"], "title": d.get("title") or "",
                 "metadata": d.get("metadata", {})} for d, (_, s) in zip(docs, hits) if d is not None]


class Metrics:
    """Prometheus metrics in the app's own registry (two apps in one process do not collide)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("honed_requests", "Requests answered", ["endpoint", "arm", "status"], registry=r)
        self.latency = Histogram("honed_request_latency_seconds", "Request latency", ["endpoint", "arm"],
                                 buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5), registry=r)
        self.batch_size = Histogram("honed_batch_size", "Queries per encoder call", ["arm"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.batch_seconds = Histogram("honed_batch_seconds", "Encode + search time per batch", ["arm"],
                                       buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2), registry=r)
        self.queue_depth = Gauge("honed_queue_depth", "Requests waiting per arm", ["arm"], registry=r)
        self.errors = Counter("honed_errors", "Errors by kind", ["kind"], registry=r)
        self.feedback = Counter("honed_feedback", "Feedback rows recorded", ["type"], registry=r)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@dataclass
class ServiceState:
    """The arms, metrics and feedback store of one service, and whether it is ready."""

    cfg: Any                                  # ServeConfig
    store: Any = None                         # a FeedbackStore, opened by load() unless given
    arms: dict = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False
    error: str | None = None

    def __post_init__(self):
        self.arms = {CHAMPION: Arm(CHAMPION, self.cfg.champion, mode=self.cfg.mode, rerank_top_n=self.cfg.rerank)}
        if self.cfg.challenger:
            self.arms[CHALLENGER] = Arm(CHALLENGER, self.cfg.challenger, mode=self.cfg.mode,
                                        rerank_top_n=self.cfg.rerank)

    def load(self, loop) -> None:
        """Open the store and every arm (in a thread), then start the batchers on the event loop."""
        from honed.app.store import FeedbackStore

        try:
            self.store = self.store or FeedbackStore(self.cfg.feedback)
            for arm in self.arms.values():
                arm.load()
                arm.encoder.encode_queries(["warm-up"])   # first ONNX call allocates; keep it off a user's clock
        except Exception as e:   # shown by /ready; the process stays up so an operator can read it
            self.error = f"{type(e).__name__}: {e}"
            log.error("loading failed: %s", self.error)
            return
        loop.call_soon_threadsafe(self._start_batchers)

    def _start_batchers(self) -> None:
        for arm in self.arms.values():
            def on_batch(n, secs, name=arm.name):
                self.metrics.batch_size.labels(name).observe(n)
                self.metrics.batch_seconds.labels(name).observe(secs)
            arm.batcher = MicroBatcher(arm.search_batch, self.cfg.window_ms, self.cfg.max_batch,
                                       self.cfg.max_queue, on_batch)
            arm.batcher.start()
        self.ready = True

    async def stop(self) -> None:
        for arm in self.arms.values():
            if arm.batcher:
                await arm.batcher.stop()

    def authorised(self, request: Request) -> bool:
        key = os.environ.get(self.cfg.api_key_env)
        if not key:
            return True
        given = request.headers.get("x-api-key") or \
            request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), key.encode())

    def refuse(self, request: Request) -> JSONResponse | None:
        """The answer to a request the service cannot serve yet (no key, not ready), or None."""
        if not self.authorised(request):
            self.metrics.errors.labels("unauthorised").inc()
            return error_response(401, f"missing or wrong API key (send it in X-API-Key; the server reads "
                                       f"${self.cfg.api_key_env})")
        if not self.ready:
            return error_response(503, "not ready: loading models and indexes" if not self.error
                                  else f"not ready: {self.error}", {"Retry-After": "1"})
        return None

    async def ranked(self, arm: Arm, query: str, k: int, filters) -> list[dict]:
        t0 = time.perf_counter()
        hits = await arm.batcher.submit((query, k, filters))
        self.metrics.latency.labels("search_arm", arm.name).observe(time.perf_counter() - t0)
        return hits
