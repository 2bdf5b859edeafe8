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

Queries to an arm go through its :class:`~honed.app.serve.batching.MicroBatcher`: one encoder call per
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
import hmac
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from honed.retriever.errors import HonedError

from .batching import MicroBatcher, Overloaded
from .traffic import CHALLENGER, CHAMPION, assign_arm, team_draft

log = logging.getLogger("honed.serve")
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in", "nin", "any", "all", "contains", "text_match",
             "text_match_insensitive", "is_empty")


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

    def check(self) -> None:
        if not 0.0 <= self.split <= 1.0:
            raise HonedError(f"--split must be within [0, 1], got {self.split}")
        if self.interleave and not self.challenger:
            raise HonedError("--interleave needs --challenger (two rankings to mix)")
        if self.challenger and Path(self.challenger).resolve() == Path(self.champion).resolve():
            raise HonedError("--champion and --challenger are the same artifact")
        if self.window_ms < 0 or self.max_batch < 1 or self.max_queue < 1 or self.max_k < 1:
            raise HonedError("--batch-window-ms must be ≥ 0 and --max-batch, --max-queue, --max-k ≥ 1")
        for flag, path in (("--champion", self.champion), ("--challenger", self.challenger)):
            if path and not (Path(path) / "manifest.json").is_file():
                raise HonedError(f"{flag}: {path} is not a retriever artifact (no manifest.json)")


# -- request bodies -------------------------------------------------------------------------------

class SearchRequest(BaseModel):
    model_config = {"extra": "forbid"}

    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, strict=True)      # strict: JSON true is not k = 1
    filters: dict | None = None
    user_id: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is blank")
        return v


class FeedbackRequest(BaseModel):
    model_config = {"extra": "forbid"}

    impression_id: str = Field(min_length=1, max_length=64)
    type: Literal["click", "dwell", "thumb"]
    doc_id: str = Field(min_length=1, max_length=512)
    dwell_ms: float | None = Field(None, ge=0, le=86_400_000)
    value: Literal[1, -1] | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _not_bool(cls, v):
        if isinstance(v, bool):           # true == 1 in Python: a thumbs-up must be said as 1, not true
            raise ValueError("value must be 1 or -1, not a boolean")
        return v


@dataclass
class _Filter:
    key: str
    value: Any
    operator: str = "=="


@dataclass
class _Filters:
    """The shape of LlamaIndex's ``MetadataFilters`` that :mod:`honed.retriever.filters` reads."""

    filters: list = field(default_factory=list)
    condition: str = "and"


def parse_filters(raw: dict | None, where: str = "filters") -> _Filters | None:
    """A ``MetadataFilters``-shaped object from JSON; a one-line :class:`HonedError` naming the bad part."""
    if raw is None:
        return None
    if "filters" not in raw:   # shorthand {"key": value}
        return _Filters([_Filter(str(k), v) for k, v in raw.items()]) if raw else None
    unknown = set(raw) - {"filters", "condition"}
    if unknown:
        raise HonedError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: filters, condition)")
    cond = raw.get("condition", "and") or "and"
    if cond not in ("and", "or", "not"):
        raise HonedError(f"{where}.condition must be and, or or not, got {cond!r}")
    if not isinstance(raw["filters"], list):
        raise HonedError(f"{where}.filters must be a list")
    out = []
    for i, f in enumerate(raw["filters"]):
        at = f"{where}.filters[{i}]"
        if not isinstance(f, dict):
            raise HonedError(f"{at} must be an object")
        if "filters" in f:
            out.append(parse_filters(f, at))
            continue
        unknown = set(f) - {"key", "value", "operator"}
        if unknown or "key" not in f:
            raise HonedError(f"{at}: needs key (and value, operator); unknown key(s) {sorted(unknown)}")
        op = f.get("operator", "==")
        if op not in OPERATORS:
            raise HonedError(f"{at}.operator {op!r} is not one of {', '.join(OPERATORS)}")
        if not isinstance(f["key"], str) or not f["key"]:
            raise HonedError(f"{at}.key must be a non-empty string")
        out.append(_Filter(f["key"], f.get("value"), op))
    return _Filters(out, cond)


# -- one served artifact --------------------------------------------------------------------------

@dataclass
class Arm:
    """A loaded artifact: its index, its encoder and the batcher that feeds them."""

    name: str
    path: str
    index: Any = None
    encoder: Any = None
    version: str = ""
    batcher: MicroBatcher | None = None

    def load(self) -> None:
        from honed.retriever.index import open_index_and_encoder

        self.index, self.encoder = open_index_and_encoder(self.path, spin=False)
        model = self.index.manifest["model"]
        # the model's own name (its run folder), not the mount point: in a container every artifact is /srv/artifact
        self.version = f"{Path(model.get('ref') or self.path).name}@{model['fingerprint'].removeprefix('sha256:')[:12]}"

    def search_batch(self, items: list[tuple[str, int, _Filters | None]]) -> list:
        """Encode every query in one call, then search: unfiltered ones in one FAISS call."""
        from honed.retriever.index import search

        vecs = self.encoder.encode_queries([q for q, _, _ in items])
        results: list = [None] * len(items)
        plain = [i for i, (_, _, f) in enumerate(items) if f is None or not f.filters]
        if plain:
            kmax = max(items[i][1] for i in plain)
            for i, hits in zip(plain, search(self.index, vecs[plain], kmax)):
                results[i] = hits[:items[i][1]]
        for i, (_, k, f) in enumerate(items):
            if results[i] is None:
                try:
                    results[i] = search(self.index, vecs[i], k, allowed=self.index.store.select(f))[0]
                except HonedError as e:
                    results[i] = e
        return [r if isinstance(r, Exception) else self._hits(r) for r in results]

    def _hits(self, hits: list[tuple[int, float]]) -> list[dict]:
        docs = self.index.docs_at([label for label, _ in hits])
        return [{"id": d["id"], "score": round(s, 6), "text": d["text"], "title": d.get("title") or "",
                 "metadata": d.get("metadata", {})} for d, (_, s) in zip(docs, hits) if d is not None]


# -- metrics --------------------------------------------------------------------------------------

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


# -- the app --------------------------------------------------------------------------------------

def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _one_line(exc: RequestValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
    return f"{where}: {e.get('msg', 'invalid')}".replace("\n", " ")


def create_app(cfg: ServeConfig, store=None) -> FastAPI:
    """The service for `cfg`; artifacts load in the background once it starts (``/ready`` says when)."""
    from honed.app.store import FeedbackStore

    cfg.check()
    arms = {CHAMPION: Arm(CHAMPION, cfg.champion)}
    if cfg.challenger:
        arms[CHALLENGER] = Arm(CHALLENGER, cfg.challenger)
    metrics = Metrics()
    state = {"ready": False, "error": None}

    def load_all(loop) -> None:
        try:
            state["store"] = store or FeedbackStore(cfg.feedback)
            for arm in arms.values():
                arm.load()
                arm.encoder.encode_queries(["warm-up"])   # first ONNX call allocates; keep it off a user's clock
        except Exception as e:   # shown by /ready; the process stays up so an operator can read it
            state["error"] = f"{type(e).__name__}: {e}"
            log.error("loading failed: %s", state["error"])
            return
        loop.call_soon_threadsafe(start_batchers)

    def start_batchers() -> None:
        for arm in arms.values():
            def on_batch(n, secs, name=arm.name):
                metrics.batch_size.labels(name).observe(n)
                metrics.batch_seconds.labels(name).observe(secs)
            arm.batcher = MicroBatcher(arm.search_batch, cfg.window_ms, cfg.max_batch, cfg.max_queue, on_batch)
            arm.batcher.start()
        state["ready"] = True

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        threading.Thread(target=load_all, args=(asyncio.get_running_loop(),), daemon=True,
                         name="honed-load").start()
        yield
        for arm in arms.values():
            if arm.batcher:
                await arm.batcher.stop()

    api = FastAPI(title="honed retrieval service", lifespan=lifespan)
    api.state.arms, api.state.metrics, api.state.status = arms, metrics, state

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        metrics.errors.labels("bad_request").inc()
        return _error(422, _one_line(exc))

    def authorised(request: Request) -> bool:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            return True
        given = request.headers.get("x-api-key") or \
            request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), key.encode())

    def refuse(request: Request) -> JSONResponse | None:
        if not authorised(request):
            metrics.errors.labels("unauthorised").inc()
            return _error(401, f"missing or wrong API key (send it in X-API-Key; the server reads "
                               f"${cfg.api_key_env})")
        if not state["ready"]:
            return _error(503, "not ready: loading models and indexes" if not state["error"]
                          else f"not ready: {state['error']}", {"Retry-After": "1"})
        return None

    @api.get("/health")
    async def health():
        return {"status": "ok"}

    @api.get("/ready")
    async def ready():
        if not state["ready"]:
            return _error(503, f"loading failed: {state['error']}" if state["error"] else "loading")
        return {"ready": True, "arms": {a.name: {"artifact": a.path, "model_version": a.version,
                                                 "backend": getattr(a.encoder, "backend", "torch"),
                                                 "documents": len(a.index)} for a in arms.values()},
                "split": cfg.split if cfg.challenger else 0.0, "interleave": cfg.interleave}

    @api.get("/metrics")
    async def prometheus():
        for a in arms.values():
            metrics.queue_depth.labels(a.name).set(a.batcher.depth() if a.batcher else 0)
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def ranked(arm: Arm, query: str, k: int, filters) -> list[dict]:
        t0 = time.perf_counter()
        hits = await arm.batcher.submit((query, k, filters))
        metrics.latency.labels("search_arm", arm.name).observe(time.perf_counter() - t0)
        return hits

    @api.post("/search")
    async def search(body: SearchRequest, request: Request):
        if (r := refuse(request)) is not None:
            return r
        t0 = time.perf_counter()
        if body.k > cfg.max_k:
            metrics.errors.labels("bad_request").inc()
            return _error(422, f"k: at most {cfg.max_k}, got {body.k}")
        if len(body.query) > cfg.max_query_chars:
            metrics.errors.labels("bad_request").inc()
            return _error(422, f"query: at most {cfg.max_query_chars} characters, got {len(body.query)}")
        try:
            filters = parse_filters(body.filters)
        except HonedError as e:
            metrics.errors.labels("bad_request").inc()
            return _error(422, str(e))
        user = body.user_id or uuid.uuid4().hex
        side = assign_arm(user, cfg.split, cfg.salt) if cfg.challenger else CHAMPION
        try:
            if side == CHALLENGER and cfg.interleave:
                served, version = "interleaved", f"{arms[CHAMPION].version}|{arms[CHALLENGER].version}"
                a, b = await asyncio.gather(ranked(arms[CHAMPION], body.query, body.k, filters),
                                            ranked(arms[CHALLENGER], body.query, body.k, filters))
                impression = uuid.uuid4().hex
                by_id = {CHAMPION: {h["id"]: h for h in a}, CHALLENGER: {h["id"]: h for h in b}}
                hits = [{**by_id[team][doc], "arm": team} for doc, team in
                        team_draft([h["id"] for h in a], [h["id"] for h in b], body.k, seed=impression)]
            else:
                served, version = side, arms[side].version
                impression = uuid.uuid4().hex
                hits = [{**h, "arm": side} for h in await ranked(arms[side], body.query, body.k, filters)]
        except Overloaded as e:
            metrics.errors.labels("overloaded").inc()
            metrics.requests.labels("search", side, "503").inc()
            return _error(503, f"overloaded: {e}; retry shortly", {"Retry-After": "1"})
        except HonedError as e:
            metrics.errors.labels("bad_request").inc()
            return _error(422, str(e))
        for rank, h in enumerate(hits, 1):
            h["rank"] = rank
        shown = [{"doc_id": h["id"], "rank": h["rank"], "score": h["score"], "arm": h["arm"], "text": h["text"]}
                 for h in hits]
        try:
            await run_in_threadpool(state["store"].record_impression, impression, user, body.query, served,
                                    version, body.k, shown)
        except Exception:   # the store is down: answer anyway, count it, and say there is nothing to click on
            log.exception("could not log impression %s", impression)
            metrics.errors.labels("impression_log").inc()
            impression = None
        metrics.requests.labels("search", served, "200").inc()
        metrics.latency.labels("search", served).observe(time.perf_counter() - t0)
        if served != "interleaved":
            for h in hits:
                h.pop("arm", None)
        return {"impression_id": impression, "arm": served, "model_version": version, "user_id": user,
                "hits": hits}

    @api.post("/feedback")
    async def feedback(body: FeedbackRequest, request: Request):
        if (r := refuse(request)) is not None:
            return r
        st = state["store"]
        try:
            return await _record_feedback(st, body)
        except Exception as e:   # the store is down or locked beyond its retries: not acknowledged, retry later
            log.exception("feedback not recorded")
            metrics.errors.labels("feedback_store").inc()
            return _error(503, f"feedback store unavailable ({e}); not recorded, retry", {"Retry-After": "1"})

    async def _record_feedback(st, body: FeedbackRequest):
        imp = await run_in_threadpool(st.impression, body.impression_id)
        if imp is None:
            metrics.errors.labels("unknown_impression").inc()
            return _error(404, f"impression_id {body.impression_id!r} is unknown")
        if body.doc_id not in {h["doc_id"] for h in imp["shown"]}:
            metrics.errors.labels("bad_request").inc()
            return _error(422, f"doc_id {body.doc_id!r} was not shown in impression {body.impression_id}")
        if body.type == "thumb" and body.value is None:
            return _error(422, "value: a thumb needs value 1 or -1")
        if body.type == "dwell" and body.dwell_ms is None:
            return _error(422, "dwell_ms: a dwell event needs dwell_ms")
        row = await run_in_threadpool(st.record_interaction, body.impression_id, body.type, body.doc_id,
                                      body.dwell_ms, body.value)
        metrics.feedback.labels(body.type).inc()
        metrics.requests.labels("feedback", imp["arm"], "200").inc()
        return {"recorded": int(row)}

    return api
