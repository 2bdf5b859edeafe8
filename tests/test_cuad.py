"""cuad-clauses built from a few real CUAD contracts; labels checked against the quotes."""
from __future__ import annotations

import hashlib
from difflib import SequenceMatcher

import pytest

from honed.retriever.data import load_beir
from honed.retriever.data.cuad import (REPEAT_MIN_CHARS, Chunk, build_cuad, chunk_text, is_relevant, normalise, query_category,
                                 read_master_clauses)
from honed.retriever.data.cuad_queries import CATEGORY_QUERIES, contract_query, party_names
from honed.retriever.errors import DataError


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, cuad_dir):
    out = tmp_path_factory.mktemp("cuad") / "cuad-small"
    stats = build_cuad(cuad_dir, out, n_train=4, n_test=3)
    return out, stats


def test_split_by_contract(small_build):
    out, stats = small_build
    train, test = load_beir(out, "train"), load_beir(out, "test")
    c_train = {d["metadata"]["contract"] for d in train.corpus.values()}
    c_test = {d["metadata"]["contract"] for d in test.corpus.values()}
    assert (len(c_train), len(c_test)) == (4, 3) and not c_train & c_test
    assert not set(train.queries.values()) & set(test.queries.values()), "test wording must be unseen"
    assert stats["test"]["passages"] == len(test.corpus)


def test_a_contract_shipped_twice_stays_on_one_side(tmp_path, cuad_dir):
    """CUAD ships one contract under two file names; a copy split from its twin leaked its passages into test."""
    import csv
    import shutil

    src = tmp_path / "cuad"
    shutil.copytree(cuad_dir, src)
    with open(src / "master_clauses.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    twin = rows[1][:]
    stem, ext = twin[0].rsplit(".", 1)
    twin[0] = f"{stem}(1).{ext}"
    shutil.copy(src / "full_contract_txt" / f"{stem}.txt", src / "full_contract_txt" / f"{stem}(1).txt")
    with open(src / "master_clauses.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows + [twin])

    stats = build_cuad(src, tmp_path / "out", n_train=5, n_test=3)      # every distinct contract, not the copy
    assert [sorted(d) for d in stats["duplicate_contracts"]] == [["left_out", "same_text_as"]]
    assert {stats["duplicate_contracts"][0]["left_out"], stats["duplicate_contracts"][0]["same_text_as"]} == \
        {f"{stem}.txt", f"{stem}(1).txt"}
    train, test = load_beir(tmp_path / "out", "train"), load_beir(tmp_path / "out", "test")
    assert not {d["text"] for d in train.corpus.values()} & {d["text"] for d in test.corpus.values()}
    used = {d["metadata"]["contract"] for ds in (train, test) for d in ds.corpus.values()}
    assert len(used) == 8 and not {stem, f"{stem}(1)"} <= used
    assert stats["duplicate_contracts"][0]["left_out"] in (tmp_path / "out" / "README.md").read_text()


def test_labels_match_the_quotes(small_build, cuad_dir):
    out, _ = small_build
    rows = {r["filename"].rsplit(".", 1)[0]: r for r in read_master_clauses(cuad_dir)}
    for split in ("train", "test"):
        ds = load_beir(out, split)
        checked = 0
        for qid, rel in ds.qrels.items():
            cat = query_category(qid)
            for did in rel:
                doc = ds.corpus[did]
                quotes = [normalise(q) for q in rows[doc["metadata"]["contract"]]["quotes"][cat]]
                text = doc["text"]
                # a positive shares ≥ half of the shorter of (quote, passage) with some quote
                best = max(SequenceMatcher(None, text, q, autojunk=False).find_longest_match().size
                           / min(len(q), len(text)) for q in quotes)
                assert best >= 0.5, (qid, did)
                checked += 1
        assert checked > 0
        # …and a passage holding a whole quote of a category is labelled for that category
        for did, doc in ds.corpus.items():
            for cat, quotes in rows[doc["metadata"]["contract"]]["quotes"].items():
                if cat not in CATEGORY_QUERIES:
                    continue
                if any(len(normalise(q)) >= REPEAT_MIN_CHARS and normalise(q) in doc["text"] for q in quotes):
                    qids = [q for q in ds.qrels if query_category(q) == cat
                            and ds.query_metadata[q].get("contract", doc["metadata"]["contract"])
                            == doc["metadata"]["contract"]]
                    assert qids and all(did in ds.qrels[q] for q in qids), (cat, did)


def test_contract_questions_name_their_contract(small_build):
    """Train-only queries that name one contract by its parties; their positives are that contract's clause."""
    out, stats = small_build
    train, test = load_beir(out, "train"), load_beir(out, "test")
    asked = {q: m for q, m in train.query_metadata.items() if "contract" in m}
    assert len(asked) == stats["train"]["contract_questions"] > 0
    assert not any("contract" in m for m in test.query_metadata.values()), "the test split stays as measured"
    by_cat = {query_category(q): set(rel) for q, rel in train.qrels.items() if q not in asked}
    for qid, meta in asked.items():
        owners = {train.corpus[d]["metadata"]["contract"] for d in train.qrels[qid]}
        assert owners == {meta["contract"]} and set(train.qrels[qid]) <= by_cat[meta["category"]]
    # the Kubient contract is asked about by name (Parties-Answer: 'Kubient, Inc. ("Kubient"); ...')
    kubient = [train.queries[q] for q, m in asked.items() if m["contract"].startswith("KUBIENT")]
    assert kubient and all("Kubient" in q for q in kubient), kubient[:3]


def test_party_names():
    assert party_names('Corio Inc. ("CORIO"); Commerce One, Inc. ("COMMERCE ONE")') == ["Corio", "Commerce One"]
    assert party_names('Kubient, Inc. ("Kubient"); The Associated Press ("Customer")') == ["Kubient", "Associated Press"]
    assert party_names('[] ("Franchisee"); [] ("Member")') == []          # roles are not names
    assert contract_query("Governing Law", ["Kubient", "Associated Press"], "MASTER SERVICES AGREEMENT", "k").count(
        "master services agreement") == 1


def test_rebuild_is_byte_identical(small_build, cuad_dir, tmp_path):
    out, _ = small_build
    again = tmp_path / "again"
    build_cuad(cuad_dir, again, n_train=4, n_test=3)
    digest = lambda root: {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                           for p in sorted(root.rglob("*")) if p.is_file()}
    assert digest(out) == digest(again)


def test_chunking_and_relevance_rule():
    text = normalise("Section 1. The term is five years. Section 2. Liability is capped at fees paid. " * 3)
    chunks = chunk_text(text, max_words=12)
    assert all(len(c.text.split()) <= 12 for c in chunks)
    assert " ".join(c.text for c in chunks) == text
    assert is_relevant(Chunk(0, 100, ""), (90, 110)) and not is_relevant(Chunk(0, 100, ""), (95, 200))
    assert is_relevant(Chunk(100, 200, ""), (0, 1000))   # chunk inside a long quote


def test_repeated_long_quotes_all_found_short_ones_once():
    from honed.retriever.data.cuad import locate

    clause = "Neither party may assign this Agreement without the prior written consent of the other."
    text = f"{clause} Page 1 May 3, 2016. {clause} Page 2 May 3, 2016."
    assert len(locate(clause, text, text.lower())) == 2
    assert len(locate("May 3, 2016", text, text.lower())) == 1


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="full_contract_txt/"):
        build_cuad(tmp_path, tmp_path / "out")
