"""Merging a tuned model back toward its base: the weighted average of real model weights."""
from __future__ import annotations

import json

import numpy as np
import pytest

from honed.retriever.errors import HonedError
from honed.retriever.finetune.merge import merge_models, merged_model


def test_weight_outside_0_1_is_refused_before_loading_anything():
    with pytest.raises(HonedError, match="--weight must be between 0 and 1"):
        merged_model("no-such-model", "minilm", 1.5)


def test_models_of_different_architectures_are_refused():
    with pytest.raises(HonedError, match="different architectures"):
        merged_model("minilm", "mpnet", 0.5)


def test_merge_writes_a_run_folder_that_records_its_parents(tmp_path):
    from sentence_transformers import SentenceTransformer

    from honed.retriever.models import resolve_model

    out = merge_models("minilm", "minilm", 0.3, tmp_path / "merged")
    m = json.loads((out / "honed.json").read_text())
    assert m["merge"] == {"tuned": "minilm", "base": "minilm", "weight": 0.3, "choice": None} and m["fingerprint"]
    a = SentenceTransformer(str(resolve_model("minilm")), device="cpu")
    b = SentenceTransformer(str(out), device="cpu")
    texts = ["limitation of liability", "either party may terminate on thirty days notice"]
    # a model averaged with itself is itself (up to float rounding of w·x + (1 − w)·x)
    assert np.allclose(a.encode(texts), b.encode(texts), atol=1e-5)
    (out / "notes.txt").write_text("mine")          # a file honed did not write is never replaced
    with pytest.raises(HonedError, match="holds files honed did not write"):
        merge_models("minilm", "minilm", 0.3, out)
    assert (out / "notes.txt").read_text() == "mine"
