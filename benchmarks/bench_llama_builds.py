"""Local LLM speed for each llama.cpp build option, side by side in one run: the evidence for the Makefile's choice.

Each build is a llama-cpp-python wheel (the Makefile's portable one, and any others given with
``--wheel NAME=PATH``, e.g. a default native build). Each is unpacked into its own folder and measured
in a fresh child process with the packaged Qwen2.5-Coder-0.5B: load time, prompt reading (tokens/s over
a ~450-token prompt) and greedy decoding (tokens/s over 96 tokens), with llama.cpp's extra buffer types
on and off (``honed.retriever.llm.llama.load_llama(extra_buffers=…)``: off is the AMX guard). Each
figure is the median of `--repeats`. The CPU and what llama.cpp reports of each build are recorded.

    python benchmarks/bench_llama_builds.py --wheel native=/tmp/native/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time
from honed.retriever.llm.llama import load_llama, system_info
extra, repeats = sys.argv[1] == "on", int(sys.argv[2])
t0 = time.perf_counter()
llama = load_llama("qwen", n_ctx=2048, slot=f"bench-{extra}", extra_buffers=extra)
load_s = time.perf_counter() - t0
prompt = ("Contract clause: " + "The Supplier's aggregate liability under this Agreement shall not exceed the fees "
          "paid in the twelve months preceding the claim, except for breaches of confidentiality. " * 14)
reads, decodes = [], []
for _ in range(repeats):
    llama.reset()
    t = time.perf_counter()
    out = llama.create_completion(prompt, max_tokens=1, temperature=0.0)
    reads.append(out["usage"]["prompt_tokens"] / (time.perf_counter() - t))
    llama.reset()
    t = time.perf_counter()
    out = llama.create_completion("Write a short story about a lighthouse keeper.", max_tokens=96, temperature=0.0)
    decodes.append(out["usage"]["completion_tokens"] / (time.perf_counter() - t))
print(json.dumps({"load_s": round(load_s, 2), "prompt_tokens_per_s": round(statistics.median(reads), 1),
                  "decode_tokens_per_s": round(statistics.median(decodes), 1),
                  "use_extra_bufts": bool(llama.model_params.use_extra_bufts), "system_info": system_info()}))
"""


def measure(wheel: Path, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="honed-llama-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", tmp, str(wheel)],
                       check=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        res = {}
        for extra in ("on", "off"):
            p = subprocess.run([sys.executable, "-c", CHILD, extra, str(repeats)], env=env, capture_output=True,
                               text=True, timeout=900)
            if p.returncode != 0:
                res[f"extra_buffers_{extra}"] = {"error": p.stderr[-500:], "returncode": p.returncode}
                continue
            res[f"extra_buffers_{extra}"] = json.loads(p.stdout.strip().splitlines()[-1])
        return res


def main() -> None:
    sys.path.insert(0, str(REPO))
    from honed.retriever.device import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    portable = sorted(glob.glob(os.path.expanduser(
        "~/.cache/honed/wheels/llama-cpp-python-*-x86-64-v3/llama_cpp_python-*.whl")))
    ap.add_argument("--wheel", action="append", default=[], help="NAME=PATH of another build to compare")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "llama-builds.json")
    a = ap.parse_args()
    wheels = ([("portable (Makefile: GGML_NATIVE=OFF, AVX2/FMA/F16C, no AVX-512, no AMX)", Path(portable[-1]))]
              if portable else []) + [(n, Path(p)) for n, p in (w.rsplit("=", 1) for w in a.wheel)]
    doc = {"benchmark": "llama-builds", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu_name(), "model": "qwen2.5-coder-0.5b-instruct Q4_K_M", "threads": os.cpu_count(),
           "builds": {}}
    for name, wheel in wheels:
        print(f"measuring {name} …", flush=True)
        doc["builds"][name] = {"wheel": wheel.name, **measure(wheel, a.repeats)}
        print(json.dumps(doc["builds"][name], indent=1), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
