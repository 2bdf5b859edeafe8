"""ONNX export of the real packaged MiniLM and the reading of a model `honed finetune` just wrote, the torch-free
query path, the per-CPU int8 variants, and the Triton repository (the demo run's export: tests/test_demo.py)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from honed.retriever.errors import HonedError

pytestmark = pytest.mark.slow   # ONNX export and a fine-tune: make test-full


def test_export_writes_models_and_parity(exported):
    from honed.retriever.ort_encoder import cpu_int8_target

    model, _, man = exported
    files = {p.name for p in (model / "onnx").iterdir()}
    assert {"model.onnx", "model_int8_avx2.onnx", "model_int8_avx512_vnni.onnx", "manifest.json"} <= files
    # fused graph: one Attention op per layer (6) etc., and still the same vectors as torch
    assert man["fused_ops"].get("Attention") == 6 and man["fused_ops"].get("SkipLayerNormalization") == 12
    assert man["parity"]["fp32"]["cos_min"] > 0.999
    assert abs(man["parity"]["torch"]["ndcg@10"] - man["parity"]["fp32"]["ndcg@10"]) < 1e-3
    here = cpu_int8_target()
    gated = ["avx2"] + (["avx512-vnni"] if here == "avx512-vnni" else [])
    for t in gated:   # every variant this CPU can run faithfully is gated, on cosine and nDCG@10
        assert man["parity"][f"int8-{t}"]["cos_mean"] > 0.97 and man["parity"][f"int8-{t}"]["cos_min"] > 0.95
        assert man["int8"][t]["passed"] == (man["int8"][t]["ndcg_drop"] <= 0.005)
    if here == "avx2":
        assert "not gated" in man["int8"]["avx512-vnni"]["reason"]
    for f in ("model_int8_avx2.onnx", "model_int8_avx512_vnni.onnx"):
        assert (model / "onnx" / f).stat().st_size < 0.4 * (model / "onnx" / "model.onnx").stat().st_size


def test_auto_picks_the_int8_model_for_this_cpu(exported, monkeypatch):
    import honed.retriever.ort_encoder as ort_encoder

    model, _, man = exported
    for cpu in ("avx2", "avx512-vnni"):
        monkeypatch.setattr(ort_encoder, "cpu_int8_target", lambda cpu=cpu: cpu)
        path, _, variant = ort_encoder.onnx_model_file(model, "int8")
        assert variant == f"int8-{cpu}" and path.name == f"model_int8_{cpu.replace('-', '_')}.onnx"
        _, _, auto = ort_encoder.onnx_model_file(model, "auto")
        ok = man["int8"][cpu]["passed"] or (cpu == "avx512-vnni" and man["int8"]["avx2"]["passed"])
        assert auto.startswith("int8-") == bool(ok)
        if cpu == "avx2":   # the VNNI recipe would saturate here: never picked on its own
            assert auto in ("int8-avx2", "fp32")


def test_export_format_1_still_opens(exported, tmp_path):
    """An export written before the per-CPU variants (one int8 model, format honed.onnx/1) keeps working."""
    from honed.retriever.ort_encoder import load_ort_encoder

    model, _, man = exported
    old = tmp_path / "old"
    shutil.copytree(model, old)
    m = json.loads((old / "onnx" / "manifest.json").read_text())
    os.replace(old / "onnx" / "model_int8_avx2.onnx", old / "onnx" / "model_int8.onnx")
    m.update(format="honed.onnx/1", files={"fp32": "model.onnx", "int8": "model_int8.onnx"},
             sha256={"fp32": m["sha256"]["fp32"], "int8": m["sha256"]["int8-avx2"]}, int8_passed=True)
    m.pop("int8")
    (old / "onnx" / "manifest.json").write_text(json.dumps(m))
    assert load_ort_encoder(old).backend == "onnx-int8"
    m["format"] = "honed.onnx/9"
    (old / "onnx" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HonedError, match="ONNX export format 'honed.onnx/9' is not supported"):
        load_ort_encoder(old)


def test_pooling_config_in_both_file_formats_and_every_mode(tmp_path):
    """The 5.x booleans and the 6.x `pooling_mode` key, read like sentence-transformers reads them;
    numpy pooling equals the Pooling module's for each mode the exporter supports."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    from honed.retriever.ort_encoder import POOLING_MODES, pool, pooling_mode

    where = tmp_path / "config.json"
    assert pooling_mode({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, where) == "cls"
    assert pooling_mode({"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": True}, where) == "mean"
    assert pooling_mode({"pooling_mode": ["max"]}, where) == "max"
    with pytest.raises(HonedError, match="pooling mode 'weightedmean' cannot be exported"):
        pooling_mode({"pooling_mode": "weightedmean"}, where)
    with pytest.raises(HonedError, match="concatenated modes"):
        pooling_mode({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, where)

    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 7, 16)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], dtype=np.int64)
    for mode in POOLING_MODES:
        ref = Pooling(16, pooling_mode=mode)({"token_embeddings": torch.tensor(hidden),
                                              "attention_mask": torch.tensor(mask)})["sentence_embedding"]
        assert np.allclose(pool(hidden, mask, mode, normalize=False), ref.numpy(), atol=1e-5), mode


def test_finetuned_model_reads_like_sentence_transformers_reads_it(tuned_run):
    tuned = tuned_run
    from sentence_transformers import SentenceTransformer

    from honed.retriever.ort_encoder import read_st_config

    pool_cfg = json.loads((tuned / "1_Pooling" / "config.json").read_text())
    assert "pooling_mode" in pool_cfg, "the run folder should be in the sentence-transformers 6 format"
    st = SentenceTransformer(str(tuned), device="cpu")
    cfg = read_st_config(tuned)
    assert cfg["pooling"] == st[1].pooling_mode
    # trained at 128 tokens (TINY), saved at the base model's 256: an index built with the run reads whole passages
    assert cfg["max_seq_length"] == st.max_seq_length == 256
    assert json.loads((tuned / "honed.json").read_text())["max_seq_length"] == {"training": 128, "saved": 256}
    assert cfg["normalize"] == any(type(m).__name__ == "Normalize" for m in st)
    assert {k: v for k, v in cfg["prompts"].items() if v} == {k: v for k, v in st.prompts.items() if v}


def test_onnx_query_path_matches_torch_and_imports_no_torch(exported, tmp_path, scifact_slice):
    from honed.retriever.encoder import load_encoder
    from honed.retriever.index import build_index

    model, _, _ = exported
    texts = list(scifact_slice.queries.values())[:8]
    t = load_encoder(model, backend="torch").encode_queries(texts)
    o = load_encoder(model, backend="onnx-fp32").encode_queries(texts)
    assert np.allclose(t, o, atol=1e-4)
    idx = build_index(f"{model}@torch", scifact_slice.corpus, tmp_path / "idx", show_progress=False)
    q = texts[0]
    code = ("import sys; from honed.retriever.index import open_index_and_encoder, search; "
            f"i, e = open_index_and_encoder({str(idx)!r}); hits = search(i, e.encode_queries([{q!r}]), 3)[0]; "
            "print(e.backend, i.docs_at([hits[0][0]])[0]['id'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    gold = next(qid for qid, t2 in scifact_slice.queries.items() if t2 == q)
    assert out[0].startswith("onnx-") and out[1] in scifact_slice.qrels[gold] and out[2] == "False"


def test_service_serves_the_onnx_path_without_loading_torch(exported, tmp_path, scifact_slice):
    """`honed serve` on an artifact with an ONNX export: same hits as in-process, and no libtorch mapped."""
    import httpx

    from conftest import Server
    from honed.retriever.index import build_index, open_index_and_encoder, search

    model, _, _ = exported
    art = build_index(f"{model}@torch", scifact_slice.corpus, tmp_path / "art", show_progress=False)
    s = Server([str(art)], tmp_path / "fb.db")
    try:
        ready = s.wait_ready()
        assert ready["arms"]["champion"]["backend"].startswith("onnx-")
        maps = open(f"/proc/{s.proc.pid}/maps").read()
        assert "libtorch" not in maps and "onnxruntime" in maps
        idx, enc = open_index_and_encoder(art)
        for q in list(scifact_slice.queries.values())[:5]:
            hits = httpx.post(s.url + "/search", json={"query": q, "k": 5}).json()["hits"]
            want = search(idx, enc.encode_queries([q]), 5)[0]
            assert [h["id"] for h in hits] == [d["id"] for d in idx.docs_at([lab for lab, _ in want])]
    finally:
        s.stop()


def test_real_triton_serves_two_versions_equal_to_in_process_and_batches(exported, tmp_path, scifact_slice):
    """`honed serve-triton` on the tritonserver binary nvidia-pytriton bundles (`make triton-env`)."""
    import concurrent.futures

    import tritonclient.http as th

    from conftest import HONED, free_port
    from honed.app.serve.launch import triton_python, wait_ready
    from honed.retriever.encoder import load_encoder

    model, _, _ = exported
    py = triton_python()   # a one-line HonedError if `make triton-env` has not run: the full tier needs it
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "triton.log"
    proc = subprocess.Popen([HONED, "serve-triton", f"{model}@onnx-fp32", f"{model}@onnx-int8", "--python", py,
                             "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port",
                             str(ports[2]), "--queue-delay-us", "20000"], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{ports[0]}"
    try:
        try:
            for v in (1, 2):
                wait_ready(f"http://{url}/v2/models/honed-embedder/versions/{v}/ready", proc, timeout=120)
        except RuntimeError as e:
            pytest.fail(f"Triton not ready ({e}): " + log.read_text()[-3000:])
        texts = (list(scifact_slice.queries.values()) * 2)[:32]   # the slice has 25 queries

        def embed(client, text, version):
            x = th.InferInput("TEXT", [1, 1], "BYTES")
            x.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
            return client.infer("honed-embedder", [x], model_version=version).as_numpy("EMBEDDING")[0]

        client = th.InferenceServerClient(url)
        for version, backend in (("1", "onnx-fp32"), ("2", "onnx-int8")):
            local = load_encoder(model, backend=backend)
            for t in texts[:4]:   # one at a time: int8 activation scales depend on what shares a batch
                assert np.allclose(embed(client, t, version), local.encode_queries([t])[0], atol=1e-5)
        assert not np.allclose(embed(client, texts[0], "1"), embed(client, texts[0], "2"), atol=1e-4)

        def stats():
            m = next(m for m in client.get_inference_statistics("honed-embedder", "1")["model_stats"])
            return m["inference_count"], m["execution_count"]

        n0, e0 = stats()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            clients = [th.InferenceServerClient(url) for _ in range(32)]
            got = list(pool.map(lambda i: embed(clients[i], texts[i], "1"), range(32)))
        n1, e1 = stats()
        assert n1 - n0 == 32 and e1 - e0 < 32          # Triton's own count: fewer model executions than requests
        fp32 = load_encoder(model, backend="onnx-fp32").encode_queries(texts)
        assert np.allclose(np.stack(got), fp32, atol=1e-4)
    finally:
        proc.terminate()
        proc.wait(30)


def test_triton_repository_validates(exported, tmp_path):
    from honed.retriever.export.triton import export_triton, validate_config

    model, _, _ = exported
    dest = export_triton(model, tmp_path / "repo", name="minilm")
    cfg = validate_config((dest / "config.pbtxt").read_text())
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 64 and cfg.dynamic_batching is not None
    assert [i.name for i in cfg.input][:2] == ["input_ids", "attention_mask"]
    assert (dest / "1" / "model.onnx").exists() and json.loads((dest / "honed.json").read_text())["st_config"]
    with pytest.raises(HonedError, match="config.pbtxt"):
        validate_config('name: "x"\nbackend: "onnxruntime"\nmax_batch_size: "lots"\n')


def test_bad_inputs(tmp_path, exported):
    from honed.retriever.encoder import load_encoder
    from honed.retriever.export.onnx import export_onnx

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HonedError, match="folder is not a model"):
        export_onnx(empty)
    model, _, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "onnx" / "model.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(HonedError, match="model.onnx: contents do not match onnx/manifest.json"):
        load_encoder(broken, backend="onnx-fp32")
    m = json.loads((broken / "onnx" / "manifest.json").read_text())   # a manifest that agrees with the junk
    m["sha256"]["fp32"] = hashlib.sha256(b"\x08\x01garbage").hexdigest()
    (broken / "onnx" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HonedError, match="model.onnx: cannot load ONNX model"):
        load_encoder(broken, backend="onnx-fp32")
    no_onnx = tmp_path / "no-onnx"
    shutil.copytree(model, no_onnx, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(HonedError, match="no onnx/manifest.json"):
        load_encoder(no_onnx, backend="onnx-int8")
