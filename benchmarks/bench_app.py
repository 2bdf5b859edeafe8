"""The comparison app as a stakeholder sees it: a real `honed app` server driven by real Chromium.

    python benchmarks/bench_app.py --baseline indexes/cuad-clauses-test-base \\
        --candidate indexes/cuad-clauses-test-tuned --data datasets/cuad-clauses --n 5

For each of the first N test queries: seconds from pressing Compare until both
columns show their passages (retrieval-only view), and the app's own answer
timings (first words / complete, streamed from the local LLM). Saves a
screenshot (the README's) and the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# captions of the current run only: Streamlit keeps the previous query's elements, marked data-stale, until replaced
FRESH = ("(p => Array.from(document.querySelectorAll('[data-testid=\"stCaptionContainer\"]'))"
         ".filter(e => !e.closest('[data-stale=\"true\"]') && e.innerText.startsWith(p)))")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="indexes/cuad-clauses-test-base")
    ap.add_argument("--candidate", default="indexes/cuad-clauses-test-tuned")
    ap.add_argument("--data", default="datasets/cuad-clauses")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--screenshot", default="docs/app.png")
    ap.add_argument("--json", default="benchmarks/results/app.json")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from honed.retriever.data import load_beir

    queries = list(load_beir(args.data, "test").queries.values())[: args.n]
    port = _free_port()
    db = Path(tempfile.mkdtemp()) / "fb.db"
    proc = subprocess.Popen([sys.executable, "-m", "honed.app.cli", "app", "--baseline", args.baseline, "--candidate",
                             args.candidate, "--db", str(db), "--port", str(port), "--top-k", str(args.top_k)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    rows = []
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            box = page.get_by_label("Your question")
            box.wait_for(timeout=300_000)
            ready_s = time.perf_counter() - t_start
            for i, q in enumerate(queries):
                box.fill(q)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Compare").click()
                header = json.dumps(f"Results for: {q}")
                page.wait_for_function(
                    f"Array.from(document.querySelectorAll('[data-testid=\"stText\"]')).some(e => "
                    f"!e.closest('[data-stale=\"true\"]') && e.innerText.trim() === {header}) && "
                    f"{FRESH}('retrieved').length >= 2", timeout=300_000)
                passages_s = time.perf_counter() - t0
                page.wait_for_function(f"{FRESH}('answer:').length >= 2", timeout=600_000)
                done_s = time.perf_counter() - t0
                caps = page.evaluate(f"{FRESH}('answer:').map(e => e.innerText)")
                ans = [tuple(map(float, re.findall(r"([\d.]+) s", c))) for c in caps]
                rows.append({"query": q, "passages_visible_s": round(passages_s, 2), "answers_done_s": round(done_s, 2),
                             "first_words_s": [a[0] for a in ans], "answer_complete_s": [a[1] for a in ans]})
                print(rows[-1], flush=True)
                if i == 0:
                    page.evaluate("window.scrollTo(0, 0)")
                    Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=args.screenshot)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
    vis = [r["passages_visible_s"] for r in rows]
    first = [r["first_words_s"][0] for r in rows if r["first_words_s"]]
    res = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "baseline": args.baseline,
           "candidate": args.candidate, "top_k": args.top_k, "server_ready_s": round(ready_s, 1),
           "passages_visible_s_p50": round(float(np.median(vis)), 2), "passages_visible_s_max": round(max(vis), 2),
           "first_answer_words_s_p50": round(float(np.median(first)), 2) if first else None,
           "both_answers_done_s_p50": round(float(np.median([r["answers_done_s"] for r in rows])), 2),
           "queries": rows, "screenshot": args.screenshot}
    print(json.dumps({k: v for k, v in res.items() if k != "queries"}, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
