"""Build ``cuad-clauses``: a BEIR-format clause-retrieval dataset from CUAD v1.

Passages are sentence-packed chunks of real contracts; queries are clause
categories phrased as a lawyer would search (see :mod:`.cuad_queries`). A
passage is relevant to a category's queries when it holds at least half of a
quote labelled with that category (or, for quotes longer than the passage, when
at least half of the passage is such a quote). Contracts are split into train
and test, each with its own corpus, so no test passage is ever seen in training.

Example:
    >>> from honed.retriever.data.cuad import build_cuad
    >>> stats = build_cuad("../shared/datasets/cuad", "datasets/cuad-clauses")   # doctest: +SKIP
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import DataError
from .beir import write_beir
from .cuad_queries import CATEGORY_QUERIES, N_TRAIN_PHRASINGS, contract_query, party_names

REPEAT_MIN_CHARS = 40
_WS = re.compile(r"\s+")
# Sentence ends: ., ; or : followed by space and an upper-case letter, digit or "(".
_SENT = re.compile(r"(?<=[.;:])\s+(?=[A-Z0-9(\"])")


def normalise(text: str) -> str:
    """Collapse all whitespace runs to one space (how quotes are matched to contracts)."""
    return _WS.sub(" ", text).strip()


@dataclass
class Chunk:
    start: int
    end: int
    text: str


def chunk_text(text: str, max_words: int = 120) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `max_words` words (long sentences are split)."""
    spans, pos = [], 0
    for piece in _SENT.split(text):
        start = text.index(piece, pos)
        spans.append((start, start + len(piece)))
        pos = start + len(piece)
    chunks: list[Chunk] = []
    cur_start, cur_end, cur_words = None, None, 0

    def flush():
        nonlocal cur_start, cur_end, cur_words
        if cur_start is not None:
            chunks.append(Chunk(cur_start, cur_end, text[cur_start:cur_end]))
        cur_start, cur_end, cur_words = None, None, 0

    for s, e in spans:
        words = [(m.start() + s, m.end() + s) for m in re.finditer(r"\S+", text[s:e])]
        while len(words) > max_words:        # a run-on "sentence" (tables, lists)
            flush()
            head, words = words[:max_words], words[max_words:]
            chunks.append(Chunk(head[0][0], head[-1][1], text[head[0][0]:head[-1][1]]))
        if not words:
            continue
        if cur_words + len(words) > max_words:
            flush()
        if cur_start is None:
            cur_start = words[0][0]
        cur_end, cur_words = words[-1][1], cur_words + len(words)
    flush()
    return chunks


def locate(quote: str, text: str, lower_text: str) -> list[tuple[int, int]]:
    """Every character span of `quote` in `text` (exact; else case-insensitive); [] if absent.

    The CSV keeps quotes without positions, so identical text elsewhere in the
    contract (a clause repeated in an exhibit) is labelled too, but only for
    quotes of at least `REPEAT_MIN_CHARS`: a short quote such as a date recurs in
    page footers, and labelling every footer would be label noise.
    """
    q = normalise(quote)
    if not q:
        return []
    hay, needle = (text, q) if q in text else (lower_text, q.lower())
    spans, i = [], hay.find(needle)
    while i >= 0:
        spans.append((i, i + len(needle)))
        if len(needle) < REPEAT_MIN_CHARS:
            break
        i = hay.find(needle, i + 1)
    return spans


def is_relevant(chunk: Chunk, span: tuple[int, int]) -> bool:
    """Half of the quote lies in the chunk, or (long quotes) half of the chunk is the quote."""
    overlap = min(chunk.end, span[1]) - max(chunk.start, span[0])
    return overlap > 0 and overlap >= 0.5 * min(span[1] - span[0], chunk.end - chunk.start)


_CONTRACT_QID = re.compile(r"(?:tr|te)\d{3}-([a-z0-9-]+)$")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def query_category(qid: str) -> str:
    """The CUAD category a cuad-clauses query id belongs to: ``<category-slug>-<n>`` (a category query) or
    ``<contract id>-<category-slug>`` (a contract question, train split)."""
    m = _CONTRACT_QID.match(qid)
    slug = m.group(1) if m else qid.rsplit("-", 1)[0]
    for cat in CATEGORY_QUERIES:
        if _slug(cat) == slug:
            return cat
    raise KeyError(qid)


def _contract_questions(contracts: list[tuple[str, dict, Path]], rel_by_cat: dict[str, dict[str, int]],
                        taken: set[str], seed: str) -> tuple[dict, dict, dict, int]:
    """One question per (contract, category with a positive in it) that names the contract; returns queries,
    qrels, query metadata and how many were left out because their words could not tell two contracts apart."""
    queries, qrels, meta, ambiguous = {}, {}, {}, 0
    for cid, row, path in contracts:
        names = party_names(row["parties"])
        for cat in CATEGORY_QUERIES:
            own = {d: g for d, g in rel_by_cat[cat].items() if d.startswith(cid + "-")}
            if not own:
                continue
            key = f"{seed}:{path.name}:{cat}"
            text = contract_query(cat, names, row["title"], key)
            if text in taken:     # two "Excite sponsorship agreement"s: name both parties
                text = contract_query(cat, names, row["title"], key, both=True)
            if text in taken:
                ambiguous += 1
                continue
            taken.add(text)
            qid = f"{cid}-{_slug(cat)}"
            queries[qid], qrels[qid] = text, dict(sorted(own.items()))
            meta[qid] = {"category": cat, "contract": path.stem}
    return queries, qrels, meta, ambiguous


def _text_file(txt_dir: Path, filename: str, by_key: dict[str, Path]) -> Path | None:
    """Map a master_clauses.csv file name (usually ``X.pdf``) to its ``X.txt``."""
    stem = filename[:-4] if filename.lower().endswith(".pdf") else filename
    p = txt_dir / f"{stem}.txt"
    if p.exists():
        return p
    # 11 CSV rows differ from their file names in punctuation or spacing only.
    return by_key.get(re.sub(r"[^a-z0-9]", "", stem.lower()))


def read_master_clauses(source: Path) -> list[dict]:
    """Rows of master_clauses.csv with quote lists parsed (``ast.literal_eval``: data, not code)."""
    path = source / "master_clauses.csv"
    if not path.exists():
        raise DataError(f"{path}: not found (expected CUAD v1's master_clauses.csv)")
    csv.field_size_limit(1 << 30)
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        cats = [h for h in header[1:] if not h.rstrip().endswith("Answer")]
        for n, row in enumerate(reader, 2):
            rec = dict(zip(header, row))
            quotes = {}
            for c in cats:
                try:
                    val = ast.literal_eval(rec.get(c) or "[]")
                except (ValueError, SyntaxError):
                    raise DataError(f"{path}:{n}: column {c!r} is not a list literal") from None
                quotes[c] = [q for q in val if isinstance(q, str) and q.strip()]
            rows.append({"filename": rec[header[0]], "title": rec.get("Document Name-Answer", ""),
                         "parties": rec.get("Parties-Answer", ""), "quotes": quotes})
    return rows


def build_cuad(source: str | Path, out: str | Path, n_train: int = 120, n_test: int = 40,
               min_words: int = 1000, max_words: int = 6000, chunk_words: int = 120,
               seed: str = "honed-cuad-v1", contract_questions: bool = True, force: bool = False) -> dict:
    """Build the dataset into `out` (atomically) and return its build statistics.

    Contracts with `min_words`..`max_words` words are ordered by a hash of
    `seed` + file name (a deterministic shuffle); a contract whose text repeats an earlier one's is left
    out (CUAD ships one contract twice, under two file names: split apart, 14 of the 68 test queries found
    their passage's copy in training. Measured, it flattered nothing: trained without the copy, the demo's
    model gains as much on those 14, trained-passages.json; but a test split must not hold training
    passages); the first `n_test` go to test, the next `n_train` to train. Rebuilding with the same arguments
    writes byte-identical files. With `contract_questions`, the train split also gets one query per
    (contract, category) that names the contract by its parties, whose positives are that contract's
    clause only (``cuad_queries.contract_query``).
    """
    source, out = Path(source), Path(out)
    txt_dir = source / "full_contract_txt"
    if not txt_dir.is_dir():
        raise DataError(f"{txt_dir}: not found (expected CUAD v1's full_contract_txt/)")
    by_key = {re.sub(r"[^a-z0-9]", "", p.stem.lower()): p for p in txt_dir.glob("*.txt")}
    rows = read_master_clauses(source)

    stats = {"contracts_in_csv": len(rows), "unmapped_files": 0, "quotes_total": 0,
             "quotes_unlocated": 0, "quotes_unlocated_by_category": {}, "duplicate_contracts": []}
    eligible = []
    for row in rows:
        p = _text_file(txt_dir, row["filename"], by_key)
        if p is None:
            stats["unmapped_files"] += 1
            continue
        text = normalise(p.read_text(encoding="utf-8", errors="replace"))
        if min_words <= len(text.split()) <= max_words:
            eligible.append((hashlib.sha256(f"{seed}:{p.name}".encode()).hexdigest(), p, text, row))
    eligible.sort(key=lambda t: t[0])
    seen: dict[str, str] = {}
    unique = []
    for e in eligible:      # the first in shuffle order stays, so a copy never lands in the other split
        digest = hashlib.sha256(e[2].encode()).hexdigest()
        if digest in seen:
            stats["duplicate_contracts"].append({"left_out": e[1].name, "same_text_as": seen[digest]})
        else:
            seen[digest] = e[1].name
            unique.append(e)
    eligible = unique
    if len(eligible) < n_train + n_test:
        raise DataError(f"{source}: only {len(eligible)} contracts have {min_words}-{max_words} words; "
                        f"asked for {n_train} train + {n_test} test")
    splits = {"test": eligible[:n_test], "train": eligible[n_test:n_test + n_train]}

    queries_by_split = {
        "train": {f"{_slug(c)}-{i}": q for c, qs in CATEGORY_QUERIES.items()
                  for i, q in enumerate(qs[:N_TRAIN_PHRASINGS], 1)},
        "test": {f"{_slug(c)}-{i}": q for c, qs in CATEGORY_QUERIES.items()
                 for i, q in enumerate(qs[N_TRAIN_PHRASINGS:], N_TRAIN_PHRASINGS + 1)},
    }
    with atomic_dir(out, kind="dataset", force=force) as tmp:
        for split, contracts in splits.items():
            corpus, rel_by_cat = {}, {c: {} for c in CATEGORY_QUERIES}
            asked = []      # (contract id, row, path): who the contract questions name
            for ci, (_, path, text, row) in enumerate(sorted(contracts, key=lambda t: t[1].name)):
                cid = f"{split[:2]}{ci:03d}"
                asked.append((cid, row, path))
                chunks = chunk_text(text, chunk_words)
                for k, ch in enumerate(chunks):
                    corpus[f"{cid}-{k:03d}"] = {"title": row["title"].strip(), "text": ch.text,
                                                "metadata": {"contract": path.stem, "chunk": k}}
                lower = text.lower()
                for cat in CATEGORY_QUERIES:
                    for q in row["quotes"].get(cat, []):
                        stats["quotes_total"] += 1
                        spans = locate(q, text, lower)
                        if not spans:
                            stats["quotes_unlocated"] += 1
                            by = stats["quotes_unlocated_by_category"]
                            by[cat] = by.get(cat, 0) + 1
                            continue
                        for k, ch in enumerate(chunks):
                            if any(is_relevant(ch, span) for span in spans):
                                rel_by_cat[cat][f"{cid}-{k:03d}"] = 1
            qrels, queries = {}, {}
            for qid, qtext in queries_by_split[split].items():
                cat = query_category(qid)
                if rel_by_cat[cat]:
                    qrels[qid] = dict(sorted(rel_by_cat[cat].items()))
                    queries[qid] = qtext
            # the category is each query's concept label (`honed diagnose` groups its confusions by it)
            meta = {q: {"category": query_category(q)} for q in queries}
            if contract_questions and split == "train":
                q, rel, m, ambiguous = _contract_questions(asked, rel_by_cat, set(queries.values()), seed)
                queries, qrels, meta = {**queries, **q}, {**qrels, **rel}, {**meta, **m}
                if ambiguous:
                    stats["contract_questions_ambiguous"] = ambiguous
            write_beir(tmp / split, corpus, queries, {split: qrels}, query_metadata=meta)
            stats[split] = {
                "contracts": len(contracts), "passages": len(corpus), "queries": len(queries),
                "judgements": sum(len(r) for r in qrels.values()),
                "contract_questions": sum(1 for q in meta if "contract" in meta[q]),
                "categories_with_positives": sum(1 for r in rel_by_cat.values() if r),
                "relevant_per_query_median": sorted(len(r) for r in qrels.values())[len(qrels) // 2] if qrels else 0,
            }
        stats["params"] = {"n_train": n_train, "n_test": n_test, "min_words": min_words,
                           "max_words": max_words, "chunk_words": chunk_words, "seed": seed,
                           "contract_questions": contract_questions}
        (tmp / "build_stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        card = out / "README.md"
        measured = _measured_section(card.read_text(encoding="utf-8")) if card.exists() else ""
        (tmp / "README.md").write_text(dataset_card(stats, measured), encoding="utf-8")
    return stats


_MARK_BEGIN, _MARK_END = "<!-- measured:begin -->", "<!-- measured:end -->"


def _measured_section(card: str) -> str:
    """The hand-/benchmark-maintained part of a card, kept across rebuilds."""
    if _MARK_BEGIN in card and _MARK_END in card:
        return card[card.index(_MARK_BEGIN):card.index(_MARK_END) + len(_MARK_END)]
    return ""


def _duplicates(stats: dict) -> str:
    dup = stats.get("duplicate_contracts", [])
    return "; ".join(f"`{d['left_out']}` = `{d['same_text_as']}`" for d in dup) or "none in this build"


def dataset_card(stats: dict, measured: str = "") -> str:
    """The dataset card (README.md) for a build."""
    tr, te, p = stats["train"], stats["test"], stats["params"]
    pct = 100 * stats["quotes_unlocated"] / max(stats["quotes_total"], 1)
    worst = sorted(stats["quotes_unlocated_by_category"].items(), key=lambda kv: -kv[1])[:3]
    measured = measured or f"{_MARK_BEGIN}\n_Not measured yet: run `honed data audit` and the benchmarks._\n{_MARK_END}"
    return f"""# cuad-clauses — clause retrieval over real commercial contracts

Search {te['contracts'] + tr['contracts']} real contracts for clause types such as
"limitation of liability" (Cap On Liability) vs "uncapped liability", or
"non-compete" vs "exclusivity" vs "no-solicit": the distinctions generic
embedders blur.

## Source and licence
Derived from **CUAD v1** (Contract Understanding Atticus Dataset) by The Atticus
Project, Inc., licensed **CC BY 4.0** (https://www.atticusprojectai.org/cuad;
Hendrycks et al., 2021, arXiv:2103.06268). This derived dataset is shared under
the same licence; attribute The Atticus Project when you use it.

## Layout
Two BEIR folders, split **by contract** (no contract, hence no passage, is in both):

| split | contracts | passages | queries | judgements | median relevant/query |
|---|---|---|---|---|---|
| `train/` | {tr['contracts']} | {tr['passages']} | {tr['queries']} | {tr['judgements']} | {tr['relevant_per_query_median']} |
| `test/` | {te['contracts']} | {te['passages']} | {te['queries']} | {te['judgements']} | {te['relevant_per_query_median']} |

Each has `corpus.jsonl` (`_id`, `title` = the contract's name, `text`,
`metadata.contract`, `metadata.chunk`), `queries.jsonl` and `qrels/<split>.tsv`.

## How it was built
`honed data build-cuad --source ../shared/datasets/cuad --out datasets/cuad-clauses`
(rebuilding gives byte-identical files).

1. Contracts whose text has {p['min_words']:,}–{p['max_words']:,} words are shuffled
   deterministically (sha256 of `{p['seed']}:<file name>`); the first {p['n_test']} are
   test, the next {p['n_train']} train. This keeps the shipped data small and the demo
   fast on a CPU, at the price of leaving out the longest contracts. A contract whose
   text repeats one earlier in that order is left out ({_duplicates(stats)}), so no
   passage is in both splits (`honed data audit` counts test queries whose relevant
   passage is a training positive: 0).
2. Whitespace is normalised; text is split into sentences and packed into
   passages of at most {p['chunk_words']} words.
3. Every labelled quote in `master_clauses.csv` is located in its contract
   (exact, then case-insensitive). {stats['quotes_unlocated']:,} of {stats['quotes_total']:,}
   quotes ({pct:.1f}%) in the selected contracts could not be located and are
   dropped (most in: {', '.join(f'{c} {n}' for c, n in worst) or 'none'}).
   {stats['unmapped_files']} CSV rows did not map to a text file.
4. A passage is relevant (grade 1) to a category when it holds at least half of
   one of that category's quotes, or, for quotes longer than the passage, when
   at least half of the passage is such a quote.
5. Queries: five phrasings per category written as a lawyer would search; the
   first three are train queries, the last two test queries, so the test split
   measures new contracts *and* new wording. Document Name and Parties are left
   out (they are metadata, not clauses). A query appears in a split only if
   its category has a relevant passage there.
6. Contract questions (train only: {tr.get('contract_questions', 0):,} of its {tr['queries']:,} queries): for each
   train contract and each category it has, one train phrasing that names the
   contract by its parties (CUAD's `Parties` answers) and its type, such as
   "effective date of the Go Call promotion agreement"; its positives are that
   contract's clause only (`metadata.contract` on the query). Category queries
   alone teach a model to ignore which contract a clause is in (`honed
   diagnose` measured it on cuad-qa: 24% of questions confused with another
   contract after tuning vs 3% before).

## Known limits
- Relevance is only as complete as CUAD's labels: a clause the annotators did
  not mark is an unjudged (counted as non-relevant) passage.
- Test queries are per category, not per contract: each has many relevant passages
  across contracts, so nDCG@10 rewards precision on the clause type
  (`datasets/cuad-qa` asks about one contract at a time).
- Train and test queries are paraphrases of the same {len(CATEGORY_QUERIES)} categories: the test
  checks generalisation to unseen contracts and wording, not to unseen clause types.

## Measured
{measured}
"""
