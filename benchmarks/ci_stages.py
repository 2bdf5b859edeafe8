"""CI's wall time, stage by stage, read from the log of one `.ci/run`: ``benchmarks/results/ci-stages.json``.

`.ci/run` prints ``== stage NAME  N s (total T s)`` after each stage and pytest prints each tier's slowest
tests and its summary line; this script turns one such log into the results file the docs render (the CI
row of Measured numbers), keeping the previous file's stages as ``previous``.

    .ci/run 2>&1 | tee /tmp/ci.log; python benchmarks/ci_stages.py /tmp/ci.log --how "fresh clone, warm pip cache"

Several logs (stages rerun after a fix) are read in order; the total is the sum of the stages, and the target is
judged only on a complete run (every stage of `.ci/run` present).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_S = 1800
STAGES = ("install", "test", "test-slow", "ci-gate", "test-demo", "ci-container", "docs")   # .ci/run's order
STAGE = re.compile(r"^== stage (\S+)\s+(\d+) s \(total (\d+) s\)")
SUMMARY = re.compile(r"^=*\s*(\d+) passed(?:, (\d+) failed)?.* in ([\d.]+)s")
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)")


def parse_log(text: str) -> dict:
    """Stages (seconds, in order), the total, each pytest run's summary and its slowest tests."""
    stages, runs, slowest, current = {}, [], [], None
    for line in text.splitlines():
        if m := STAGE.match(line):
            stages[m.group(1)] = int(m.group(2))
            current = None
        elif m := DURATION.match(line):
            slowest.append({"s": float(m.group(1)), "when": m.group(2), "test": m.group(3)})
        elif m := SUMMARY.match(line.strip("= ")):
            runs.append({"passed": int(m.group(1)), "failed": int(m.group(2) or 0), "s": float(m.group(3))})
            current = runs[-1]
            current["slowest"] = slowest[:10]
            slowest = []
    return {"stages_s": stages, "total_s": sum(stages.values()), "complete": all(s in stages for s in STAGES),
            "pytest_runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", help="the output of one .ci/run (or of its stages, in order)")
    ap.add_argument("--how", default="", help="where and how it ran (fresh clone, cache state, machine load)")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "ci-stages.json"))
    args = ap.parse_args()

    from honed.retriever.device import cpu_name

    parsed = parse_log("\n".join(Path(f).read_text(encoding="utf-8", errors="replace") for f in args.logs))
    if not parsed["stages_s"]:
        sys.exit(f"{', '.join(args.logs)}: no '== stage' lines: not the output of .ci/run")
    result = Path(args.result)
    previous = json.loads(result.read_text(encoding="utf-8")) if result.exists() else {}
    doc = {"benchmark": "ci-stages", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "how": args.how, **parsed, "target_s": TARGET_S,
           "meets_target": parsed["complete"] and parsed["total_s"] <= TARGET_S,
           "previous": {k: previous[k] for k in ("date", "stages_s", "total_s", "estimated_total_s", "last_ci_s")
                        if k in previous}}
    result.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: doc[k] for k in ("stages_s", "total_s", "meets_target")}, indent=1))


if __name__ == "__main__":
    main()
