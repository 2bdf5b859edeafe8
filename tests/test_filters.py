"""Metadata filters: the SQL the document store runs equals the Python reference semantics, on any input."""
from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

from honed.retriever.errors import HonedError
from honed.retriever.filters import filters_to_sql, matches
from honed.retriever.store import DocStore

# Values where Python's and SQLite's comparisons are defined alike: numbers, booleans, text (incl.
# non-ASCII for the case-insensitive match), null, and lists of ints/strings.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.5]),
                    st.sampled_from(["a", "b", "A", "ab", "", "é", "É", "10"]))
values = st.one_of(scalars, st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "A"])), max_size=3))
metas = st.dictionaries(st.sampled_from(["k", "j", "it's"]), values, max_size=2)   # a quote in a key too
OPS = ["==", "!=", ">", ">=", "<", "<=", "in", "nin", "any", "all", "contains", "text_match",
       "text_match_insensitive", "is_empty"]
LIST_OPS = ("in", "nin", "any", "all")


def _leaf(op, key, scalar, lst):
    # model_construct: LlamaIndex's validation would coerce some values; the store must handle them as given
    return MetadataFilter.model_construct(key=key, value=lst if op in LIST_OPS else scalar, operator=FilterOperator(op))


leaves = st.builds(_leaf, st.sampled_from(OPS), st.sampled_from(["k", "j", "it's", "doc_id", "title"]), scalars,
                   st.lists(scalars, max_size=3))
conditions = st.sampled_from(["and", "or", "not"])
trees = st.recursive(
    st.builds(lambda fs, c: MetadataFilters.model_construct(filters=fs, condition=c),
              st.lists(leaves, min_size=1, max_size=3), conditions),
    lambda inner: st.builds(lambda fs, c: MetadataFilters.model_construct(filters=fs, condition=c),
                            st.lists(st.one_of(leaves, inner), min_size=1, max_size=3), conditions),
    max_leaves=5)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(docs=st.lists(metas, min_size=1, max_size=6), f=trees)
def test_sql_equals_python(docs, f):
    with tempfile.TemporaryDirectory() as d:
        store = DocStore(f"{d}/s.sqlite", create=True)
        rows = [{"id": f"d{i}", "title": "t" if i % 2 else "", "text": "x", "metadata": m} for i, m in enumerate(docs)]
        labels = store.insert(rows)
        want = [p for p, r in zip(labels, rows) if matches({**r["metadata"], "doc_id": r["id"], "title": r["title"]}, f)]
        assert store.select(f).tolist() == want
        store.close()


def test_unsupported_filters_are_one_line_errors():
    with pytest.raises(HonedError, match="needs a list value"):
        filters_to_sql(MetadataFilters(filters=[MetadataFilter(key="k", value="a", operator="in")]))
    with pytest.raises(HonedError, match="holds a double quote"):
        filters_to_sql(MetadataFilters(filters=[MetadataFilter(key='a"b', value=1, operator="==")]))
