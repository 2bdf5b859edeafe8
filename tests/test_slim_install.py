"""`pip install honed` with no extras is the torch-free query path, and says which extra the rest needs.

Builds honed's wheel, installs it alone into a fresh virtual environment (from the package registry, as a
user would), and from a folder outside the checkout opens a copied artifact whose model has an ONNX
export: retrieves, adds and deletes a document through LlamaIndex and through the CLI, and shows torch
was never imported (it is not even installed). A command that needs an extra exits 2 with one line.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow      # builds a wheel and installs it into a fresh venv: make test-full


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slim")
    left_in_checkout = [REPO / "build" / "lib", REPO / "honed.egg-info"]     # what an in-tree `pip wheel .` writes
    before = {p: p.stat().st_mtime_ns if p.exists() else None for p in left_in_checkout}
    subprocess.run(["bash", str(REPO / "deploy" / "build_wheel.sh"), str(root / "dist")], check=True,
                   capture_output=True, env={**os.environ, "PY": sys.executable})
    assert {p: p.stat().st_mtime_ns if p.exists() else None for p in left_in_checkout} == before, \
        "building the wheel wrote into the checkout"
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    wheel = next((root / "dist").glob("honed-*.whl"))
    run = subprocess.run([str(root / "venv" / "bin" / "pip"), "install", "-q", "--no-compile", str(wheel)],
                         capture_output=True, text=True, timeout=900)      # byte-compiling it all: seconds for nothing
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "venv"


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory, exported, scifact_slice) -> Path:
    """An index artifact built with the ONNX-exported MiniLM (what `honed package` ships)."""
    from honed.retriever.index import build_index

    model, _, _ = exported
    out = tmp_path_factory.mktemp("art") / "scifact"
    build_index(str(model), scifact_slice.corpus, out, show_progress=False)
    return out


def test_slim_install_queries_updates_and_never_imports_torch(slim_venv, onnx_artifact, scifact_slice, tmp_path):
    py, honed = slim_venv / "bin" / "python", slim_venv / "bin" / "honed"
    project = tmp_path / "myproject"
    art = project / "retrievers" / "scifact"
    shutil.copytree(onnx_artifact, art)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    qid, query = next(iter(scifact_slice.queries.items()))
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        from honed import HonedRetriever
        r = HonedRetriever.from_dir("retrievers/scifact", similarity_top_k=3)
        hit = r.retrieve({query!r})[0].node.node_id
        r.insert({{"mine-1": {{"text": "Zebrafish fins regenerate through blastema formation."}}}})
        new = r.retrieve("zebrafish fin regeneration blastema")[0].node.node_id
        gone = r.delete(["mine-1"])["deleted"] == 1 and "mine-1" not in [
            n.node.node_id for n in r.retrieve("zebrafish fin regeneration blastema")]
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
        installed = [m for m in ("torch", "sentence_transformers", "mlflow", "ragas", "llama_cpp", "streamlit")
                     if importlib.util.find_spec(m)]
        try:
            from honed import finetune
            extra_error = ""
        except ModuleNotFoundError as e:
            extra_error = str(e)
        print(json.dumps(dict(hit=hit, new=new, gone=gone, heavy=heavy, installed=installed,
                              backend=r._encoder.backend, extra_error=extra_error)))
    """)
    p = subprocess.run([str(py), "-c", script], cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["hit"] in scifact_slice.qrels[qid] and out["new"] == "mine-1" and out["gone"]
    assert out["heavy"] == [] and out["installed"] == [], out           # torch never imported, never installed
    assert out["backend"].startswith("onnx"), out["backend"]
    assert "honed[train]" in out["extra_error"], out["extra_error"]

    def cli(*args):
        return subprocess.run([str(honed), *args], cwd=project, capture_output=True, text=True, timeout=300, env=env)

    s = cli("search", "retrievers/scifact", query, "-k", "3")
    assert s.returncode == 0 and "backend: onnx" in s.stdout, s.stderr[-2000:]
    (project / "new.jsonl").write_text(json.dumps({"_id": "cli-1", "text": "Tardigrades survive vacuum."}) + "\n")
    a = cli("index", "add", "retrievers/scifact", "--corpus", "new.jsonl")
    assert a.returncode == 0 and "1 added" in a.stdout, a.stderr[-2000:]
    assert "cli-1" in cli("search", "retrievers/scifact", "tardigrades vacuum survival", "-k", "1").stdout
    d = cli("index", "delete", "retrievers/scifact", "--id", "cli-1")
    assert d.returncode == 0 and "1 deleted" in d.stdout, d.stderr[-2000:]

    f = cli("finetune", "--data", "somewhere", "--out", "runs/x")
    assert f.returncode == 2 and f.stdout == "", (f.stdout, f.stderr)
    lines = f.stderr.strip().splitlines()
    assert len(lines) == 1 and "honed finetune needs honed[train]" in lines[0] and "pip install" in lines[0], lines
    e = cli("eval", "rag", "--data", "x", "--system", "base=minilm", "--out", "reports/r")
    assert e.returncode == 2 and len(e.stderr.strip().splitlines()) == 1 and "honed[" in e.stderr, e.stderr

    # an artifact that carries a BM25 index: dense queries need nothing more; BM25 (queries, updates) says which extra
    from honed.retriever.artifact import package_artifact

    package_artifact(onnx_artifact, project / "retrievers" / "hybrid", bm25=True)
    s = cli("search", "retrievers/hybrid", query, "-k", "3")
    assert s.returncode == 0 and "backend: onnx" in s.stdout, s.stderr[-2000:]
    for args in (("search", "retrievers/hybrid", query, "--mode", "hybrid"),
                 ("index", "add", "retrievers/hybrid", "--corpus", "new.jsonl")):
        r = cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "needs honed[hybrid]" in lines[0], (args, r.stderr)
