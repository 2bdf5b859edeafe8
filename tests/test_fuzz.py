"""Property-based fuzzing of every reader of user files: any input loads or is one HonedError, never another exception."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honed.rag_eval.gate import check_gate_config, check_report, evaluate_gate
from honed.retriever.data.beir import load_beir, read_qrels
from honed.retriever.errors import HonedError
from honed.retriever.finetune.pairs import read_pairs

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
