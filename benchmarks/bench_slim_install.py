"""The slim install a RAG builder gets from `pip install honed`: its size, install time, and a cold first query.

Builds honed's wheel, installs it with no extras into a fresh venv from the package registry (pip's
cache as this machine has it: say so when comparing), measures the venv on disk, then times, in fresh
processes, `HonedRetriever.from_dir(artifact)` + the first query (median of `--repeats`), and checks
that torch was never imported. The artifact is the demo's (`artifacts/cuad-clauses-tuned`) when it
exists, else the packaged MiniLM exported to ONNX over the cuad-clauses test corpus (as bench_serve; kept in
`artifacts/bench-minilm-onnx` for the next run and for `deploy/container.sh check`).

    python benchmarks/bench_slim_install.py
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from honed import HonedRetriever
r = HonedRetriever.from_dir(sys.argv[1], similarity_top_k=10)
t1 = time.perf_counter()
nodes = r.retrieve("Is there a cap on the supplier's liability?")
t2 = time.perf_counter()
print(json.dumps({"open_s": t1 - t0, "first_query_s": t2 - t1, "total_s": t2 - t0, "hits": len(nodes),
                  "backend": r._encoder.backend, "torch_imported": "torch" in sys.modules}))
"""


def du_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1024


def main() -> None:
    from honed.retriever.device import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifact", type=Path, default=REPO / "artifacts" / "cuad-clauses-tuned")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "slim-install.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="honed-slim-") as tmp:
        tmp = Path(tmp)
        art = a.artifact
        if not (art / "manifest.json").exists():
            art = REPO / "artifacts" / "bench-minilm-onnx"
            if not (art / "manifest.json").exists():
                sys.path.insert(0, str(REPO / "benchmarks"))
                from bench_serve import build_artifact

                shutil.copytree(build_artifact(tmp / "work"), art)
        t0 = time.perf_counter()
        subprocess.run(["bash", str(REPO / "deploy" / "build_wheel.sh"), str(tmp / "dist")], check=True,
                       env={**os.environ, "PY": sys.executable})
        wheel = next((tmp / "dist").glob("honed-*.whl"))
        build_s = time.perf_counter() - t0
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        t0 = time.perf_counter()
        subprocess.run([str(tmp / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], check=True)
        install_s = time.perf_counter() - t0
        size_mb = du_mb(tmp / "venv")
        pkgs = subprocess.run([str(tmp / "venv" / "bin" / "pip"), "list", "--format=freeze"], capture_output=True,
                              text=True).stdout.split()
        wheel_kb = round(wheel.stat().st_size / 1024)
        runs = [json.loads(subprocess.run([str(tmp / "venv" / "bin" / "python"), "-c", COLD, str(art)], cwd=tmp,
                                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
                for _ in range(a.repeats)]
    med = {k: round(statistics.median(r[k] for r in runs), 3) for k in ("open_s", "first_query_s", "total_s")}
    doc = {"benchmark": "slim-install", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "python": sys.version.split()[0], "wheel": wheel.name,
           "wheel_kb": wheel_kb, "wheel_build_s": round(build_s, 1),
           "install_s": round(install_s, 1), "install_note": "pip's cache warm from earlier installs on this machine",
           "venv_mb": round(size_mb), "packages": len(pkgs), "artifact": str(art),
           "cold_open_and_first_query_s": med, "backend": runs[0]["backend"],
           "torch_imported": any(r["torch_imported"] for r in runs), "runs": runs,
           "targets": {"venv_mb": 500, "cold_total_s": 1.0}}
    doc["meets"] = {"venv_mb": doc["venv_mb"] <= 500, "cold_total_s": med["total_s"] <= 1.0,
                    "no_torch": not doc["torch_imported"]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("wheel_kb", "install_s", "venv_mb", "packages",
                                           "cold_open_and_first_query_s", "torch_imported", "meets")}, indent=1))


if __name__ == "__main__":
    main()
