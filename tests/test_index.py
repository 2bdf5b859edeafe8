"""FAISS index build/load on the real MiniLM and a real SciFact slice."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from honed.retriever.errors import HonedError, IndexMismatchError
from honed.retriever.index import build_index, check_compatible, load_index, search


def test_manifest_and_doc_store(slice_index, scifact_slice, minilm):
    idx = load_index(slice_index)
    m = idx.manifest
    assert len(scifact_slice.corpus) == len(idx) == idx.faiss_index.ntotal
    assert (m["format"], m["dim"], m["metric"], m["normalized"]) == ("honed.retriever/2", 384, "inner_product", True)
    assert m["model"]["fingerprint"] == minilm.fingerprint and m["model"]["dir"] == "model"
    assert m["faiss"]["factory"] == "IDMap2,Flat"
    assert idx.doc_ids == list(scifact_slice.corpus)
    assert (slice_index / "model" / "model.safetensors").exists()     # the model travels with the index
    assert not any(p.suffix in (".pkl", ".pickle") for p in slice_index.rglob("*"))


def test_dense_search_finds_gold_abstracts(slice_index, scifact_slice, minilm):
    idx = load_index(slice_index)
    qids = list(scifact_slice.queries)
    hits = search(idx, minilm.encode_queries([scifact_slice.queries[q] for q in qids]), k=10)
    found = [any(d["id"] in scifact_slice.qrels[q] for d in idx.docs_at([p for p, _ in h]))
             for q, h in zip(qids, hits)]
    # Base MiniLM finds most gold abstracts among 85 docs; random ranking would find ~12%.
    assert np.mean(found) >= 0.8
    scores = [s for _, s in hits[0]]
    assert scores == sorted(scores, reverse=True)


def test_hnsw_matches_flat_on_small_corpus(tmp_path, scifact_slice, minilm, slice_index):
    out = build_index(minilm, scifact_slice.corpus, tmp_path / "hnsw", faiss_kind="hnsw", show_progress=False)
    flat, hnsw = load_index(slice_index), load_index(out)
    assert hnsw.manifest["faiss"]["factory"] == "IDMap2,HNSW32,Flat"
    q = minilm.encode_queries(["vitamin D deficiency and bone fractures"])
    assert [p for p, _ in search(flat, q, 5)[0]] == [p for p, _ in search(hnsw, q, 5)[0]]


def test_bad_faiss_kind_and_small_ivfpq(tmp_path, scifact_slice, minilm):
    with pytest.raises(HonedError, match="--faiss must be one of flat, hnsw, ivfpq"):
        build_index(minilm, scifact_slice.corpus, tmp_path / "x", faiss_kind="annoy")
    with pytest.raises(HonedError, match="ivfpq needs ≥ 10,000 documents"):
        build_index(minilm, scifact_slice.corpus, tmp_path / "x", faiss_kind="ivfpq")
    assert not (tmp_path / "x").exists()


def test_other_model_is_refused(tmp_path, slice_index, minilm):
    from honed.retriever.encoder import load_encoder

    changed = tmp_path / "minilm-changed"
    shutil.copytree(minilm.path, changed)
    (changed / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))
    with pytest.raises(IndexMismatchError, match="rebuild the index with this model"):
        check_compatible(load_index(slice_index), load_encoder(changed))


def test_other_dimension_is_refused(slice_index):
    from honed.retriever.encoder import load_encoder

    mpnet = load_encoder("mpnet")
    with pytest.raises(IndexMismatchError, match="built with 384-d vectors .* makes 768-d vectors"):
        check_compatible(load_index(slice_index), mpnet)


def test_tampered_index_files_are_refused(tmp_path, slice_index):
    bad = tmp_path / "bad"
    shutil.copytree(slice_index, bad)
    faiss_file = next(bad.glob("index-*.faiss"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:-100])
    with pytest.raises(HonedError, match=r"index-1.faiss: contents do not match store.sqlite"):
        load_index(bad)
    shutil.rmtree(bad)
    shutil.copytree(slice_index, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["dim"] = 768
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HonedError, match="manifest.json: contents do not match honed-artifact.json"):
        load_index(bad)
    with pytest.raises(HonedError, match="not an index folder"):
        load_index(tmp_path)


def test_killed_build_leaves_previous_index_loadable(tmp_path, slice_index, scifact_dir):
    target = tmp_path / "live"
    shutil.copytree(slice_index, target)
    before = (target / "manifest.json").read_text()
    # Rebuild over it with the full SciFact corpus (minutes of encoding) and kill it mid-encode.
    code = ("import sys; from honed.retriever.index import build_index; "
            f"build_index('minilm', {str(scifact_dir)!r}, {str(target)!r}, show_progress=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    seen = b""
    while time.time() < deadline and b"Batches" not in seen:   # tqdm has started encoding
        seen += proc.stderr.read1(4096) if proc.stderr else b""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert b"Batches" in seen, "build never started encoding"
    idx = load_index(target)
    assert (target / "manifest.json").read_text() == before
    assert len(idx) == len(load_index(slice_index))


def test_writer_killed_while_writing_files(tmp_path, slice_index):
    """SIGKILL inside the write phase: old index intact, the half-written temp swept later."""
    from honed.retriever.atomic import remove_stale_temps

    target = tmp_path / "live"
    shutil.copytree(slice_index, target)
    code = ("import time; from honed.retriever.atomic import atomic_dir\n"
            f"with atomic_dir({str(target)!r}, kind='index') as tmp:\n"
            "    (tmp / 'index.faiss').write_bytes(b'half')\n"
            "    print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"writing"
    proc.kill()
    proc.wait()
    assert len(list(tmp_path.glob(".live.tmp-*"))) == 1
    assert len(load_index(target)) == len(load_index(slice_index))
    assert len(remove_stale_temps(target)) == 1
    assert not list(tmp_path.glob(".live.tmp-*"))


def test_failed_write_keeps_old_and_cleans_up(tmp_path, slice_index):
    from honed.retriever.atomic import atomic_dir

    target = tmp_path / "live"
    shutil.copytree(slice_index, target)
    with pytest.raises(RuntimeError):
        with atomic_dir(target, kind="index") as tmp:
            (tmp / "manifest.json").write_text("{}")
            raise RuntimeError("disk full")
    assert len(load_index(target)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]


@pytest.mark.slow
def test_index_build_with_worker_processes_equals_one_process(tmp_path, slice_beir, slice_index):
    """`honed index build --workers cpu:2` (sentence-transformers' process pool) gives the one-process index."""
    from conftest import SCIFACT
    from honed.retriever.index import load_index

    one = slice_index                  # the session's one-process build of the same corpus, same order
    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "index", "build", "--model", "minilm", "--corpus",
                          str(slice_beir), "--out", str(tmp_path / "two"), "--workers", "cpu:2"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = load_index(one), load_index(tmp_path / "two")
    assert a.doc_ids == b.doc_ids and b.manifest["build"]["encode_workers"] == ["cpu", "cpu"]
    n = len(a.doc_ids)
    va = a.faiss_index.reconstruct_batch(np.arange(n))
    vb = b.faiss_index.reconstruct_batch(np.arange(n))
    assert np.allclose(va, vb, atol=1e-5), float(np.abs(va - vb).max())
    bad = subprocess.run([sys.executable, "-m", "honed.app.cli", "index", "build", "--corpus", str(SCIFACT),
                          "--out", str(tmp_path / "x"), "--workers", "gpu:7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--workers gpu:7" in bad.stderr
