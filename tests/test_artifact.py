"""The retriever artifact: portable, versioned, updated in place, and usable through LlamaIndex's own classes."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pytest

from honed.retriever.artifact import package_artifact
from honed.retriever.errors import HonedError
from honed.retriever.index import load_index, search
from honed.retriever.updates import add_documents, delete_documents

from test_cli import run


def _ids(index, enc, query, k=10):
    hits = search(index, enc.encode_queries([query]), k)[0]
    return [d["id"] for d in index.docs_at([p for p, _ in hits])]


def test_copied_artifact_works_from_a_project_with_its_own_app_package(tmp_path, slice_index, scifact_slice):
    """What a RAG builder does: copy the artifact into their project and use it from their own code."""
    project = tmp_path / "myproject"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("WHO = 'the user app'\n")
    art = project / "retrievers" / "scifact"
    shutil.copytree(slice_index, art)
    qid, query = next(iter(scifact_slice.queries.items()))
    script = textwrap.dedent(f"""
        import asyncio, sys
        import app                                   # the project's own package, not honed's
        assert app.WHO == "the user app"
        from honed import HonedRetriever, HonedVectorStore
        from llama_index.core import VectorStoreIndex, Document
        from llama_index.core.llms import MockLLM    # the generator only; retrieval is real
        from llama_index.core.query_engine import RetrieverQueryEngine

        r = HonedRetriever.from_dir("retrievers/scifact", similarity_top_k=3)
        print("HIT", r.retrieve({query!r})[0].node.node_id)
        r.insert({{"mine-1": {{"text": "Zebrafish fins regenerate through blastema formation."}}}})
        print("NEW", r.retrieve("zebrafish fin regeneration blastema")[0].node.node_id)
        print("DEL", r.delete(["mine-1"]), "mine-1" in [n.node.node_id for n in r.retrieve("zebrafish fin")])
        engine = RetrieverQueryEngine.from_args(r, llm=MockLLM(max_tokens=4))
        print("ENGINE", engine.query({query!r}).source_nodes[0].node.node_id)
        store = HonedVectorStore.from_dir("retrievers/scifact")
        index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model())
        index.insert(Document(text="Axolotls regrow whole limbs after amputation.", id_="src-7"))
        print("VS", index.as_retriever(similarity_top_k=1).retrieve("axolotl limb regrowth")[0].node.ref_doc_id)
        index.delete_ref_doc("src-7")
        got = asyncio.run(index.as_retriever(similarity_top_k=3).aretrieve("axolotl limb regrowth"))
        print("VSDEL", any(n.node.ref_doc_id == "src-7" for n in got))
        print("HONED_FROM", __import__("honed").__file__)
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(project)})
    assert p.returncode == 0, p.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in p.stdout.strip().splitlines())
    assert out["HIT"] in scifact_slice.qrels[qid] and out["ENGINE"] in scifact_slice.qrels[qid]
    assert out["NEW"] == "mine-1" and out["DEL"].endswith("False") and "'deleted': 1" in out["DEL"]
    assert out["VS"] == "src-7" and out["VSDEL"] == "False"
    assert not out["HONED_FROM"].startswith(str(project))


def test_updates_keep_ids_stable_and_deleted_ids_gone(tmp_path, slice_index, minilm):
    art = tmp_path / "a"
    shutil.copytree(slice_index, art)
    idx = load_index(art)
    n0 = len(idx)
    victim = idx.doc_ids[0]
    text = idx.docs_at([0])[0]["text"]
    assert victim in _ids(idx, minilm, text)
    assert delete_documents(idx, [victim, "no-such-id"]) == {"deleted": 1, "missing": ["no-such-id"]}
    assert victim not in _ids(idx, minilm, text, k=len(idx) + 5), "a deleted document never comes back"
    with pytest.raises(HonedError, match="already in"):
        add_documents(idx, {idx.doc_ids[0]: {"text": "x"}}, encoder=minilm)
    assert add_documents(idx, {victim: {"text": text}}, encoder=minilm) == {"added": 1, "replaced": 0}
    assert add_documents(idx, {victim: {"text": "A different abstract about zebrafish."}}, encoder=minilm,
                         upsert=True) == {"added": 0, "replaced": 1}
    assert _ids(idx, minilm, "zebrafish")[0] == victim and len(idx) == n0
    # another process opening the artifact sees the same state; the first FAISS file is gone
    fresh = load_index(art)
    assert fresh.generation == 4 and len(fresh) == n0 and sorted(p.name for p in art.glob("index-*.faiss")) == ["index-4.faiss"]
    assert _ids(fresh, minilm, "zebrafish")[0] == victim
    # a reader opened before an update refreshes itself on its next search
    add_documents(fresh, {"late": {"text": "Tardigrades survive the vacuum of space."}}, encoder=minilm)
    assert _ids(idx, minilm, "tardigrade vacuum")[0] == "late"


def test_hnsw_masks_deletes(tmp_path, scifact_slice, minilm):
    from honed.retriever.index import build_index

    art = build_index(minilm, scifact_slice.corpus, tmp_path / "h", faiss_kind="hnsw", show_progress=False)
    idx = load_index(art)
    doc = next(iter(scifact_slice.corpus))
    delete_documents(idx, [doc])
    assert idx.faiss_index.ntotal == len(scifact_slice.corpus) and len(idx.tombstones) == 1
    assert doc not in _ids(idx, minilm, scifact_slice.corpus[doc]["text"], k=len(idx))
    assert doc not in _ids(load_index(art), minilm, scifact_slice.corpus[doc]["text"], k=len(idx))
    from honed.retriever.artifact import package_artifact   # packaging drops the masked vector for good

    shipped = load_index(package_artifact(art, tmp_path / "ship"))
    assert len(shipped) == len(idx) and shipped.faiss_index.ntotal == len(idx) and not len(shipped.tombstones)
    assert doc not in _ids(shipped, minilm, scifact_slice.corpus[doc]["text"], k=len(idx))


def kill_update_before_commit(art) -> None:
    """Delete 5 documents of `art` in a child process and SIGKILL it after the next generation's files and row
    changes are written, before the commit."""
    code = textwrap.dedent(f"""
        import time
        from honed.retriever import store, index, updates
        real = store.DocStore.set_meta
        def slow(self, values):
            real(self, values)
            if "generation" in values:
                print("written", flush=True); time.sleep(60)
        store.DocStore.set_meta = slow
        idx = index.load_index({str(art)!r})
        updates.delete_documents(idx, idx.doc_ids[:5])
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"written"
    proc.kill()
    proc.wait()


def test_update_killed_before_commit_leaves_the_previous_state(tmp_path, slice_index, minilm):
    art = tmp_path / "a"
    shutil.copytree(slice_index, art)
    before = load_index(art)
    n0, ids0 = len(before), before.doc_ids
    kill_update_before_commit(art)      # new FAISS file on disk, rows changed, not committed
    assert (art / "index-2.faiss").exists()
    after = load_index(art)
    assert after.generation == 1 and len(after) == n0 and after.doc_ids == ids0
    delete_documents(after, ids0[:1])                      # the next update cleans up the stray file
    assert sorted(p.name for p in art.glob("index-*.faiss")) == ["index-2.faiss"] and len(load_index(art)) == n0 - 1


def test_cli_add_delete_info_package(tmp_path, slice_index):
    art = tmp_path / "a"
    shutil.copytree(slice_index, art)
    corpus = tmp_path / "new.jsonl"
    corpus.write_text(json.dumps({"_id": "n1", "text": "Honeybees navigate by the polarisation of sunlight.",
                                  "metadata": {"kind": "new"}}) + "\n")
    p = run("index", "add", str(art), "--corpus", str(corpus))
    assert p.returncode == 0 and "1 added, 0 replaced" in p.stdout, p.stderr
    p = run("index", "add", str(art), "--corpus", str(corpus))
    assert p.returncode == 2 and "already in" in p.stderr and "--upsert" in p.stderr
    p = run("search", str(art), "bee navigation polarised light", "-k", "1")
    assert "n1" in p.stdout
    p = run("index", "delete", str(art), "--id", "n1", "--id", "ghost")
    assert p.returncode == 0 and "1 deleted; not in the index: 1 (e.g. ghost)" in p.stdout
    info = json.loads(run("index", "info", str(art)).stdout)
    assert info["format"] == "honed.retriever/2" and info["documents"] == len(load_index(slice_index))
    assert info["generation"] == 3 and info["query_path"] == "torch"
    p = run("package", "--index", str(art), "--out", str(tmp_path / "ship"))
    assert p.returncode == 0, p.stderr
    assert load_index(tmp_path / "ship").doc_ids == load_index(art).doc_ids


def test_format_versions(tmp_path, slice_index, minilm):
    newer = tmp_path / "newer"
    shutil.copytree(slice_index, newer)
    m = json.loads((newer / "manifest.json").read_text())
    m["format"] = "honed.retriever/9"
    (newer / "manifest.json").write_text(json.dumps(m))
    (newer / "honed-artifact.json").unlink()
    with pytest.raises(HonedError, match=r"artifact format 'honed.retriever/9' is not supported"):
        load_index(newer)
    # an index as honed 0.1 wrote it: docs.jsonl, a plain FAISS index, the model as a path
    old = tmp_path / "old"
    old.mkdir()
    live = load_index(slice_index)
    docs = [d for _, d in live.store.iter_docs()]
    vecs = live.faiss_index.reconstruct_batch(np.arange(len(docs)))
    flat = faiss.IndexFlatIP(vecs.shape[1])
    flat.add(vecs)
    faiss.write_index(flat, str(old / "index.faiss"))
    (old / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (old / "manifest.json").write_text(json.dumps({
        "manifest_version": 1, "model": {"ref": "minilm", "path": "runs/nowhere", "fingerprint": minilm.fingerprint},
        "dim": 384, "count": len(docs), "faiss": {"kind": "flat", "factory": "Flat"}, "docs_sha256": "x"}))
    with pytest.raises(HonedError, match=r"index format 1 .*`honed index upgrade"):
        load_index(old)
    p = run("index", "upgrade", str(old))
    assert p.returncode == 0, p.stderr
    up = load_index(old)
    q = minilm.encode_queries(["vitamin D and bone fractures"])
    assert [d["id"] for d in up.docs_at([p for p, _ in search(up, q, 5)[0]])] == \
           [d["id"] for d in live.docs_at([p for p, _ in search(live, q, 5)[0]])]


def test_package_records_the_evaluation(tmp_path, slice_index, scifact_slice):
    from honed.rag_eval.beir_eval import evaluate_systems, parse_system
    from honed.rag_eval.report import write_beir_report
    from honed.retriever.data import write_beir

    data = tmp_path / "slice"
    write_beir(data, scifact_slice.corpus, scifact_slice.queries, {"test": scifact_slice.qrels})
    res = evaluate_systems([str(data)], [parse_system("bm25"), parse_system("tuned=minilm")],
                           index_dir=tmp_path / "idx")
    rep = write_beir_report(res, tmp_path / "rep", baseline="bm25")
    p = run("package", "--index", str(tmp_path / "idx" / "slice-test-tuned"), "--out", str(tmp_path / "ship"),
            "--report", str(rep.json), "--system", "tuned")
    assert p.returncode == 0 and "nDCG@10" in p.stdout, p.stderr
    ev = load_index(tmp_path / "ship").manifest["eval"]
    doc = json.loads(rep.json.read_text())
    assert ev["dataset"] == "slice" and ev["baseline"] == "bm25"
    assert ev["metrics"]["NDCG@10"] == doc["datasets"]["slice"]["systems"]["tuned"]["metrics"]["NDCG@10"]
    assert ev["ndcg@10_delta"] == doc["datasets"]["slice"]["significance"]["tuned"]["NDCG@10"]["delta"]
    assert ev["report_verified"] is True
    idx = str(tmp_path / "idx" / "slice-test-tuned")
    # a report copied out of its folder has no record: its numbers are packaged, marked unverified
    loose = tmp_path / "loose.json"
    shutil.copy(rep.json, loose)
    assert package_artifact(idx, tmp_path / "ship2", report=loose).joinpath("manifest.json").is_file()
    assert load_index(tmp_path / "ship2").manifest["eval"]["report_verified"] is False
    # the probe: a tuned nDCG@10 edited to 0.99 is refused, as the gate refuses it
    doc["datasets"]["slice"]["systems"]["tuned"]["metrics"]["NDCG@10"] = 0.99
    rep.json.write_text(json.dumps(doc))
    with pytest.raises(HonedError, match=r"report\.json: contents do not match"):
        package_artifact(idx, tmp_path / "ship3", report=rep.json)
    rag = tmp_path / "rag.json"
    rag.write_text(json.dumps({"schema": "honed.rag-report/1", "systems": {"tuned": {"metrics": {}, "samples": []}}}))
    with pytest.raises(HonedError, match=r"rag\.json: is a RAG report"):
        package_artifact(idx, tmp_path / "ship3", report=rag)
    with pytest.raises(HonedError, match=r"system 'tuned\+rerank' is not in the report"):
        package_artifact(idx, tmp_path / "ship3", report=loose, system="tuned+rerank")
    assert not (tmp_path / "ship3").exists()


def test_vector_store_filters_and_async(tmp_path, minilm):
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

    from honed import HonedVectorStore
    from honed.retriever.index import build_index

    corpus = {"seed": {"text": "A seed document so the artifact exists.", "metadata": {"year": 2000}}}
    art = build_index(minilm, corpus, tmp_path / "vs", show_progress=False)
    store = HonedVectorStore.from_dir(art)
    index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model())
    for i, (text, year) in enumerate([("Vitamin D reduces fractures.", 2010), ("Vitamin D and bone density.", 2020),
                                      ("Aspirin and colorectal cancer.", 2021)]):
        index.insert(Document(text=text, id_=f"src-{i}", metadata={"year": year}))
    recent = MetadataFilters(filters=[MetadataFilter(key="year", value=2015, operator=FilterOperator.GT)])
    got = asyncio.run(index.as_retriever(similarity_top_k=5, filters=recent).aretrieve("vitamin D bones"))
    assert [n.node.metadata["year"] for n in got] == [2020, 2021]
    assert {n.node.ref_doc_id for n in got} == {"src-1", "src-2"}
    asyncio.run(store.adelete("src-1"))
    assert len(store.get_nodes(filters=recent)) == 1
    store.delete_nodes(filters=recent)
    assert [n.node.node_id for n in index.as_retriever(similarity_top_k=5).retrieve("vitamin D")][-1] == "seed"
    assert len(load_index(art)) == 2
