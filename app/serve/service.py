"""The retrieval service: a FastAPI app over one or two retriever artifacts.

Endpoints:

- ``POST /search`` ``{"query", "k"?, "filters"?, "user_id"?}`` → hits (id, score, rank, text, title,
  metadata), the arm that answered, its model version, and an ``impression_id`` to send feedback against.
  ``filters`` is LlamaIndex's ``MetadataFilters`` as JSON (``{"filters": [{"key", "value", "operator"}],
  "condition"}``) or the shorthand ``{"key": value, …}`` (all equal).
- ``POST /feedback`` ``{"impression_id", "type": "click"|"dwell"|"thumb", "doc_id", "dwell_ms"?, "value"?}``:
  answered only after the row is committed.
- ``GET /health`` (the process is up), ``GET /ready`` (models and indexes loaded; 503 until then),
  ``GET /metrics`` (Prometheus: requests, latency per arm, batch sizes, queue depth, errors).

The pieces: :mod:`.requests` (bodies, filters), :mod:`.state` (arms, batchers, metrics, readiness),
:mod:`.routes` (the endpoints). Queries to an arm go through its :class:`~honed.app.serve.batching.MicroBatcher`: one encoder call per
batch, a bounded queue that answers 503 when full. The artifacts open on the torch-free ONNX path when
they hold an export. With a challenger, a sticky share of users (``split``) sees it, or, with
``interleave``, a team-draft mix of both rankings (:mod:`~honed.app.serve.traffic`). Every answered search
is logged as an impression in the feedback store; a failure to log it is counted and answered with
``impression_id: null`` rather than failing the search.

Example:
    >>> from honed.app.serve.service import ServeConfig, create_app
    >>> api = create_app(ServeConfig(champion="artifacts/cuad-clauses-tuned"))     # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(api, host="127.0.0.1", port=8080)              # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from honed.retriever.errors import HonedError

from .routes import router
from .state import ServiceState, error_response


@dataclass
class ServeConfig:
    """What ``honed serve`` runs: artifacts, traffic split, batching and limits."""

    champion: str
    challenger: str | None = None
    split: float = 0.1                # share of users routed to the challenger (or to interleaving)
    interleave: bool = False          # team-draft mix of both rankings instead of an A/B split
    salt: str = ""                    # experiment name: a new one reshuffles users between arms
    feedback: str | None = None       # feedback store URL or SQLite file (default $HONED_FEEDBACK_URL)
    window_ms: float = 3.0            # micro-batch window
    max_batch: int = 32
    max_queue: int = 256              # waiting requests per arm before 503
    max_k: int = 100
    max_query_chars: int = 2000
    api_key_env: str = "HONED_API_KEY"
    mode: str = "dense"               # dense | bm25 | hybrid, for every arm (the last two need a BM25 index)
    rerank: int = 0                   # > 0: every arm's reranker rescores this many first-stage candidates

    def check(self) -> None:
        if not 0.0 <= self.split <= 1.0:
            raise HonedError(f"--split must be within [0, 1], got {self.split}")
        if self.interleave and not self.challenger:
            raise HonedError("--interleave needs --challenger (two rankings to mix)")
        if self.challenger and Path(self.challenger).resolve() == Path(self.champion).resolve():
            raise HonedError("--champion and --challenger are the same artifact")
        if self.window_ms < 0 or self.max_batch < 1 or self.max_queue < 1 or self.max_k < 1:
            raise HonedError("--batch-window-ms must be ≥ 0 and --max-batch, --max-queue, --max-k ≥ 1")
        if self.mode not in ("dense", "bm25", "hybrid"):
            raise HonedError(f"--mode must be dense, bm25 or hybrid, got {self.mode!r}")
        if self.rerank < 0 or self.rerank > 1000:
            raise HonedError(f"--rerank must be within [0, 1000] candidates, got {self.rerank}")
        for flag, path in (("--champion", self.champion), ("--challenger", self.challenger)):
            if path and not (Path(path) / "manifest.json").is_file():
                raise HonedError(f"{flag}: {path} is not a retriever artifact (no manifest.json)")


def _one_line(exc: RequestValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
    return f"{where}: {e.get('msg', 'invalid')}".replace("\n", " ")


def create_app(cfg: ServeConfig, store=None) -> FastAPI:
    """The service for `cfg`; artifacts load in the background once it starts (``/ready`` says when)."""
    cfg.check()
    state = ServiceState(cfg, store=store)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        threading.Thread(target=state.load, args=(asyncio.get_running_loop(),), daemon=True,
                         name="honed-load").start()
        yield
        await state.stop()

    api = FastAPI(title="honed retrieval service", lifespan=lifespan)
    api.state.service = state

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        state.metrics.errors.labels("bad_request").inc()
        return error_response(422, _one_line(exc))

    api.include_router(router)
    return api
