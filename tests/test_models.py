"""Model provisioning from the real PyPI packages and the resolution order."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from honed.retriever import models
from honed.retriever.errors import ModelNotFoundError


def test_fetch_minilm_into_fresh_cache_verifies_checksum(tmp_path):
    path = models.fetch_model("minilm", cache_dir=tmp_path)
    assert path == tmp_path / "all-MiniLM-L6-v2"
    assert (path / "modules.json").exists() and (path / "config.json").exists()
    assert not list(path.rglob("desktop.ini"))
    assert models.sha256_file(path / "model.safetensors") == models.PACKAGED_MODELS["all-MiniLM-L6-v2"].sha256["model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    bad = dataclasses.replace(models.PACKAGED_MODELS["all-MiniLM-L6-v2"], name="bad-minilm",
                              aliases=("bad-minilm",), sha256={"model.safetensors": "0" * 64})
    monkeypatch.setitem(models.PACKAGED_MODELS, "bad-minilm", bad)
    with pytest.raises(ModelNotFoundError, match="checksum mismatch for bad-minilm/model.safetensors"):
        models.fetch_model("bad-minilm", cache_dir=tmp_path)
    assert not (tmp_path / "bad-minilm").exists()


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    gone = dataclasses.replace(models.PACKAGED_MODELS["all-MiniLM-L6-v2"], name="gone", aliases=("gone",),
                               parts=(("honed-no-such-dist", "x/model.zip"),), pip="pip install honed-no-such-dist")
    monkeypatch.setitem(models.PACKAGED_MODELS, "gone", gone)
    with pytest.raises(ModelNotFoundError, match=r"needs package honed-no-such-dist: run `pip install honed-no-such-dist`"):
        models.fetch_model("gone", cache_dir=tmp_path)


def test_resolution_order(tmp_path, monkeypatch):
    cached = models.resolve_model("minilm")
    # 1. a local folder wins, even when its name is also a packaged alias
    local = tmp_path / "minilm"
    shutil.copytree(cached, local)
    monkeypatch.chdir(tmp_path)
    assert models.resolve_model("minilm").resolve() == local.resolve()
    monkeypatch.chdir(models.__file__.rsplit("/", 2)[0])
    # 2. packaged alias → cache
    assert models.resolve_model("sentence-transformers/all-MiniLM-L6-v2") == cached
    # 3. hub id passes through when the hub is reachable…
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert models.resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    # …and is a clear error offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="hub is offline"):
        models.resolve_model("BAAI/bge-small-en-v1.5")


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="folder is not a model"):
        models.resolve_model(tmp_path)


def test_fingerprint_ignores_onnx_and_docs_but_not_weights(tmp_path):
    src = models.resolve_model("minilm")
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    fp = models.model_fingerprint(dst)
    assert fp == models.model_fingerprint(src)
    (dst / "onnx").mkdir()
    (dst / "onnx" / "model.json").write_text("{}")
    (dst / "README.md").write_text("docs")
    assert models.model_fingerprint(dst) == fp
    (dst / "config_sentence_transformers.json").write_text('{"prompts": {"query": "q: "}}')
    assert models.model_fingerprint(dst) != fp
