"""BM25 and dense systems side by side on a real slice, written as a report."""
from __future__ import annotations

import json

from honed.rag_eval.beir_eval import evaluate_systems, parse_system
from honed.rag_eval.report import SCHEMA, write_beir_report
from honed.retriever.data import write_beir


def test_side_by_side_report(tmp_path, scifact_slice):
    data = tmp_path / "scifact-slice"
    write_beir(data, scifact_slice.corpus, scifact_slice.queries, {"test": scifact_slice.qrels})
    res = evaluate_systems([str(data)], [parse_system("bm25"), parse_system("base=minilm")],
                           index_dir=tmp_path / "idx")
    paths = write_beir_report(res, tmp_path / "report")
    doc = json.loads(paths.json.read_text())
    assert doc["schema"] == SCHEMA and doc["baseline"] == "bm25"
    d = doc["datasets"]["scifact-slice"]
    for name in ("bm25", "base"):
        assert 0.5 < d["systems"][name]["metrics"]["NDCG@10"] <= 1.0
        assert set(d["systems"][name]["per_query"]) == set(scifact_slice.queries)
    sig = d["significance"]["base"]["NDCG@10"]
    assert sig["wins"] + sig["ties"] + sig["losses"] == len(scifact_slice.queries)
    for png in doc["plots"]:
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| base |" in paths.markdown.read_text()
    # the dense index is cached and reused on a second run (same fingerprint, same corpus)
    idx = next((tmp_path / "idx").iterdir())
    mtime = (idx / "manifest.json").stat().st_mtime_ns
    evaluate_systems([str(data)], [parse_system("base=minilm")], index_dir=tmp_path / "idx")
    assert (idx / "manifest.json").stat().st_mtime_ns == mtime


def test_beir_name_offline_is_a_clear_error(monkeypatch, tmp_path):
    import pytest

    from honed.rag_eval.beir_eval import resolve_dataset
    from honed.retriever.errors import HonedError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HONED_DATA_CACHE", str(tmp_path))
    with pytest.raises(HonedError, match="downloading BEIR dataset 'nfcorpus' needs a network"):
        resolve_dataset("nfcorpus")
    (tmp_path / "beir" / "nfcorpus").mkdir(parents=True)
    (tmp_path / "beir" / "nfcorpus" / "corpus.jsonl").write_text("{}")
    assert resolve_dataset("nfcorpus") == str(tmp_path / "beir" / "nfcorpus")
