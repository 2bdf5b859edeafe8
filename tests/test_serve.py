"""`honed serve` as a real uvicorn process over real artifacts (MiniLM, FAISS, SQLite), driven over HTTP.

The champion is the SciFact slice index; the challenger is the same model over the slice with the gold
abstracts of half the queries removed: a genuinely worse ranker, so simulated users who click what the
qrels call relevant must prefer the champion in the interleaving test.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import HONED, Server

KEY = "test-key-123"


@pytest.fixture(scope="module")
def challenger_index(tmp_path_factory, scifact_slice, minilm):
    from honed.retriever.index import build_index

    drop = {d for q in sorted(scifact_slice.qrels)[::2] for d in scifact_slice.qrels[q]}
    out = tmp_path_factory.mktemp("chal") / "challenger"
    build_index(minilm, {d: v for d, v in scifact_slice.corpus.items() if d not in drop}, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, slice_index):
    s = Server([str(slice_index), "--batch-window-ms", "20"], tmp_path_factory.mktemp("srv") / "feedback.db",
               env={"HONED_API_KEY": KEY})
    s.wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30) as c:
        yield c


def test_health_ready_and_search_equal_in_process_retrieval(client, slice_index, scifact_slice, minilm):
    from honed.retriever.index import load_index, search

    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["arms"]["champion"]["documents"] == len(scifact_slice.corpus)
    idx = load_index(slice_index)
    for qid in sorted(scifact_slice.queries)[:5]:
        q = scifact_slice.queries[qid]
        r = client.post("/search", json={"query": q, "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        labels = search(idx, minilm.encode_queries([q]), 5)[0]
        want = [d["id"] for d in idx.docs_at([lab for lab, _ in labels])]
        assert [h["id"] for h in body["hits"]] == want
        assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
        assert all(abs(h["score"] - s) < 1e-4 for h, (_, s) in zip(body["hits"], labels))
        assert body["hits"][0]["text"] == scifact_slice.corpus[want[0]]["text"]
        assert body["arm"] == "champion" and body["impression_id"]


def test_metadata_filters_restrict_results(client, scifact_slice):
    ids = sorted(scifact_slice.corpus)[:3]
    q = scifact_slice.queries[sorted(scifact_slice.queries)[0]]
    full = {"filters": [{"key": "doc_id", "operator": "in", "value": ids}], "condition": "and"}
    hits = client.post("/search", json={"query": q, "k": 10, "filters": full}).json()["hits"]
    assert sorted(h["id"] for h in hits) == ids
    one = client.post("/search", json={"query": q, "filters": {"doc_id": ids[1]}}).json()["hits"]
    assert [h["id"] for h in one] == [ids[1]]


@pytest.mark.parametrize("body, where", [
    ({"query": "x", "k": 0}, "k"),
    ({"query": "x", "k": 101}, "k: at most 100"),
    ({"query": "   "}, "query"),
    ({"query": "x", "colour": "red"}, "colour"),
    ({"query": "x", "filters": {"filters": [{"key": "a", "operator": "~", "value": 1}]}}, "operator '~'"),
    ({"query": "x", "filters": {"filters": "a"}}, "filters.filters must be a list"),
    ({"k": 3}, "query"),
])
def test_bad_requests_get_a_4xx_with_one_line(client, body, where):
    r = client.post("/search", json=body)
    assert r.status_code == 422
    msg = r.json()["error"]
    assert where in msg and "\n" not in msg


def test_bad_json_and_missing_key(client, server):
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "\n" not in r.json()["error"]
    r = httpx.post(server.url + "/search", json={"query": "x"})
    assert r.status_code == 401 and "HONED_API_KEY" in r.json()["error"]
    assert httpx.get(server.url + "/health").status_code == 200     # probes need no key


def test_json_booleans_are_not_numbers(client):
    """JSON true is not k = 1, nor a thumbs-up of +1: each is a 422 naming the field."""
    r = client.post("/search", json={"query": "aspirin", "k": True})
    assert r.status_code == 422 and "k" in r.text, r.text
    r = client.post("/feedback", json={"impression_id": "x", "type": "thumb", "doc_id": "d", "value": True})
    assert r.status_code == 422 and "not a boolean" in r.text, r.text


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=12),
                     st.sampled_from(["aspirin", "", "  ", "==", "in", "and", "x" * 300]))
json_any = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), c, max_size=3)),
                        max_leaves=8)
search_bodies = st.one_of(json_any, st.fixed_dictionaries(
    {"query": json_any}, optional={"k": json_any, "user_id": json_any, "filters": st.one_of(json_any, st.fixed_dictionaries(
        {"filters": st.lists(st.dictionaries(st.sampled_from(["key", "value", "operator", "x"]), json_any,
                                             max_size=4), max_size=3)}, optional={"condition": json_any}))}))
feedback_bodies = st.one_of(json_any, st.fixed_dictionaries(
    {"impression_id": json_any, "type": st.one_of(json_any, st.sampled_from(["click", "dwell", "thumb"])),
     "doc_id": json_any}, optional={"dwell_ms": json_any, "value": json_any}))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(search=search_bodies, feedback=feedback_bodies)
def test_fuzzed_request_bodies_get_an_answer_or_a_one_line_4xx(client, search, feedback):
    """Any JSON body: a result or a 4xx whose error is one line, never a 500 or a dropped connection."""
    for path, body in (("/search", search), ("/feedback", feedback)):
        r = client.post(path, json=body)
        assert r.status_code in (200, 404, 422), (path, body, r.status_code, r.text)
        if r.status_code != 200:
            msg = r.json()["error"]
            assert isinstance(msg, str) and msg and "\n" not in msg, (path, body, msg)


def test_impressions_and_feedback_are_logged(client, server, scifact_slice):
    q = scifact_slice.queries[sorted(scifact_slice.queries)[1]]
    body = client.post("/search", json={"query": q, "k": 3, "user_id": "alice"}).json()
    imp, doc = body["impression_id"], body["hits"][1]["id"]
    ok = client.post("/feedback", json={"impression_id": imp, "type": "click", "doc_id": doc})
    assert ok.status_code == 200 and ok.json()["recorded"] >= 1
    assert client.post("/feedback", json={"impression_id": imp, "type": "dwell", "doc_id": doc,
                                          "dwell_ms": 45000}).status_code == 200
    assert client.post("/feedback", json={"impression_id": "nope", "type": "click",
                                          "doc_id": doc}).status_code == 404
    r = client.post("/feedback", json={"impression_id": imp, "type": "click", "doc_id": "not-shown"})
    assert r.status_code == 422 and "not shown" in r.json()["error"]
    assert client.post("/feedback", json={"impression_id": imp, "type": "thumb", "doc_id": doc}).status_code == 422
    con = sqlite3.connect(server.db)
    row = con.execute("SELECT query, arm, model_version, session_id, shown FROM impressions "
                      "WHERE impression_id = ?", (imp,)).fetchone()
    assert row[0] == q and row[1] == "champion" and row[3] == "alice" and "@" in row[2]
    assert [h["doc_id"] for h in json.loads(row[4])] == [h["id"] for h in body["hits"]]
    acts = con.execute("SELECT kind, doc_id, dwell_ms FROM interactions WHERE impression_id = ? ORDER BY id",
                       (imp,)).fetchall()
    assert acts == [("click", doc, None), ("dwell", doc, 45000.0)]


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_concurrent_requests_share_an_encoder_call(client, server, scifact_slice):
    before = client.get("/metrics").text
    n_before, b_before = _metric(before, "honed_batch_size_sum"), _metric(before, "honed_batch_size_count")
    queries = [scifact_slice.queries[q] for q in sorted(scifact_slice.queries)[:24]]

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as c:
            return await asyncio.gather(*(c.post("/search", json={"query": q, "k": 3}) for q in queries))

    assert all(r.status_code == 200 for r in asyncio.run(burst()))
    after = client.get("/metrics").text
    queries_encoded = _metric(after, "honed_batch_size_sum") - n_before
    batches = _metric(after, "honed_batch_size_count") - b_before
    assert queries_encoded == 24 and batches < 24      # Prometheus' own count: fewer calls than queries
    assert 'honed_request_latency_seconds_bucket{arm="champion",endpoint="search"' in after


def test_full_queue_sheds_load_with_503(tmp_path, slice_index, scifact_slice):
    s = Server([str(slice_index), "--max-queue", "1", "--max-batch", "1", "--batch-window-ms", "0"],
               tmp_path / "fb.db")
    try:
        s.wait_ready()
        q = scifact_slice.queries[sorted(scifact_slice.queries)[0]]

        async def burst():
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                return await asyncio.gather(*(c.post("/search", json={"query": f"{q} {i}"}) for i in range(40)))

        codes = [r.status_code for r in asyncio.run(burst())]
        assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
        shed = next(r for r in asyncio.run(burst()) if r.status_code == 503)
        assert shed.headers["retry-after"] == "1" and "overloaded" in shed.json()["error"]
        assert httpx.get(s.url + "/ready").status_code == 200      # still up
    finally:
        s.stop()


def test_ab_split_is_sticky_and_interleaving_credits_the_better_ranker(tmp_path, slice_index, challenger_index,
                                                                         scifact_slice):
    from honed.app.clicks import click_metrics
    from honed.app.serve.traffic import assign_arm
    from honed.app.store import FeedbackStore

    ab = Server(["--champion", str(slice_index), "--challenger", str(challenger_index), "--split", "0.5",
                 "--experiment", "e1"], tmp_path / "ab.db")
    il = Server(["--champion", str(slice_index), "--challenger", str(challenger_index), "--split", "1.0",
                 "--interleave"], tmp_path / "il.db")
    try:
        ab.wait_ready(), il.wait_ready()
        queries = sorted(scifact_slice.queries)
        with httpx.Client(base_url=ab.url, timeout=30) as c:
            seen = {}
            for u in range(30):
                arms = {c.post("/search", json={"query": scifact_slice.queries[queries[i % 25]], "k": 3,
                                               "user_id": f"user-{u}"}).json()["arm"] for i in range(3)}
                assert len(arms) == 1                              # sticky
                seen[u] = arms.pop()
                assert seen[u] == assign_arm(f"user-{u}", 0.5, "e1")  # the documented hash, not a coin
            assert set(seen.values()) == {"champion", "challenger"}
        with httpx.Client(base_url=il.url, timeout=30) as c:
            for i, qid in enumerate(queries):
                body = c.post("/search", json={"query": scifact_slice.queries[qid], "k": 6,
                                               "user_id": f"u{i}"}).json()
                assert body["arm"] == "interleaved"
                teams = [h["arm"] for h in body["hits"]]
                assert set(teams) <= {"champion", "challenger"}
                # team-draft: after every prefix, the teams' picks differ by at most one
                assert all(abs(teams[:n].count("champion") - teams[:n].count("challenger")) <= 1
                           for n in range(1, len(teams) + 1))
                for h in body["hits"]:   # a simulated user clicks what the qrels call relevant
                    if scifact_slice.qrels[qid].get(h["id"], 0) > 0:
                        assert c.post("/feedback", json={"impression_id": body["impression_id"], "type": "click",
                                                         "doc_id": h["id"]}).status_code == 200
        il_metrics = click_metrics(FeedbackStore(tmp_path / "il.db"))["interleaving"]
        assert il_metrics["champion_wins"] > il_metrics["challenger_wins"]
        assert il_metrics["challenger_preference"] < 0.5
        ab_metrics = click_metrics(FeedbackStore(tmp_path / "ab.db"))["arms"]
        assert set(ab_metrics) == {"champion", "challenger"} and sum(m["impressions"] for m in ab_metrics.values()) == 90
    finally:
        ab.stop(), il.stop()


def test_kill_9_under_load_loses_no_acknowledged_feedback(tmp_path, slice_index, scifact_slice):
    s = Server([str(slice_index)], tmp_path / "fb.db")
    s.wait_ready()
    q = scifact_slice.queries[sorted(scifact_slice.queries)[0]]
    first = httpx.post(s.url + "/search", json={"query": q, "k": 3}).json()
    acked: list[int] = []

    async def clicker(c):
        while True:
            try:
                r = await c.post("/feedback", json={"impression_id": first["impression_id"], "type": "click",
                                                    "doc_id": first["hits"][0]["id"]})
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                acked.append(r.json()["recorded"])

    async def load():
        async with httpx.AsyncClient(base_url=s.url, timeout=10) as c:
            tasks = [asyncio.create_task(clicker(c)) for _ in range(8)]
            while len(acked) < 150:
                await asyncio.sleep(0.01)
            os.kill(s.proc.pid, signal.SIGKILL)
            await asyncio.wait(tasks, timeout=30)

    try:
        asyncio.run(load())
        s.proc.wait(10)
        stored = {r[0] for r in sqlite3.connect(s.db).execute("SELECT id FROM interactions")}
        assert len(acked) >= 150 and set(acked) <= stored
        s.restart()
        t0 = time.monotonic()
        s.wait_ready()
        assert time.monotonic() - t0 < 120
        r = httpx.post(s.url + "/feedback", json={"impression_id": first["impression_id"], "type": "click",
                                                  "doc_id": first["hits"][0]["id"]})
        assert r.status_code == 200 and r.json()["recorded"] > max(stored)
    finally:
        s.stop()


def test_cli_refuses_bad_serve_flags_in_one_line(tmp_path, slice_index):
    import subprocess

    for args, msg in ([["serve"], "serve what"],
                      [["serve", str(tmp_path)], "not a retriever artifact"],
                      [["serve", str(slice_index), "--split", "1.5"], "--split"],
                      [["serve", str(slice_index), "--interleave"], "--interleave needs --challenger"],
                      [["serve", "--champion", str(slice_index), "--challenger", str(slice_index)], "same artifact"]):
        p = subprocess.run([HONED, *args], capture_output=True, text=True)
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
