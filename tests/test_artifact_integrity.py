"""An artifact is verified as a whole: swapped, edited or truncated parts, a changed model and an edited
report are refused with one line naming the file, by search, info, package and `honed index verify`."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from honed.retriever.artifact import artifact_info, package_artifact
from honed.retriever.errors import HonedError
from honed.retriever.index import load_index
from honed.retriever.updates import add_documents, delete_documents
from honed.retriever.verify import verify_index

from test_cli import run


@pytest.fixture()
def art(tmp_path, slice_index):
    a = tmp_path / "a"
    shutil.copytree(slice_index, a)
    return a


def _sql(art, statement, *params):
    conn = sqlite3.connect(art / "store.sqlite", isolation_level=None)
    conn.execute(statement, params)
    conn.close()


def test_updates_keep_the_store_verifiable(art, minilm):
    """The recorded count and rows' digest move with every add, upsert and delete: a full check still passes."""
    first = verify_index(art)
    assert first["verified"] == "full" and first["bound"] and "rows digest" in first["checked"]
    idx = load_index(art)
    add_documents(idx, {"n1": {"text": "Bees see polarised light.", "metadata": {"k": 1}},
                        "n2": {"text": "Ants count their steps."}}, encoder=minilm)
    add_documents(idx, {"n1": {"text": "Bees navigate by the sun."}}, encoder=minilm, upsert=True)
    delete_documents(idx, ["n2", idx.doc_ids[0]])
    idx.store.close()
    res = verify_index(art)
    assert res["documents"] == first["documents"] and res["generation"] == 4


def test_a_store_and_faiss_pair_from_another_artifact_is_refused(tmp_path, art):
    """The issue's probe: both mutable files replaced by another artifact's pair (same model, other documents)."""
    other = package_artifact(art, tmp_path / "other")
    idx = load_index(other)
    delete_documents(idx, idx.doc_ids[:3])
    idx.store.close()
    for f in art.glob("index-*.faiss"):
        f.unlink()
    for f in ["store.sqlite", *[g.name for g in other.glob("index-*.faiss")]]:
        shutil.copy2(other / f, art / f)
    with pytest.raises(HonedError, match=r"store\.sqlite: belongs to another artifact"):
        load_index(art)
    for args in (["search", str(art), "bees"], ["index", "info", str(art)],
                 ["package", "--index", str(art), "--out", str(tmp_path / "ship")]):
        p = run(*args)
        assert p.returncode == 2 and "store.sqlite: belongs to another artifact" in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ship").exists()


def test_rows_changed_outside_honed_are_refused(art):
    """A deleted row fails every open (count); an edited text fails the full check (digest), not the fast one."""
    _sql(art, "UPDATE docs SET text = 'edited by hand' WHERE pos = 0")
    assert verify_index(art, full=False)["verified"] == "fast"
    with pytest.raises(HonedError, match=r"store\.sqlite: its rows do not match the digest"):
        verify_index(art)
    with pytest.raises(HonedError, match=r"its rows do not match"):
        package_artifact(art, art.parent / "ship")
    _sql(art, "DELETE FROM docs WHERE pos = 1")
    with pytest.raises(HonedError, match=r"store\.sqlite: holds \d+ documents but recorded \d+"):
        load_index(art)


def test_a_truncated_store_is_one_line(art):
    data = (art / "store.sqlite").read_bytes()
    (art / "store.sqlite").write_bytes(data[: len(data) // 2])
    p = run("index", "verify", str(art))
    assert p.returncode == 2 and "store.sqlite" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_changed_model_is_refused_by_info_and_package(tmp_path, art):
    """One flipped byte of the weights: info no longer reports the artifact, package writes no record for it."""
    weights = art / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(HonedError, match=r"model\.safetensors: contents do not match"):
        artifact_info(art)
    p = run("package", "--index", str(art), "--out", str(tmp_path / "ship"))
    assert p.returncode == 2 and "model.safetensors" in p.stderr, p.stderr
    assert not (tmp_path / "ship").exists()
    (art / "honed-artifact.json").unlink()    # without a record, the recomputed fingerprint still catches it
    with pytest.raises(HonedError, match=r"model: its weights have fingerprint \w+, the manifest says"):
        verify_index(art, full=False)


def test_hnsw_labels_are_checked_with_their_tombstones(tmp_path, scifact_slice, minilm):
    from honed.retriever.index import build_index

    corpus = dict(list(scifact_slice.corpus.items())[:40])
    out = build_index(minilm, corpus, tmp_path / "h", faiss_kind="hnsw", show_progress=False)
    idx = load_index(out)
    delete_documents(idx, idx.doc_ids[:5])
    idx.store.close()
    assert verify_index(out)["documents"] == 35
    # a tombstone moved by hand: a deleted vector would come back in results and a live one would vanish
    _sql(out, "UPDATE tombstones SET pos = 10 WHERE pos = 0")
    with pytest.raises(HonedError, match=r"1 documents have no vector .* and 1 vectors have no document"):
        verify_index(out)


def test_an_artifact_from_before_binding_opens_and_says_so(art):
    """Artifacts written before the binding existed still open; verify reports them as unbound."""
    manifest = json.loads((art / "manifest.json").read_text())
    del manifest["artifact_id"]
    (art / "manifest.json").write_text(json.dumps(manifest))
    (art / "honed-artifact.json").unlink()
    assert len(load_index(art)) > 0
    p = run("index", "verify", str(art))
    assert p.returncode == 0 and "written before honed bound the store" in p.stdout, p.stderr
