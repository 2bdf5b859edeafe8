"""Index builds on Ray: shard assembly (real FAISS) and a local-Ray build equal to the one-process build."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from honed.retriever.ray_build import assemble_index, model_files, read_shard


def _shards(tmp_path, vectors: np.ndarray, size: int, seed: int = 0):
    """Shard files as `embed_on_ray` writes them: positions in a shuffled (finish) order."""
    order = np.random.default_rng(seed).permutation(len(vectors))
    paths = []
    for i, start in enumerate(range(0, len(order), size)):
        pos = order[start:start + size]
        paths.append(tmp_path / f"shard-{i:05d}.npz")
        np.savez(paths[-1], pos=pos, vectors=vectors[pos])
    return paths


def _unit(n: int, dim: int, seed: int = 1) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_assembly_puts_every_vector_at_its_position(tmp_path):
    vectors = _unit(1000, 32)
    index = assemble_index(_shards(tmp_path, vectors, 128), 1000, 32, "IDMap2,Flat")
    assert index.ntotal == 1000
    assert np.array_equal(index.reconstruct_batch(np.arange(1000)), vectors)
    pos, vecs = read_shard(tmp_path / "shard-00000.npz")
    assert pos.dtype == np.int64 and vecs.shape == (128, 32)


def test_ivfpq_assembly_trains_on_a_sample_and_fills_shard_by_shard(tmp_path):
    """Every position lands once; the compressed index still finds a vector's own position."""
    import faiss

    n, dim = 12_000, 64
    vectors = _unit(n, dim)
    # 4-bit codes: the same IVF-PQ assembly, but 16 centroids per sub-quantiser train in 3 s where 8-bit codes'
    # 256 took 45 s on one Xeon core (what is under test is the sample and the fill, not the codes' quality)
    index = assemble_index(_shards(tmp_path, vectors, 2048), n, dim, "IVF32,PQ16x4")
    assert index.ntotal == n and index.is_trained
    invlists = faiss.extract_index_ivf(index).invlists
    ids = np.concatenate([faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                          for i in range(invlists.nlist) if invlists.list_size(i)])
    assert np.array_equal(np.sort(ids), np.arange(n))
    faiss.extract_index_ivf(index).nprobe = 8
    _, found = index.search(vectors[:200], 10)
    recall = np.mean([i in row for i, row in enumerate(found)])
    assert recall > 0.9, recall


def test_model_files_leave_out_onnx_and_checkpoints(tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"x")
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "w").write_bytes(b"x")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "router").mkdir()
    (tmp_path / "router" / "router.json").write_text("{}")
    assert sorted(model_files(tmp_path)) == ["1_Pooling/config.json", "config.json", "router/router.json"]
    # an index built without routing sends its workers no router (they would route what they read)
    assert sorted(model_files(tmp_path, router=False)) == ["1_Pooling/config.json", "config.json"]


def test_ray_and_workers_together_are_refused(tmp_path):
    from conftest import SCIFACT

    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "index", "build", "--corpus", str(SCIFACT),
                          "--out", str(tmp_path / "x"), "--ray", "--workers", "cpu:2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "pick one" in run.stderr and not (tmp_path / "x").exists()
    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "index", "build", "--corpus", str(SCIFACT),
                          "--out", str(tmp_path / "x"), "--ray-address", "auto"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "need --ray" in run.stderr


@pytest.mark.slow
def test_ray_build_equals_one_process_build(tmp_path, slice_beir, slice_index):
    """`honed index build --ray` (local Ray, 2 encoder actors) gives the one-process artifact."""
    from honed.retriever.index import load_index, search

    one = slice_index                  # the session's one-process build of the same corpus, same order
    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "index", "build", "--model", "minilm", "--corpus",
                          str(slice_beir), "--out", str(tmp_path / "ray"), "--ray", "--ray-workers", "2"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = load_index(one), load_index(tmp_path / "ray")
    assert a.doc_ids == b.doc_ids
    ray_build = b.manifest["build"]["ray"]
    assert ray_build["workers"] == 2 and ray_build["address"] == "local" and ray_build["shards"] >= 1
    n = len(a.doc_ids)
    va = a.faiss_index.reconstruct_batch(np.arange(n))
    vb = b.faiss_index.reconstruct_batch(np.arange(n))
    assert np.allclose(va, vb, atol=1e-5), float(np.abs(va - vb).max())
    hits_a, hits_b = search(a, va[:5], k=5), search(b, va[:5], k=5)
    assert [[h[0] for h in q] for q in hits_a] == [[h[0] for h in q] for q in hits_b]
    assert not list(tmp_path.glob(".ray.shards-*")), "the shard scratch folder is removed"
