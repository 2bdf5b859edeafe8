"""Annotation and the dashboard in a real browser: `honed annotate` (the real CLI) driven through real Chromium.

Two annotators label three queries with the keyboard and the mouse, one disagreement
is adjudicated, the qrels are exported from the page, a system is evaluated on them
with `honed eval beir`, and the dashboard shows that report with its drill-down.
Everything is real: BM25 and the packaged MiniLM pool a real SciFact slice, labels go
to a real SQLite store.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SCIFACT, StreamlitCli, chromium
from honed.app.annotate import latest_labels

QUERIES = ["aspirin colorectal cancer", "telomere G-quadruplex", "endoplasmic reticulum stress"]
pytestmark = pytest.mark.slow


def _idle(page) -> None:
    """Wait until the app's script run has finished (Streamlit shows the old page while it reruns)."""
    page.wait_for_function("document.querySelector('[data-testid=stApp]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=60_000)


def _focus_off_inputs(page) -> None:
    """Click plain text (not a heading: its anchor link changes the URL) so keys reach the shortcuts."""
    page.locator('[data-testid="stText"]').first.click()


def _wait_count(count, n: int, what: str) -> None:
    """Poll the store until `count()` reaches `n` (the page moves on only after the write commits)."""
    deadline = time.time() + 30
    while count() < n:
        assert time.time() < deadline, f"{what} {n} never reached the store"
        time.sleep(0.1)


def _wait_labels(store, who: str, n: int) -> None:
    _wait_count(lambda: sum(1 for (_, _, w) in latest_labels(store, "sf") if w == who), n, f"{who}'s label")


def _wait_answer_labels(store, who: str, n: int) -> None:
    from honed.app.annotate import labelled_answers

    _wait_count(lambda: len(labelled_answers(store, "sf", who)), n, f"{who}'s answer label")


def _label_query(page, store, who: str, grades: dict[int, int], default: int, before: int) -> int:
    """Grade every passage of the open query (position → grade, else `default`); returns the pool size."""
    head = page.get_by_text(re.compile(r"^Passage \d+ of \d+$"))
    head.wait_for(timeout=60_000)
    _idle(page)
    n = int(head.inner_text().split(" of ")[1])
    for i in range(n):
        page.get_by_text(f"Passage {i + 1} of {n}", exact=True).wait_for(timeout=30_000)
        g = grades.get(i, default)
        if i % 2 == 0:   # half by mouse, half by the keyboard shortcut
            page.get_by_role("button", name=re.compile(rf"^{g} · ")).click()
        else:
            _focus_off_inputs(page)
            page.keyboard.press(str(g))
        _wait_labels(store, who, before + i + 1)      # the label is committed before the page moves on
        _idle(page)
    page.get_by_text(re.compile(r"^All \d+ passages of this query are labelled")).wait_for(timeout=30_000)
    return n


def test_two_annotators_adjudicate_export_evaluate_and_dashboard(tmp_path):
    from playwright.sync_api import sync_playwright

    from honed.app import annotate as an
    from honed.app.store import FeedbackStore
    from honed.retriever.data.beir import load_beir

    (tmp_path / "q.txt").write_text("\n".join(QUERIES) + "\n")
    cal = tmp_path / "cal.jsonl"
    lines = (Path(__file__).resolve().parents[1] / "datasets/judge-calibration/triples.jsonl").read_text().splitlines()
    cal.write_text("\n".join(lines[:2]) + "\n")
    from honed.retriever.finetune.pairs import Pair, write_pairs

    passage = json.loads((SCIFACT / "corpus.jsonl").read_text().splitlines()[0])
    write_pairs(tmp_path / "synth.jsonl", [Pair("wat does this abstract find", passage["text"],
                                                positive_id=passage["_id"], source="synthetic")])
    db = tmp_path / "fb.db"
    app = StreamlitCli(["annotate", "--set", "sf", "--data", str(SCIFACT), "--system", "bm25", "--system",
                        "base=minilm", "--depth", "3", "--queries", str(tmp_path / "q.txt"), "--answers", str(cal),
                        "--synthetic", str(tmp_path / "synth.jsonl"),
                        "--db", str(db), "--reports", str(tmp_path / "reports")], tmp_path / "annotate.log",
                       cwd=tmp_path)
    try:
        app.wait_healthy(240)
        with sync_playwright() as pw:
            browser = chromium(pw)
            sizes = {}
            store = FeedbackStore(db)
            for who, grades in (("alice", {0: 3}), ("bob", {0: 3, 1: 1})):
                page = browser.new_context().new_page()
                page.goto(f"{app.url}/?annotator={who}")      # Label: the default page, at the root
                for q in range(3):
                    sizes[q] = _label_query(page, store, who, grades, default=0, before=sum(sizes.get(x, 0)
                                                                                            for x in range(q)))
                    if q < 2:
                        page.get_by_text(re.compile(r"^All \d+ passages of this query are labelled")).wait_for()
                        _focus_off_inputs(page)
                        page.keyboard.press("Enter")       # next query
                        page.get_by_text("not labelled yet").wait_for(timeout=30_000)
                page.get_by_text(re.compile("Every query is done")).wait_for(timeout=30_000)
                page.close()

            dis = an.disagreements(store, "sf")
            assert len(dis) == 3 and all(d["grades"] == {"alice": 0, "bob": 1} for d in dis)

            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{app.url}/adjudicate?annotator=carol")
            page.get_by_text("3 items with different grades, 3 not yet adjudicated").wait_for(timeout=60_000)
            page.get_by_role("radio", name="1 · related").first.click()   # the final grade
            _idle(page)
            page.get_by_role("button", name="Resolve").first.click()
            page.get_by_text("adjudicated 1 by carol").wait_for(timeout=30_000)
            page.get_by_role("button", name="Export qrels").click()
            page.get_by_text(re.compile(r"exported .*evalsets/sf/v1")).wait_for(timeout=60_000)

            page.goto(f"{app.url}/review?annotator=rita")     # a synthetic query: edited, then accepted (A)
            box = page.get_by_label("Generated query (edit before accepting if needed)")
            box.fill("what does the model predict for a sugar drink tax in India?")
            box.press("Tab")
            _idle(page)
            _focus_off_inputs(page)
            page.keyboard.press("A")
            page.get_by_text("Nothing awaits review.").wait_for(timeout=30_000)

            page.goto(f"{app.url}/answers?annotator=alice")   # the judge's calibration labels, by keyboard
            for n, key in enumerate(("Y", "N"), 1):
                page.get_by_text(f"{n - 1} / 2", exact=True).wait_for(timeout=30_000)   # the new page, not the old
                _idle(page)
                page.get_by_text("Question:", exact=False).first.wait_for(timeout=30_000)
                _focus_off_inputs(page)
                page.keyboard.press(key)
                _wait_answer_labels(store, "alice", n)
            page.get_by_text("Every answer is labelled.").wait_for(timeout=30_000)

            # evaluate a system on the exported version, as a user would
            v1 = tmp_path / "evalsets" / "sf" / "v1"
            run = subprocess.run([sys.executable, "-m", "honed.app.cli", "eval", "beir", "--data", str(v1),
                                  "--system", "bm25", "--system", "base=minilm", "--out", "reports/sf-v1"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, run.stderr[-2000:]

            page.goto(f"{app.url}/dashboard")
            page.get_by_text("Per-query drill-down").wait_for(timeout=60_000)
            page.get_by_text(re.compile(r"relevant \(grade 3\)")).first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if os.environ.get("HONED_SCREENSHOT_DIR"):
                shutil.copy(tmp_path / "dashboard.png", Path(os.environ["HONED_SCREENSHOT_DIR"]) / "annotate-dashboard.png")
            browser.close()
    finally:
        app.stop()

    ds = load_beir(v1, "test")
    assert len(ds.queries) == 3 and sum(map(len, ds.qrels.values())) == sum(sizes.values())
    adj = dis[0]
    assert ds.qrels[adj["query_id"]][adj["doc_id"]] == 1                  # the adjudicated grade
    others = [d for d in dis[1:]]
    assert all(ds.qrels[d["query_id"]][d["doc_id"]] == 0 for d in others)  # unresolved tie: the lower grade
    assert sorted(g for rel in ds.qrels.values() for g in rel.values()).count(3) == 3
    card = json.loads((v1 / "card.json").read_text())
    assert card["annotators"] == ["alice", "bob"] and card["resolution"]["adjudicated"] == 1
    assert card["agreement"]["pairs"][0]["items"] == sum(sizes.values())
    report = json.loads((tmp_path / "reports" / "sf-v1" / "report.json").read_text())
    assert report["datasets"]["v1"]["n_queries"] == 3

    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "annotate", "export-pairs", "--set", "sf",
                          "--out", str(tmp_path / "reviewed.jsonl"), "--db", str(db)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    pair = json.loads((tmp_path / "reviewed.jsonl").read_text())
    assert pair["query"] == "what does the model predict for a sugar drink tax in India?"
    assert pair["positive_id"] == passage["_id"] and pair["source"] == "synthetic-reviewed"

    out = tmp_path / "calibration.jsonl"
    run = subprocess.run([sys.executable, "-m", "honed.app.cli", "annotate", "export-calibration", "--set", "sf",
                          "--out", str(out), "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    labelled = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["faithful"] for x in labelled] == [1, 0] and all(x["labels"] == {"alice": x["faithful"]} for x in labelled)
