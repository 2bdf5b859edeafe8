"""The feedback loop on real votes: SQLite store, concurrency, votes → pairs, win rate, trigger, retrain + promotion."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from honed.app.feedback import TriggerConfig, feedback_pairs, feedback_status
from honed.rag_eval.significance import wilson
from honed.app.store import FeedbackStore, Vote
from honed.retriever.data import load_beir
from honed.retriever.data.beir import doc_text
from honed.retriever.errors import HonedError

REPO = Path(__file__).resolve().parents[1]


def _vote(query, system, target="passage", vote=1, doc=None, session="s1", **kw) -> Vote:
    doc_id, text = doc if doc else (None, None)
    return Vote(session_id=session, query=query, system=system, baseline="base", candidate="tuned",
                target=target, vote=vote, doc_id=doc_id, doc_text=text, **kw)


def test_votes_round_trip_and_latest_wins(tmp_path):
    store = FeedbackStore(tmp_path / "fb.db")
    store.record(_vote("q one", "tuned", doc=("d1", "text one"), shown={"tuned": ["d1"], "base": ["d9"]}))
    store.record(_vote("q one", "tuned", doc=("d1", "text one"), vote=-1))      # changed their mind
    rows = store.all_votes()
    assert len(rows) == 2 and rows[0]["shown"] == {"tuned": ["d1"], "base": ["d9"]}
    latest = store.latest_votes()
    assert len(latest) == 1 and latest[0]["vote"] == -1
    # the journal mode is WAL (set per connection)
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize("bad, msg", [
    (dict(target="title"), "target"), (dict(vote=0), r"\+1 or -1"), (dict(doc=None), "doc_id"), (dict(query=" "), "query"),
])
def test_bad_votes_are_refused_and_nothing_is_written(tmp_path, bad, msg):
    store = FeedbackStore(tmp_path / "fb.db")
    kw = dict(query="q", system="tuned", target="passage", vote=1, doc=("d1", "t"))
    kw.update(bad)
    with pytest.raises(HonedError, match=msg):
        store.record(_vote(**kw))
    assert store.count() == 0


WRITER = """
import sys
from honed.app.store import FeedbackStore, Vote
url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = FeedbackStore(url)
for i in range(n):
    store.record(Vote(session_id=f"w{worker}", query=f"query {worker}-{i}", system="tuned", baseline="base",
                      candidate="tuned", target="passage", vote=1, doc_id=f"d{i}", doc_text=f"passage {i}"))
"""


def test_concurrent_writers_lose_no_vote(tmp_path):
    """8 processes write at once into one SQLite file (CI size: 8 × 60; the benchmark runs 8 × 500)."""
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    FeedbackStore(url)   # create the schema first, as the app does on start
    # plain subprocesses: multiprocessing's spawn would re-run whatever __main__ an earlier test left behind
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), "60"], cwd=REPO) for w in range(8)]
    assert [p.wait(180) for p in procs] == [0] * 8
    rows = FeedbackStore(url).all_votes()
    assert len(rows) == 480
    assert len({(r["session_id"], r["query"]) for r in rows}) == 480


@pytest.fixture()
def cuad_votes(tmp_path):
    """Votes on real cuad-clauses passages: train-side queries, plus attempts to leak test queries/documents."""
    tr, te = load_beir("datasets/cuad-clauses", "train"), load_beir("datasets/cuad-clauses", "test")
    train_docs = [(d, doc_text(tr.corpus[d])) for d in sorted(tr.corpus)[:6]]
    test_q = next(iter(te.queries.values()))
    judged = next(d for rel in te.qrels.values() for d, g in rel.items() if g > 0)
    store = FeedbackStore(tmp_path / "fb.db")
    q = "Which clause limits the licensor's liability?"
    store.record(_vote(q, "tuned", doc=train_docs[0]))                           # positive
    store.record(_vote(q.upper() + "  ", "base", doc=train_docs[0]))              # same pair, other spelling: dedup
    store.record(_vote(q, "base", doc=train_docs[1], vote=-1))                    # hard negative (query has a positive)
    store.record(_vote("who may assign the agreement", "base", doc=train_docs[2], vote=-1))   # down only: no pair
    store.record(_vote(test_q, "tuned", doc=train_docs[3]))                       # an eval query: dropped
    store.record(_vote("is there a non-compete", "tuned", doc=(judged, doc_text(te.corpus[judged]))))  # eval doc
    store.record(_vote("termination notice period", "tuned", doc=train_docs[4], session="s1"))
    store.record(_vote("termination notice period", "base", doc=train_docs[4], vote=-1, session="s2"))  # conflict
    return store, train_docs


def test_votes_become_pairs_with_guards(cuad_votes):
    store, docs = cuad_votes
    pairs, stats = feedback_pairs(store, eval_data=["datasets/cuad-clauses"])
    assert len(pairs) == 1, stats
    p = pairs[0]
    assert p.source == "feedback" and p.positive_id == docs[0][0] and p.positive == docs[0][1]
    assert p.negative_ids == [docs[1][0]] and p.negatives == [docs[1][1]]
    assert stats["dropped_eval_query"] == 1 and stats["dropped_eval_doc"] == 1
    assert stats["negatives_without_positive"] == 1 and stats["conflicts"] == 1
    # without a frozen eval set the leaks would have been pairs: the guard is what removed them
    assert len(feedback_pairs(store)[0]) == 3


def test_export_cli_writes_pairs_the_finetuner_reads(cuad_votes, tmp_path):
    from typer.testing import CliRunner

    from honed.app.cli import app
    from honed.retriever.finetune.pairs import read_pairs

    store, _ = cuad_votes
    out = tmp_path / "fb-pairs.jsonl"
    res = CliRunner().invoke(app, ["feedback", "export", "--db", store.url, "--out", str(out),
                                   "--eval-data", "datasets/cuad-clauses"])
    assert res.exit_code == 0, res.output
    assert [p.source for p in read_pairs(out)] == ["feedback"]
    before = out.read_bytes()
    again = CliRunner().invoke(app, ["feedback", "export", "--db", store.url, "--out", str(out)])
    assert again.exit_code != 0 and "exists; choose a new file or pass --force" in str(again.exception)
    assert out.read_bytes() == before, "an existing pairs file is never replaced unasked"
    forced = CliRunner().invoke(app, ["feedback", "export", "--db", store.url, "--out", str(out), "--force",
                                      "--eval-data", "datasets/cuad-clauses"])
    assert forced.exit_code == 0, forced.output


def test_win_rate_and_trigger(tmp_path):
    store = FeedbackStore(tmp_path / "fb.db")
    for i in range(10):   # 10 compared queries: candidate up / baseline down in 8, the reverse in 2
        good = i < 8
        store.record(_vote(f"q{i}", "tuned", target="answer", vote=1 if good else -1, answer="a"))
        store.record(_vote(f"q{i}", "base", target="answer", vote=-1 if good else 1, answer="b"))
    store.record(_vote("q-only-one-side", "tuned", target="answer", vote=1, answer="a"))
    st = feedback_status(store, TriggerConfig(min_new_pairs=100, min_production_win_rate=0.4, min_comparisons=10))
    assert (st.candidate_wins, st.baseline_wins, st.ties, st.comparisons) == (8, 2, 0, 10)
    assert st.candidate_win_rate == 0.8 and st.win_rate_ci == wilson(8, 10)
    assert st.win_rate_ci[0] < 0.8 < st.win_rate_ci[1]
    assert st.trigger_fired and "win rate 0.20 < 0.4" in st.trigger_reasons[0]
    # the same votes with a stricter comparison minimum: not enough evidence, no trigger
    assert not feedback_status(store, TriggerConfig(100, 0.4, 11)).trigger_fired


def test_new_pairs_trigger_resets_after_a_retrain(cuad_votes):
    store, docs = cuad_votes
    cfg = TriggerConfig(min_new_pairs=1)
    assert feedback_status(store, cfg).trigger_fired
    store.record_retrain({"out": "runs/x"}, store.last_vote_id())
    st = feedback_status(store, cfg)
    assert st.new_pairs == 0 and not st.trigger_fired and st.pairs == 3
    store.record(_vote("a brand new question", "tuned", doc=docs[5]))
    assert feedback_status(store, cfg).new_pairs == 1


def test_wilson_interval_matches_known_values():
    # Wilson 95% for 8/10 is [0.4902, 0.9433] (e.g. statsmodels proportion_confint(method="wilson"))
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 0) is None


@pytest.mark.slow
def test_retrain_promotes_only_through_the_gate(tiny_data, tmp_path):
    """Real votes → real fine-tune → real eval → gate → MLflow registry aliases (twice: pass, then fail)."""
    from honed.app.registry import alias_version, model_for_alias
    from honed.app.retrain import retrain_from_feedback
    from conftest import TINY

    tr, te = load_beir(tiny_data, "train"), load_beir(tiny_data, "test")
    store = FeedbackStore(tmp_path / "fb.db")
    positives = {d for rel in tr.qrels.values() for d in rel}
    spare = [d for d in sorted(tr.corpus) if d not in positives]
    judged_in_eval = {d for rel in te.qrels.values() for d in rel}
    expected = 0
    for i, (qid, rel) in enumerate(sorted(tr.qrels.items())[:12]):
        d, neg = next(iter(rel)), spare[i]
        expected += d not in judged_in_eval      # SciFact's train and test share some abstracts: those are held out
        store.record(_vote(f"user phrasing: {tr.queries[qid]}", "tuned", doc=(d, doc_text(tr.corpus[d]))))
        store.record(_vote(f"user phrasing: {tr.queries[qid]}", "base", doc=(neg, doc_text(tr.corpus[neg])), vote=-1))
    gate = tmp_path / "gate.toml"
    gate.write_text('candidate = "tuned"\nbaseline = "base"\n[thresholds]\n"NDCG@10" = 0.0\n'
                    '[non_regression."NDCG@10"]\nmax_drop = 1.0\n')
    runs = tmp_path / "runs"
    # This test is about the gate and the registry, not about learning (test_finetune covers that).
    # A 4-step run moves the 10-query dev nDCG@10 (base 0.963) by one query either way, and a drop
    # marks the run failed, as it should. A near-zero learning rate keeps the dev score at the base's;
    # two steps without mined negatives are enough for that.
    kw = dict(store=store, runs_dir=runs, index_dir=tmp_path / "idx",
              finetune_overrides={**TINY, "lr": 1e-8, "max_steps": 2, "num_negatives": 0})
    first = retrain_from_feedback(tiny_data, runs / "r1", gate_config=gate, report_dir=tmp_path / "rep1", **kw)
    assert first.promoted and first.pairs["pairs"] == expected > 0 and all(c.passed for c in first.gate)
    assert model_for_alias("champion", runs) == (runs / "r1").resolve()
    assert json.loads((runs / "r1" / "honed.json").read_text())["data"]["pairs_files"]

    strict = tmp_path / "strict.toml"
    strict.write_text('candidate = "tuned"\nbaseline = "base"\n[thresholds]\n"NDCG@10" = 1.01\n')
    second = retrain_from_feedback(tiny_data, runs / "r2", gate_config=strict, report_dir=tmp_path / "rep2", **kw)
    assert not second.promoted and "threshold NDCG@10" in second.reason
    assert str(alias_version("challenger", runs).version) == second.version
    assert str(alias_version("champion", runs).version) == first.version      # the champion did not move
    assert store.last_retrain()["details"]["version"] == second.version

    # the app reads the aliases: alias:champion opens the promoted model with an index over the corpus
    from honed.app.compare import open_system, retrieve

    system = open_system("baseline", "alias:champion", corpus=tiny_data, index_dir=tmp_path / "app-idx", runs_dir=runs)
    assert system.model_ref == str((runs / "r1").resolve())
    hits, _ = retrieve(system, te.queries[sorted(te.queries)[0]])
    assert hits and hits[0].doc_id in te.corpus
    with pytest.raises(HonedError, match="needs --corpus"):
        open_system("baseline", "alias:champion", runs_dir=runs)
    with pytest.raises(HonedError, match="no model version has the alias 'gold'"):
        open_system("baseline", "alias:gold", corpus=tiny_data, runs_dir=runs)
    assert system.ident == f"honed-retriever v{first.version} (alias:champion)"   # votes name the version

    # the dashboard lists both versions with their aliases, and the challenger's evidence against the champion
    from honed.app import dashboard as db

    versions = db.model_versions(runs)
    assert [v["version"] for v in versions] == [int(second.version), int(first.version)]
    assert "challenger" in versions[0]["aliases"] and "champion" in versions[1]["aliases"]
    reports = db.find_reports([tmp_path / "rep1", tmp_path / "rep2"])
    ev = [r for r in db.version_evidence(versions, reports) if r["version"] == int(second.version)]
    assert ev and all("Δ vs champion" in r for r in ev)
    assert {str((runs / "r1").resolve()), str((runs / "r2").resolve())} <= {str(p.resolve()) for p in
                                                                          db.run_folders(reports, versions).values()}


def test_passage_votes_without_their_text_are_counted_not_silently_skipped(tmp_path):
    """An up-vote recorded with a doc id but no passage text cannot become a pair: export says how many."""
    store = FeedbackStore(tmp_path / "fb.db")
    for i in range(7):
        store.record(_vote(f"q {i}", "tuned", doc=(f"d{i}", "")))
    store.record(_vote("q ok", "tuned", doc=("d9", "a passage with its text")))
    pairs, stats = feedback_pairs(store)
    assert stats["dropped_no_passage_text"] == 7 and stats["positive_votes"] == 1 and len(pairs) == 1
