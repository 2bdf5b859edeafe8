"""Hybrid retrieval: an artifact's BM25 index beside FAISS, kept in step by updates, fused by RRF or a weighted
sum chosen on dev queries, served through the retriever, the CLI and the HTTP service.

Real parts: the packaged MiniLM, the SciFact fixture slice, bm25s, FAISS and SQLite; the artifact gets its BM25
index from `package_artifact(..., bm25=True)` (no re-encoding of the slice).
"""
from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from honed.retriever.artifact import package_artifact
from honed.retriever.errors import HonedError
from honed.retriever.fusion import record_fusion, rrf, search_modes, weighted
from honed.retriever.index import load_index, search

from conftest import Server
from test_artifact import kill_update_before_commit
from test_cli import run

NEW = {"n-zebra": {"text": "Zebrafish regenerate their heart muscle after cryoinjury within sixty days."}}


@pytest.fixture(scope="module")
def hybrid_art(tmp_path_factory, slice_index):
    return package_artifact(slice_index, tmp_path_factory.mktemp("hyb") / "art", bm25=True)


def _ids(index, hits):
    return [d["id"] for d in index.docs_at([p for p, _ in hits])]


def test_fusions_by_hand():
    a, b = [(1, 0.9), (2, 0.5)], [(2, 7.0), (3, 6.0)]
    assert rrf([a, b], k=3) == [(2, pytest.approx(1 / 62 + 1 / 61)), (1, pytest.approx(1 / 61)),
                                (3, pytest.approx(1 / 62))]
    # min-max per list: dense 1 → 1.0, 2 → 0.0; bm25 2 → 1.0, 3 → 0.0
    assert weighted(a, b, 0.7, k=3) == [(1, pytest.approx(0.7)), (2, pytest.approx(0.3)), (3, 0.0)]
    assert weighted(a, b, 1.0, k=2)[0][0] == 1 and weighted(a, b, 0.0, k=2)[0][0] == 2
    with pytest.raises(HonedError, match="weight must be in"):
        weighted(a, b, 1.5, k=2)


def test_bm25_mode_is_the_evaluation_baseline_and_hybrid_fuses_both(hybrid_art, scifact_slice, minilm):
    from honed.retriever.bm25 import bm25_search

    idx = load_index(hybrid_art)
    assert idx.manifest["bm25"]["library"] == "bm25s" and idx.hybrid is None
    qids = sorted(scifact_slice.queries)[:6]
    texts = [scifact_slice.queries[q] for q in qids]
    vecs = minilm.encode_queries(texts)
    baseline = bm25_search(scifact_slice.corpus, dict(zip(qids, texts)), k=5)
    lexical = search_modes(idx, None, texts, 5, "bm25")
    for q, hits in zip(qids, lexical):
        assert _ids(idx, hits) == list(baseline[q])                     # same set-up as `honed eval beir`'s bm25
        assert [s for _, s in hits] == pytest.approx(list(baseline[q].values()), rel=1e-5)
    dense = search(idx, vecs, 100)
    deep = search_modes(idx, None, texts, 100, "bm25")
    for i, hits in enumerate(search_modes(idx, vecs, texts, 10, "hybrid")):
        assert hits == rrf([dense[i], deep[i]], 10)                     # RRF when no fusion was recorded
    filtered = search_modes(idx, vecs, texts[:1], 10, "hybrid", allowed=np.array(sorted(p for p, _ in dense[0][:3])))
    assert sorted(p for p, _ in filtered[0]) == sorted(p for p, _ in dense[0][:3])   # filters bind both sides


def test_updates_keep_bm25_and_faiss_in_step_in_a_copy_opened_elsewhere(tmp_path, hybrid_art, monkeypatch):
    from honed.retriever import HonedRetriever
    from honed.retriever.verify import verify_index

    copy = tmp_path / "elsewhere" / "art"
    shutil.copytree(hybrid_art, copy)
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = HonedRetriever.from_dir("art", similarity_top_k=3, mode="hybrid")
    n0 = len(r.index)
    assert r.insert(NEW) == {"added": 1, "replaced": 0}
    assert r.retrieve("zebrafish heart regeneration")[0].node.node_id == "n-zebra"
    assert _ids(r.index, search_modes(r.index, None, ["zebrafish cryoinjury"], 1, "bm25")[0]) == ["n-zebra"]
    assert "bm25 labels" in verify_index(copy)["checked"]
    r.delete(["n-zebra"])
    for mode in ("dense", "bm25", "hybrid"):
        r.mode = mode
        assert "n-zebra" not in [n.node.node_id for n in r.retrieve("zebrafish heart regeneration cryoinjury")]
    fresh = load_index(copy)
    assert len(fresh) == len(fresh.bm25) == n0 and fresh.generation == 3
    assert sorted(p.name for p in copy.glob("bm25-*")) == ["bm25-3"]   # the old generations' folders are gone
    assert verify_index(copy)["verified"] == "full"


def test_update_killed_before_commit_keeps_one_generation_of_both(tmp_path, hybrid_art):
    art = tmp_path / "a"
    shutil.copytree(hybrid_art, art)
    before = load_index(art)
    n0, ids0 = len(before), before.doc_ids
    first = next(before.store.iter_docs())[1]
    kill_update_before_commit(art)      # FAISS file and BM25 folder of generation 2 written, not committed
    assert (art / "bm25-2").is_dir() and (art / "index-2.faiss").exists()
    after = load_index(art)
    assert after.generation == 1 and len(after) == len(after.bm25) == n0 and after.doc_ids == ids0
    assert after.bm25.folder.name == "bm25-1"
    from honed.retriever.updates import delete_documents

    delete_documents(after, ids0[:1])                       # the next update removes the strays
    assert sorted(p.name for p in art.glob("bm25-*")) == ["bm25-2"]
    again = load_index(art)
    assert first["id"] == ids0[0] and len(again.bm25) == len(again) == n0 - 1
    assert ids0[0] not in _ids(again, again.bm25.search([first["text"][:300]], 5)[0])


def test_fusion_chosen_on_dev_queries_is_recorded_and_used(tmp_path, hybrid_art, scifact_slice, minilm):
    """The slice has one split, so its test queries stand in for a dev split here (the mechanism is the point)."""
    from honed.rag_eval.fusion import WEIGHTS, best_fusion, choose_fusion
    from honed.retriever.artifact import artifact_info

    art = tmp_path / "a"
    shutil.copytree(hybrid_art, art)
    p = run("index", "fuse", str(art), "--data", "tests/fixtures/scifact-slice", "--split", "test", "--dry-run")
    assert p.returncode == 0 and "would record" in p.stdout, p.stderr
    assert load_index(art).hybrid is None
    res = choose_fusion(art, "tests/fixtures/scifact-slice", split="test", max_queries=20)
    assert [r["weight"] for r in res["rows"]] == [None, *WEIGHTS] and res["queries_seen_in_training"] is None
    assert best_fusion(res["rows"])["ndcg@10"] == res["dev_ndcg@10"] == max(r["ndcg@10"] for r in res["rows"])
    idx = load_index(art)
    assert idx.hybrid["fusion"] == res["fusion"] and idx.hybrid["weight"] == res["weight"]
    assert artifact_info(art)["hybrid"]["chosen_on"].startswith("tests/fixtures/scifact-slice (test, 20 queries)")
    record_fusion(idx, "weighted", 0.3, {"chosen_on": "by hand"})
    q = scifact_slice.queries[sorted(scifact_slice.queries)[0]]
    vec = minilm.encode_queries([q])
    got = search_modes(load_index(art), vec, [q], 10, "hybrid")[0]
    assert got == weighted(search(idx, vec, 100)[0], search_modes(idx, None, [q], 100, "bm25")[0], 0.3, 10)
    shipped = load_index(package_artifact(art, tmp_path / "ship"))   # packaging keeps the BM25 side and the choice
    assert shipped.hybrid["weight"] == 0.3 and len(shipped.bm25) == len(shipped)
    with pytest.raises(HonedError, match="needs a weight"):
        record_fusion(idx, "weighted")


def test_modes_need_a_bm25_index_and_say_so_in_one_line(slice_index):
    from honed.retriever import HonedRetriever

    with pytest.raises(HonedError, match="has no BM25 index.*--bm25"):
        HonedRetriever.from_dir(slice_index, mode="hybrid")
    with pytest.raises(HonedError, match="mode must be one of dense, bm25, hybrid"):
        HonedRetriever.from_dir(slice_index, mode="sparse")
    p = run("search", str(slice_index), "cancer", "--mode", "bm25")
    assert p.returncode == 2 and "has no BM25 index" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_eval_systems_parse_hybrid_specs():
    from honed.rag_eval.beir_eval import parse_system

    assert parse_system("hybrid=runs/demo+bm25").hybrid == {"fusion": "rrf"}
    s = parse_system("h=minilm+bm25:0.7")
    assert (s.name, s.model, s.kind, s.hybrid) == ("h", "minilm", "hybrid", {"fusion": "weighted", "weight": 0.7})
    assert parse_system("base=minilm").kind == "dense" and parse_system("bm25").kind == "bm25"
    for bad in ("h=minilm+bm25:2", "h=bm25+bm25"):
        with pytest.raises(HonedError, match="--system"):
            parse_system(bad)


def test_service_serves_the_hybrid_mode_equal_to_in_process(tmp_path, hybrid_art, scifact_slice, minilm):
    srv = Server([str(hybrid_art), "--mode", "hybrid"], tmp_path / "feedback.db")
    try:
        srv.wait_ready()
        idx = load_index(hybrid_art)
        for qid in sorted(scifact_slice.queries)[:3]:
            q = scifact_slice.queries[qid]
            body = httpx.post(srv.url + "/search", json={"query": q, "k": 5}, timeout=30).json()
            want = search_modes(idx, minilm.encode_queries([q]), [q], 5, "hybrid")[0]
            assert [h["id"] for h in body["hits"]] == _ids(idx, want)
    finally:
        srv.stop()
    bad = Server([str(tmp_path / "nope"), "--mode", "sparse"], tmp_path / "f2.db")
    assert bad.proc.wait(60) == 2 and "--mode must be dense, bm25 or hybrid" in bad.log.read_text()
    info = json.loads(run("index", "info", str(hybrid_art)).stdout)
    assert info["modes"] == ["dense", "bm25", "hybrid"]
