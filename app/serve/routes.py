"""The service's endpoints: ``/health``, ``/ready``, ``/metrics``, ``POST /search``, ``POST /feedback``.

Each route reads the running :class:`~app.serve.state.ServiceState` from
``request.app.state.service``; a protected route asks it first whether to refuse
(no key, not ready). What each endpoint takes and answers: :mod:`.service`.
"""
from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from honed.retriever.errors import HonedError

from .batching import Overloaded
from .requests import FeedbackRequest, SearchRequest, parse_filters
from .state import error_response, log
from .traffic import CHALLENGER, CHAMPION, assign_arm, team_draft

router = APIRouter()


@router.get("/health")
async def health():
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request):
    st = request.app.state.service
    cfg, arms = st.cfg, st.arms
    if not st.ready:
        return error_response(503, f"loading failed: {st.error}" if st.error else "loading")
    return {"ready": True, "arms": {a.name: {"artifact": a.path, "model_version": a.version,
                                             "backend": getattr(a.encoder, "backend", "torch"),
                                             "mode": a.mode, "rerank": a.rerank_top_n,
                                             "reranker_backend": a.reranker.backend if a.reranker else None,
                                             "documents": len(a.index)} for a in arms.values()},
            "split": cfg.split if cfg.challenger else 0.0, "interleave": cfg.interleave}


@router.get("/metrics")
async def prometheus(request: Request):
    st = request.app.state.service
    arms, metrics = st.arms, st.metrics
    for a in arms.values():
        metrics.queue_depth.labels(a.name).set(a.batcher.depth() if a.batcher else 0)
    return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")


@router.post("/search")
async def search(body: SearchRequest, request: Request):
    st = request.app.state.service
    cfg, metrics = st.cfg, st.metrics
    if (r := st.refuse(request)) is not None:
        return r
    t0 = time.perf_counter()
    if body.k > cfg.max_k:
        metrics.errors.labels("bad_request").inc()
        return error_response(422, f"k: at most {cfg.max_k}, got {body.k}")
    if len(body.query) > cfg.max_query_chars:
        metrics.errors.labels("bad_request").inc()
        return error_response(422, f"query: at most {cfg.max_query_chars} characters, got {len(body.query)}")
    try:
        filters = parse_filters(body.filters)
    except HonedError as e:
        metrics.errors.labels("bad_request").inc()
        return error_response(422, str(e))
    user = body.user_id or uuid.uuid4().hex
    side = assign_arm(user, cfg.split, cfg.salt) if cfg.challenger else CHAMPION
    try:
        served, version, impression, hits = await _ranking(st, side, body, filters)
    except Overloaded as e:
        metrics.errors.labels("overloaded").inc()
        metrics.requests.labels("search", side, "503").inc()
        return error_response(503, f"overloaded: {e}; retry shortly", {"Retry-After": "1"})
    except HonedError as e:
        metrics.errors.labels("bad_request").inc()
        return error_response(422, str(e))
    for rank, h in enumerate(hits, 1):
        h["rank"] = rank
    shown = [{"doc_id": h["id"], "rank": h["rank"], "score": h["score"], "arm": h["arm"], "text": h["text"]}
             for h in hits]
    try:
        await run_in_threadpool(st.store.record_impression, impression, user, body.query, served,
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


async def _ranking(st, side: str, body: SearchRequest, filters) -> tuple[str, str, str, list[dict]]:
    """The arm that answers, its model version, a new impression id, and its hits (each tagged with its arm):
    one arm's ranking, or with interleaving a team-draft mix of both (:func:`~app.serve.traffic.team_draft`)."""
    arms = st.arms
    impression = uuid.uuid4().hex
    if side == CHALLENGER and st.cfg.interleave:
        a, b = await asyncio.gather(st.ranked(arms[CHAMPION], body.query, body.k, filters),
                                    st.ranked(arms[CHALLENGER], body.query, body.k, filters))
        by_id = {CHAMPION: {h["id"]: h for h in a}, CHALLENGER: {h["id"]: h for h in b}}
        hits = [{**by_id[team][doc], "arm": team} for doc, team in
                team_draft([h["id"] for h in a], [h["id"] for h in b], body.k, seed=impression)]
        return "interleaved", f"{arms[CHAMPION].version}|{arms[CHALLENGER].version}", impression, hits
    hits = [{**h, "arm": side} for h in await st.ranked(arms[side], body.query, body.k, filters)]
    return side, arms[side].version, impression, hits


@router.post("/feedback")
async def feedback(body: FeedbackRequest, request: Request):
    st = request.app.state.service
    if (r := st.refuse(request)) is not None:
        return r
    metrics = st.metrics
    try:
        return await _record_feedback(st, body)
    except Exception as e:   # the store is down or locked beyond its retries: not acknowledged, retry later
        log.exception("feedback not recorded")
        metrics.errors.labels("feedback_store").inc()
        return error_response(503, f"feedback store unavailable ({e}); not recorded, retry", {"Retry-After": "1"})


async def _record_feedback(st, body: FeedbackRequest):
    metrics = st.metrics
    imp = await run_in_threadpool(st.store.impression, body.impression_id)
    if imp is None:
        metrics.errors.labels("unknown_impression").inc()
        return error_response(404, f"impression_id {body.impression_id!r} is unknown")
    if body.doc_id not in {h["doc_id"] for h in imp["shown"]}:
        metrics.errors.labels("bad_request").inc()
        return error_response(422, f"doc_id {body.doc_id!r} was not shown in impression {body.impression_id}")
    if body.type == "thumb" and body.value is None:
        return error_response(422, "value: a thumb needs value 1 or -1")
    if body.type == "dwell" and body.dwell_ms is None:
        return error_response(422, "dwell_ms: a dwell event needs dwell_ms")
    row = await run_in_threadpool(st.store.record_interaction, body.impression_id, body.type, body.doc_id,
                                  body.dwell_ms, body.value)
    metrics.feedback.labels(body.type).inc()
    metrics.requests.labels("feedback", imp["arm"], "200").inc()
    return {"recorded": int(row)}
