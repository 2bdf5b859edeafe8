"""The BEIR loader on a real SciFact slice, the shipped cuad-clauses, and every kind of broken file."""
from __future__ import annotations

import json

import pytest

from honed.retriever.data import load_beir, write_beir
from honed.retriever.errors import DataError


def test_real_scifact_splits(scifact_dir):
    test = load_beir(scifact_dir, "test")
    train = load_beir(scifact_dir, "train")
    assert len(test.corpus) == 155
    assert (len(test.queries), sum(len(r) for r in test.qrels.values())) == (30, 34)
    assert (len(train.queries), sum(len(r) for r in train.qrels.values())) == (60, 73)
    assert not set(test.queries) & set(train.queries)


def test_shipped_cuad_clauses_splits():
    from conftest import CUAD_CLAUSES

    test, train = load_beir(CUAD_CLAUSES, "test"), load_beir(CUAD_CLAUSES, "train")
    contracts = lambda ds: {d["metadata"]["contract"] for d in ds.corpus.values()}
    assert test.queries and train.queries and not contracts(test) & contracts(train)
    assert len(set(train.queries.values())) == len(train.queries), "one query text, one set of positives"


def _tiny(tmp_path):
    corpus = {"d1": {"title": "T", "text": "alpha"}, "d2": {"title": "", "text": "beta"}}
    write_beir(tmp_path, corpus, {"q1": "alpha?"}, {"test": {"q1": {"d1": 1}}})
    return tmp_path


def test_roundtrip(tmp_path):
    ds = load_beir(_tiny(tmp_path), "test")
    assert ds.qrels == {"q1": {"d1": 1}}
    assert ds.doc_text("d1") == "T alpha" and ds.doc_text("d2") == "beta"


def test_bad_json_line_names_file_and_line(tmp_path):
    root = _tiny(tmp_path)
    with open(root / "corpus.jsonl", "a") as f:
        f.write('{"_id": "d3", "text": oops}\n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: invalid JSON"):
        load_beir(root, "test")


def test_missing_id_and_duplicate_id(tmp_path):
    root = _tiny(tmp_path)
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"text": "no id"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:2: missing \"_id\""):
        load_beir(root, "test")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:2: duplicate _id 'q1'"):
        load_beir(root, "test")


def test_qrels_with_unknown_ids_reports_counts_and_examples(tmp_path):
    root = _tiny(tmp_path)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq1\tdX\t1\nq1\tdY\t1\n")
    with pytest.raises(DataError) as e:
        load_beir(root, "test")
    msg = str(e.value)
    assert "1 query ids not in queries.jsonl (e.g. q9)" in msg
    assert "2 doc ids not in corpus.jsonl (e.g. dX, dY)" in msg


def test_bad_qrels_line(tmp_path):
    root = _tiny(tmp_path)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: expected 3 tab-separated columns"):
        load_beir(root, "test")
    (root / "qrels" / "test.tsv").write_text("q1\td1\thigh\n")
    with pytest.raises(DataError, match=r"test\.tsv:1: score 'high' is not a number"):
        load_beir(root, "test")


def test_empty_corpus(tmp_path):
    root = _tiny(tmp_path)
    (root / "corpus.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl: corpus is empty"):
        load_beir(root, "test")


def test_missing_split_and_missing_folder(tmp_path):
    root = _tiny(tmp_path)
    with pytest.raises(DataError, match=r"no such split \(have: test\)"):
        load_beir(root, "dev")
    with pytest.raises(DataError, match="does not exist"):
        load_beir(tmp_path / "nope", "test")


def test_per_split_folder_layout(tmp_path):
    _tiny(tmp_path / "test")
    assert load_beir(tmp_path, "test").path == tmp_path / "test"
    assert json.loads((tmp_path / "test" / "corpus.jsonl").read_text().splitlines()[0])["_id"] == "d1"
