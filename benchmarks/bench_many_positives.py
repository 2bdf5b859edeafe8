"""Fine-tuning memory on a labelled set with many positives per query: peak RSS per phase, and wall time.

The shape that was OOM-killed (a medical BEIR set: a few thousand documents, 100k+ training pairs,
~40 positives per query) is built from CUAD, which this machine has: `build_cuad` on `--contracts`
training contracts gives clause-type queries whose positives are that clause in every contract (about
35 with 180 contracts, 6,159 passages). To reach 100k+ pairs, each clause-type phrasing is asked in `--framings`
wordings ("where does the contract cover …", "find the clause on …"): as users phrase one need many
ways; every wording keeps the clause's positives. The set is written to a scratch folder, never shipped.

`honed finetune` runs in a child under a sampler that reads its resident memory (``/proc``, the process
tree) every 0.25 s; the run's own phase lines (``… : done in N s``) split the samples into phases.

    python benchmarks/bench_many_positives.py --source ../shared/datasets/cuad --time-budget 20m
    python benchmarks/bench_many_positives.py --source ../shared/datasets/cuad --no-budget --max-steps 2
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FRAMINGS = ["{q}", "where does the contract cover {q}", "find the clause on {q}", "which section states {q}",
            "show me the provision about {q}", "{q} clause", "contract language on {q}", "what does it say about {q}",
            "locate {q} in the agreement", "terms regarding {q}", "the agreement's wording on {q}",
            "any provision on {q}", "passage describing {q}", "{q} terms", "is there a clause about {q}",
            "find text on {q}", "section about {q}", "{q} provision", "clause addressing {q}", "wording for {q}",
            "what is agreed on {q}", "does the contract mention {q}", "{q} in this agreement",
            "look up {q}", "contract text regarding {q}"]


def build_set(source: Path, out: Path, contracts: int, framings: int) -> dict:
    from honed.retriever.data import load_beir, write_beir
    from honed.retriever.data.cuad import build_cuad

    base = out.parent / "cuad-base"
    build_cuad(source, base, n_train=contracts, n_test=10, force=True)
    tr, te = load_beir(base, "train"), load_beir(base, "test")
    queries, qrels = {}, {}
    for qid, text in tr.queries.items():
        if not tr.qrels.get(qid):
            continue
        for i, frame in enumerate(FRAMINGS[:framings]):
            queries[f"{qid}-f{i}"] = frame.format(q=text)
            qrels[f"{qid}-f{i}"] = dict(tr.qrels[qid])
    write_beir(out / "train", tr.corpus, queries, {"train": qrels})
    write_beir(out / "test", te.corpus, te.queries, {"test": te.qrels})
    n_pos = sorted(len(v) for v in qrels.values())
    return {"contracts": contracts, "framings": framings, "documents": len(tr.corpus), "queries": len(queries),
            "pairs": sum(n_pos), "positives_per_query_median": n_pos[len(n_pos) // 2]}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (MB)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 1024


def run_finetune(data: Path, out: Path, args: list[str], limit_mb: float, honed_path: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": honed_path} if honed_path else None
    proc = subprocess.Popen([sys.executable, "-m", "honed.app.cli", "finetune", "--data", str(data), "--out", str(out),
                             "--no-track", "--force", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env=env)
    samples, lines, t0 = [], [], time.time()
    killed = {"at_mb": None}

    def sample():
        while proc.poll() is None:
            mb = tree_rss_mb(proc.pid)
            samples.append((time.time() - t0, mb))
            if mb > limit_mb and killed["at_mb"] is None:   # the benchmark stops it before the kernel would
                killed["at_mb"] = round(mb)
                proc.kill()
            time.sleep(0.25)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    for line in proc.stdout:
        lines.append((time.time() - t0, line.rstrip()))
        print(line, end="", flush=True)
    proc.wait()
    th.join()
    # phases: a line "X …" opens phase X, "X: done in N s" closes it; mining/training are named by their lines
    marks = [(t, m.group(1)) for t, l in lines if (m := re.match(r"(.+?) …$", l.strip()))]
    marks.append((time.time() - t0, "end"))
    phases = {}
    for (start, name), (end, _) in zip(marks, marks[1:]):
        inside = [mb for t, mb in samples if start <= t < end]
        key = re.sub(r"\s*\(.*", "", name)[:60]
        phases[key] = {"seconds": round(end - start, 1), "peak_rss_mb": round(max(inside, default=0))}
    return {"returncode": proc.returncode, "killed_at_mb": killed["at_mb"], "wall_s": round(time.time() - t0, 1),
            "peak_rss_mb": round(max((mb for _, mb in samples), default=0)), "phases": phases,
            "log_tail": [l for _, l in lines[-12:]]}


def _seconds(budget: str) -> float:
    from honed.retriever.finetune.budget import parse_duration

    return parse_duration(budget)


def main() -> None:
    from honed.retriever.device import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "datasets" / "cuad")
    ap.add_argument("--contracts", type=int, default=180)
    ap.add_argument("--framings", type=int, default=25)
    ap.add_argument("--time-budget", default="20m")
    ap.add_argument("--no-budget", action="store_true", help="mine every pair (shows mining memory alone)")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--limit-mb", type=float, default=16000, help="kill the run above this resident memory")
    ap.add_argument("--honed-path", help="run another honed's code (a folder holding a `honed` package tree, "
                                         "e.g. an older commit's) for a before/after comparison")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "many-positives.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="honed-manypos-") as tmp:
        data = Path(tmp) / "set"
        shape = build_set(a.source, data, a.contracts, a.framings)
        print(f"set: {shape}", flush=True)
        args = ["--drop-eval-overlap"]
        if not a.no_budget:
            args += ["--time-budget", a.time_budget]
        if a.max_steps:
            args += ["--max-steps", str(a.max_steps)]
        res = run_finetune(data, Path(tmp) / "run", args, a.limit_mb, a.honed_path)
    doc = {"benchmark": "many-positives", "code": a.honed_path or "this checkout", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "set": shape, "args": args, **res,
           "target_peak_rss_mb": 4096,
           # the memory target: not killed, within 4 GB, ended within its budget (+5% for the process start);
           # whether the model improved is the run's own verdict (exit 1: marked failed), recorded apart
           "meets_target": res["killed_at_mb"] is None and res["peak_rss_mb"] <= 4096 and (
               a.no_budget or res["wall_s"] <= 1.05 * _seconds(a.time_budget)),
           "run_status": {0: "passed", 1: "marked failed (dev nDCG@10 below base)"}.get(res["returncode"],
                                                                                   f"exit {res['returncode']}")}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("set", "wall_s", "peak_rss_mb", "phases", "meets_target", "run_status")},
                     indent=1))


if __name__ == "__main__":
    main()
