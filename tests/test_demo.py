"""What a user does straight after `make demo`, on the demo's own run and artifact (marked `demo`: `make test-demo`,
after `make ci-gate` in CI). Reusing what the main job wrote spares the slow tier a fine-tune and an export of its
own: the run's ONNX export and its parity, the artifact's torch-free query path in every mode, a Triton repository.

HONED_DEMO_RUN and HONED_DEMO_ARTIFACT point elsewhere (defaults: `make ci-gate`'s runs/ci and the demo's artifact).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.demo

RUN = Path(os.environ.get("HONED_DEMO_RUN", "runs/ci"))
ARTIFACT = Path(os.environ.get("HONED_DEMO_ARTIFACT", "artifacts/cuad-clauses-tuned"))


@pytest.fixture(scope="module")
def demo():
    for what in (RUN / "onnx" / "manifest.json", ARTIFACT / "manifest.json"):
        if not what.is_file():
            pytest.fail(f"{what} is missing: run `make ci-gate` (the demo) first")
    return RUN, ARTIFACT


def test_the_demo_run_exported_with_parity_and_reads_the_same_on_both_backends(demo):
    from honed.retriever.data import load_beir
    from honed.retriever.encoder import load_encoder

    run, _ = demo
    man = json.loads((run / "onnx" / "manifest.json").read_text())
    assert man["st_config"]["pooling"] == "mean" and man["parity"]["fp32"]["cos_min"] > 0.999
    texts = list(load_beir(REPO / "datasets" / "cuad-clauses", "test").queries.values())[:8]
    t = load_encoder(run, backend="torch").encode_queries(texts)
    assert np.allclose(t, load_encoder(run, backend="onnx-fp32").encode_queries(texts), atol=1e-4)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_the_demo_artifact_answers_without_torch_in_every_mode(demo, mode):
    """`honed search` on the shipped artifact, in a process that must never import torch."""
    from honed.retriever.data import load_beir

    _, art = demo
    ds = load_beir(REPO / "datasets" / "cuad-clauses", "test")
    qid = sorted(ds.queries)[0]
    code = ("import sys; sys.argv = ['honed', 'search', %r, %r, '-k', '10', '--mode', %r]\n"
            "from honed.app.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('TORCH', 'torch' in sys.modules)") % (str(art), ds.queries[qid], mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stdout and (mode == "bm25" or "model backend: onnx-" in out.stdout)
    assert any(d in out.stdout for d in ds.qrels[qid] if ds.qrels[qid][d] > 0), out.stdout[-3000:]


def test_the_demo_artifact_records_its_evaluation_and_modes(demo):
    from honed.retriever.artifact import artifact_info

    _, art = demo
    info = artifact_info(art)
    assert info["query_path"].startswith("onnx") and info["modes"] == ["dense", "bm25", "hybrid"]
    assert info["eval"]["system"] == "tuned" and info["eval"]["dataset"] == "cuad-clauses"
    assert info["eval"]["metrics"]["NDCG@10"] > info["eval"]["baseline_metrics"]["NDCG@10"]
    # the hybrid fusion was chosen on the run's held-out dev queries, not left to RRF's default
    assert "dev-split (dev" in info["hybrid"]["chosen_on"] and info["hybrid"]["queries_seen_in_training"] is False
    assert info["hybrid"]["dev_ndcg@10"] == max(r["ndcg@10"] for r in info["hybrid"]["rows"])


def test_the_demo_report_carries_both_retrievers_answers_paired(demo):
    """The demo answers cuad-qa's questions from base and tuned retrieval; its report holds the paired comparison."""
    from honed.retriever.data import load_beir

    report = Path(os.environ.get("HONED_DEMO_REPORT", "reports/ci"))
    doc = json.loads((report / "report.json").read_text())
    rag = json.loads((report / "answers" / "report.json").read_text())
    questions = load_beir(REPO / "datasets" / "cuad-qa", "test").queries
    assert rag["judge"] == "none" and rag["systems"]["tuned"]["model"] == str(demo[0])
    by_id = {name: {s["query_id"]: s for s in sd["samples"]} for name, sd in rag["systems"].items()}
    for name in ("base", "tuned"):
        assert set(by_id[name]) == set(questions) and all(s["answer"] and not s["errors"] for s in by_id[name].values())
    # each side read its own retriever's passages: the two top 3s differ on some questions
    assert any(by_id["base"][q]["context_ids"] != by_id["tuned"][q]["context_ids"] for q in questions)
    tests = doc["answers"]["tests"]["tuned"]
    assert tests == rag["comparison"]["tuned"]["tests"]
    assert {"semantic_similarity", "rouge_l", "decision_accuracy", "context_recall_ids"} <= set(tests)
    md = (report / "report.md").read_text()
    assert f"## Answers: {rag['dataset']} ({len(questions)} questions)" in md and "(answers/report.md)" in md
    assert (report / "answers" / "rag-paired.png").stat().st_size > 10_000


def test_the_demo_run_becomes_a_triton_repository(demo, tmp_path):
    from honed.retriever.export.triton import export_triton, validate_config

    run, _ = demo
    dest = export_triton(run, tmp_path / "repo", name="tuned")
    assert validate_config((dest / "config.pbtxt").read_text()).backend == "onnxruntime"
    assert json.loads((dest / "honed.json").read_text())["st_config"]["pooling"] == "mean"


def test_the_demo_run_routes_and_its_artifact_routes_inserts_without_torch(demo, tmp_path):
    """The demo's run kept a domain router (its training corpus is large enough), its indexes record it, and a
    copy of its artifact routes an inserted abstract to the base model and a contract clause to the tuned one,
    on onnxruntime alone."""
    import shutil

    run, art = demo
    man = json.loads((run / "honed.json").read_text())
    assert man["router"]["reference_passages"] >= 500 and (run / "router" / "base-model" / "onnx").is_dir()
    assert json.loads((art / "manifest.json").read_text())["routing"]["threshold"] == man["router"]["threshold"]
    shutil.copytree(art, tmp_path / "art")
    abstract = ("Zebrafish regenerate amputated fins through the formation of a blastema, a mass of dedifferentiated "
                "cells that proliferate and restore the lost tissue within two weeks.")
    clause = ("Neither party shall be liable to the other for any indirect, incidental or consequential damages, and "
              "each party's aggregate liability under this Agreement shall not exceed the fees paid.")
    code = f"""import sys, json, numpy as np
from honed.retriever.encoder import load_encoder
from honed.retriever.index import load_index
from honed.retriever.updates import add_documents
index = load_index({str(tmp_path / "art")!r})
add_documents(index, {{"abstract": {{"text": {abstract!r}}}, "clause": {{"text": {clause!r}}}}})
pos = index.store.positions_of(["abstract", "clause"])
stored = {{k: index.faiss_index.reconstruct(int(p)) for k, p in pos.items()}}
base = load_encoder(index.model_dir / "router" / "base-model")
tuned = load_encoder(index.model_dir, routing=False)
print(json.dumps({{k: [float(stored[k] @ base.encode_documents([t])[0]), float(stored[k] @ tuned.encode_documents([t])[0])]
                  for k, t in (("abstract", {abstract!r}), ("clause", {clause!r}))}}))
print("TORCH", "torch" in sys.modules, base.backend, tuned.backend)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    cos = json.loads(out.stdout.splitlines()[0])
    assert cos["abstract"][0] > 0.9999 and cos["abstract"][1] < 0.999, cos      # the base model read the abstract
    assert cos["clause"][1] > 0.9999 and cos["clause"][0] < 0.999, cos          # the tuned model read the clause
    assert out.stdout.splitlines()[1].startswith("TORCH False onnx-")
