"""Property-based fuzzing of every reader of user files: any input loads or is one HonedError, never another exception."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honed.rag_eval.gate import check_gate_config, evaluate_gate
from honed.retriever.data.beir import load_beir, read_qrels
from honed.retriever.errors import HonedError
from honed.retriever.finetune.pairs import read_pairs
from honed.retriever.report_schema import check_report

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.one_of(st.text(max_size=12), st.integers(-5, 5), st.none(), st.booleans(), st.floats(allow_nan=True),
                st.sampled_from(["d1", "d2", "q1", "q\x001", "", " ", "\ufeffd1", "x" * 600]))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                             st.dictionaries(st.text(max_size=8), c, max_size=3)),
                           max_leaves=8)
records = st.one_of(
    st.fixed_dictionaries({"_id": ids}, optional={"text": json_values, "title": json_values,
                                                  "metadata": json_values}),
    json_values)
qrels_cell = st.one_of(st.sampled_from(["q1", "q2", "d1", "d2", "d3", "1", "0", "-1", "0.5", "2.0", "inf",
                                        "nan", "1e400", "", "x", "query-id", "\x00"]), st.text(max_size=6))
qrels_lines = st.lists(st.lists(qrels_cell, min_size=1, max_size=4).map("\t".join), max_size=8).map("\n".join)


def _jsonl(rows) -> str:
    return "".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in rows)


def _loads_or_honed_error(fn, *args):
    try:
        fn(*args)
    except HonedError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(corpus=st.lists(records, max_size=5), queries=st.lists(records, max_size=4), qrels=qrels_lines,
       bom=st.booleans(), junk=st.sampled_from(["", "{", "[1]", "\xff"]))
def test_beir_loader(corpus, queries, qrels, bom, junk):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "qrels").mkdir()
        pre = "\ufeff" if bom else ""
        (root / "corpus.jsonl").write_text(pre + _jsonl(corpus) + junk, encoding="utf-8", errors="surrogatepass")
        (root / "queries.jsonl").write_text(pre + _jsonl(queries), encoding="utf-8", errors="surrogatepass")
        (root / "qrels" / "test.tsv").write_text(pre + qrels, encoding="utf-8", errors="surrogatepass")
        _loads_or_honed_error(load_beir, root, "test")


@FUZZ
@given(text=qrels_lines, raw=st.binary(max_size=40))
def test_qrels_reader(text, raw):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "q.tsv"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        _loads_or_honed_error(read_qrels, p)
        p.write_bytes(raw)
        _loads_or_honed_error(read_qrels, p)


toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False), st.text(max_size=8),
              st.sampled_from(["tuned", "base", "NDCG@10"])),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
        st.sampled_from(["NDCG@10", "max_drop", "alpha", "require_significant", "x"]), c, max_size=3)),
    max_leaves=10)
gate_keys = st.sampled_from(["candidate", "baseline", "datasets", "thresholds", "non_regression", "candidat"])


@FUZZ
@given(cfg=st.dictionaries(gate_keys, toml_values, max_size=5))
def test_gate_config_and_evaluation(cfg):
    report = {"schema": "honed.report/1", "datasets": {"d": {"systems": {
        s: {"metrics": {"NDCG@10": 0.5}, "per_query": {"q1": {"NDCG@10": 0.5}, "q2": {"NDCG@10": 0.4}}}
        for s in ("tuned", "base")}}}}
    try:
        evaluate_gate(check_report(report, "r"), check_gate_config(cfg))
    except HonedError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(report=json_values)
def test_gate_report_check(report):
    _loads_or_honed_error(check_report, report, "r")


pair_rows = st.one_of(
    st.fixed_dictionaries({"query": json_values, "positive": json_values},
                          optional={"negatives": json_values, "negative_ids": json_values, "query_id": ids,
                                    "positive_id": ids, "source": json_values, "extra": json_values}),
    json_values)


@FUZZ
@given(rows=st.lists(pair_rows, max_size=5))
def test_pairs_reader(rows):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "pairs.jsonl"
        p.write_text(_jsonl(rows), encoding="utf-8", errors="surrogatepass")
        _loads_or_honed_error(read_pairs, p)


def test_fuzzers_reach_the_success_path(tmp_path):
    """Guard against fuzzers that only ever hit errors: the same readers load a valid input."""
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(_jsonl([{"_id": "d1", "text": "a"}]))
    (tmp_path / "queries.jsonl").write_text(_jsonl([{"_id": "q1", "text": "b"}]))
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    assert load_beir(tmp_path).qrels == {"q1": {"d1": 1}}
    (tmp_path / "p.jsonl").write_text(_jsonl([{"query": "a", "positive": "b", "negative_ids": ["d1"]}]))
    assert read_pairs(tmp_path / "p.jsonl")[0].negative_ids == ["d1"]
    with pytest.raises(HonedError, match="no checks"):
        check_gate_config({"candidate": "tuned"})


# -- what the artifact features read: documents to add, the store's rows and meta, package's report --------

@pytest.fixture(scope="module")
def fuzz_index(tmp_path_factory, slice_index):
    """A copy of the slice index the fuzzers below may damage and add to (module scope: hypothesis
    runs many examples per test, and copying per example would cost more than the examples)."""
    import shutil

    out = tmp_path_factory.mktemp("fuzz") / "idx"
    shutil.copytree(slice_index, out)
    return out


@FUZZ
@given(docs=st.one_of(st.lists(records.map(lambda r: {("id" if k == "_id" else k): v for k, v in r.items()}
                                           if isinstance(r, dict) else r), max_size=4),
                      st.dictionaries(st.text(max_size=6), json_values, max_size=3)))
def test_documents_to_add(fuzz_index, docs):
    """`index add` and `HonedRetriever.insert` input: any documents are added or refused in one line."""
    from honed.retriever.index import load_index
    from honed.retriever.updates import add_documents

    idx = load_index(fuzz_index)
    try:
        n = len(docs)
        vectors = np.random.default_rng(n).normal(size=(n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
        _loads_or_honed_error(add_documents, idx, docs, None, True, vectors)
    finally:
        idx.store.close()


meta_values = st.one_of(json_values, st.sampled_from(["index-1.faiss", "../manifest.json", "", 1, -1, 2 ** 70]))


@settings(FUZZ, max_examples=60)
@given(key=st.sampled_from(["generation", "faiss_file", "faiss_size", "faiss_sha256", "documents", "artifact_id",
                            "model_fingerprint", "rows_digest", "format"]),
       value=st.one_of(meta_values, st.just("not json {")), raw=st.booleans(),
       metadata=st.one_of(st.text(max_size=12), st.sampled_from(["[]", "{}", '{"a": 1}', "null", "1e999"])))
def test_store_meta_and_rows(fuzz_index, tmp_path_factory, key, value, raw, metadata):
    """A store edited by hand (any meta value, any row metadata) opens and searches, or is one line."""
    import shutil
    import sqlite3

    from honed.retriever.index import load_index, search

    d = tmp_path_factory.mktemp("meta") / "idx"
    shutil.copytree(fuzz_index, d, ignore=shutil.ignore_patterns("model"))   # search by vector: no model needed
    conn = sqlite3.connect(d / "store.sqlite", isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value if raw and isinstance(value, str)
                                                              else json.dumps(value), key))
    conn.execute("UPDATE docs SET metadata = ? WHERE pos = (SELECT min(pos) FROM docs)", (metadata,))
    conn.close()

    def open_and_search():
        idx = load_index(d)
        try:
            hits = search(idx, np.ones((1, 384), dtype=np.float32), 5)[0]
            idx.docs_at([p for p, _ in hits])
            list(idx.store.iter_docs())
        finally:
            idx.store.close()

    _loads_or_honed_error(open_and_search)
    shutil.rmtree(d)


@FUZZ
@given(report=json_values, system=st.sampled_from(["tuned", "base", "x"]),
       dataset=st.sampled_from([None, "d", "slice"]))
def test_package_report(report, system, dataset):
    """`honed package --report`: any report JSON yields an evaluation summary or one line."""
    _summary_or_error(report, system, dataset)


def _summary_or_error(report, system, dataset):
    from honed.retriever.artifact import evaluation_summary

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "report.json"
        p.write_text(json.dumps(report))
        _loads_or_honed_error(evaluation_summary, p, system, dataset)


well_formed_report = st.fixed_dictionaries({
    "schema": st.just("honed.report/1"), "baseline": json_values,
    "datasets": st.dictionaries(st.sampled_from(["d", "slice"]), st.fixed_dictionaries(
        {"systems": st.dictionaries(st.sampled_from(["tuned", "base"]),
                                    st.fixed_dictionaries({"metrics": st.dictionaries(st.text(max_size=8), json_values,
                                                                                      max_size=2)}), max_size=2)},
        optional={"significance": json_values, "split": json_values, "n_queries": json_values}), max_size=2)})


@FUZZ
@given(report=well_formed_report, system=st.sampled_from(["tuned", "base"]))
def test_package_report_deep(report, system):
    """Reports that pass the schema check but carry odd baselines and significance tables."""
    _summary_or_error(report, system, None)
