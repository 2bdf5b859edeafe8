"""ONNX export of the real packaged MiniLM, the torch-free query path, and the Triton repository."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from retriever.errors import HonedError


@pytest.fixture(scope="module")
def exported(tmp_path_factory, scifact_slice):
    from retriever.data import write_beir
    from retriever.export.onnx import export_onnx
    from retriever.models import resolve_model

    root = tmp_path_factory.mktemp("onnx")
    model = root / "minilm"
    shutil.copytree(resolve_model("minilm"), model)
    data = root / "slice"
    write_beir(data, scifact_slice.corpus, scifact_slice.queries, {"test": scifact_slice.qrels})
    man = export_onnx(model, data=str(data), max_docs=200)
    return model, data, man


def test_export_writes_models_and_parity(exported):
    model, _, man = exported
    assert (model / "onnx" / "model.onnx").exists() and (model / "onnx" / "model_int8.onnx").exists()
    # fused graph: one Attention op per layer (6) etc., and still the same vectors as torch
    assert man["fused_ops"].get("Attention") == 6 and man["fused_ops"].get("SkipLayerNormalization") == 12
    assert man["parity"]["fp32"]["cos_min"] > 0.999
    assert man["parity"]["int8"]["cos_mean"] > 0.97 and man["parity"]["int8"]["cos_min"] > 0.95
    assert abs(man["parity"]["torch"]["ndcg@10"] - man["parity"]["fp32"]["ndcg@10"]) < 1e-3
    assert man["int8_passed"] == (man["int8_ndcg_drop"] <= 0.005)
    assert (model / "onnx" / "model_int8.onnx").stat().st_size < 0.4 * (model / "onnx" / "model.onnx").stat().st_size


def test_onnx_query_path_matches_torch_and_imports_no_torch(exported, tmp_path, scifact_slice):
    from retriever.encoder import load_encoder
    from retriever.index import build_index

    model, _, _ = exported
    texts = list(scifact_slice.queries.values())[:8]
    t = load_encoder(model, backend="torch").encode_queries(texts)
    o = load_encoder(model, backend="onnx-fp32").encode_queries(texts)
    assert np.allclose(t, o, atol=1e-4)
    idx = build_index(f"{model}@torch", scifact_slice.corpus, tmp_path / "idx", show_progress=False)
    q = texts[0]
    code = ("import sys; from retriever.index import open_index_and_encoder, search; "
            f"i, e = open_index_and_encoder({str(idx)!r}); hits = search(i, e.encode_queries([{q!r}]), 3)[0]; "
            "print(e.backend, i.docs[hits[0][0]]['id'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    gold = next(qid for qid, t2 in scifact_slice.queries.items() if t2 == q)
    assert out[0].startswith("onnx-") and out[1] in scifact_slice.qrels[gold] and out[2] == "False"


def test_triton_repository_validates(exported, tmp_path):
    from retriever.export.triton import export_triton, validate_config

    model, _, _ = exported
    dest = export_triton(model, tmp_path / "repo", name="minilm")
    cfg = validate_config((dest / "config.pbtxt").read_text())
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 64 and cfg.dynamic_batching is not None
    assert [i.name for i in cfg.input][:2] == ["input_ids", "attention_mask"]
    assert (dest / "1" / "model.onnx").exists() and json.loads((dest / "honed.json").read_text())["st_config"]
    with pytest.raises(HonedError, match="config.pbtxt"):
        validate_config('name: "x"\nbackend: "onnxruntime"\nmax_batch_size: "lots"\n')


def test_bad_inputs(tmp_path, exported):
    from retriever.encoder import load_encoder
    from retriever.export.onnx import export_onnx

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HonedError, match="folder is not a model"):
        export_onnx(empty)
    model, _, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "onnx" / "model.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(HonedError, match="model.onnx: cannot load ONNX model"):
        load_encoder(broken, backend="onnx-fp32")
    no_onnx = tmp_path / "no-onnx"
    shutil.copytree(model, no_onnx, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(HonedError, match="no onnx/manifest.json"):
        load_encoder(no_onnx, backend="onnx-int8")
