"""Device selection: the user's choice, else $HONED_DEVICE, else cuda > mps > cpu; one-line errors otherwise.
(This suite runs on CPU machines: what a GPU changes is measured by benchmarks on the lent GPU, not here.)"""
from __future__ import annotations

import subprocess

import pytest

from conftest import HONED
from honed.retriever.device import cpu_bf16, cpu_threads, precision, resolve_device, trainer_precision_args
from honed.retriever.errors import HonedError


def test_explicit_env_and_auto(monkeypatch):
    import torch

    monkeypatch.delenv("HONED_DEVICE", raising=False)
    assert resolve_device("cpu") == "cpu" and resolve_device("CPU ") == "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    assert resolve_device() == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    monkeypatch.setenv("HONED_DEVICE", "cpu")
    assert resolve_device() == "cpu"
    native = cpu_bf16()    # AVX512-BF16 / AMX-BF16 in /proc/cpuinfo: bf16 autocast is faster there, not elsewhere
    assert precision("cpu") == ("bf16" if native else "fp32")
    assert trainer_precision_args("cpu") == {"use_cpu": True, "bf16": native, "fp16": False}
    assert precision("cpu", "fp32") == "fp32" and precision("cpu", "bf16") == "bf16"
    assert trainer_precision_args("cpu", "fp32") == {"use_cpu": True, "bf16": False, "fp16": False}
    with pytest.raises(HonedError, match="--precision fp16 needs a CUDA GPU"):
        precision("cpu", "fp16")
    with pytest.raises(HonedError, match="--precision must be one of auto, fp32, bf16, fp16"):
        precision("cpu", "half")


def test_cpu_threads_follow_omp_num_threads_else_the_affinity(monkeypatch):
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad, msg", [("tpu", "expected auto, cpu"), ("cuda:x", "expected auto, cpu")])
def test_bad_device_names_are_refused(bad, msg):
    with pytest.raises(HonedError, match=msg):
        resolve_device(bad)


def test_a_missing_gpu_is_one_line_not_a_fallback(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the refusal is for machines without one")
    with pytest.raises(HonedError, match="torch sees no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setenv("HONED_DEVICE", "cuda:0")
    with pytest.raises(HonedError, match=r"\$HONED_DEVICE: cuda:0 asked for"):
        resolve_device()
    p = subprocess.run([HONED, "--device", "cuda", "models", "list"], capture_output=True, text=True)
    assert p.returncode == 2 and "--device: cuda asked for" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_encoder_records_its_device(minilm):
    assert minilm.device == resolve_device() and str(minilm.model.device).startswith(minilm.device.split(":")[0])


def test_gradient_checkpointing_is_on_for_the_cpu_at_long_sequences_by_default_and_checked():
    from honed.retriever.finetune.config import FinetuneConfig, use_checkpointing

    assert FinetuneConfig().gradient_checkpointing == "auto"
    assert use_checkpointing("auto", "cpu") and not use_checkpointing("auto", "cuda")
    assert use_checkpointing("auto", "cpu", 256) and not use_checkpointing("auto", "cpu", 128)
    assert use_checkpointing("on", "cuda") and not use_checkpointing("off", "cpu")
    with pytest.raises(HonedError, match="--gradient-checkpointing must be auto, on or off"):
        use_checkpointing("yes", "cpu")


def test_gradient_cache_is_on_for_the_cpu_mnrl_by_default_and_checked():
    from honed.retriever.finetune.config import FinetuneConfig, use_gradient_cache

    assert FinetuneConfig().gradient_cache == "auto" and FinetuneConfig().loss == "mnrl"
    assert use_gradient_cache("auto", "mnrl", "cpu") and not use_gradient_cache("auto", "mnrl", "cuda")
    # below 256 tokens checkpointing is the faster saver on the CPU (measured), so auto leaves the cache off
    assert not use_gradient_cache("auto", "mnrl", "cpu", 128) and use_gradient_cache("on", "mnrl", "cpu", 128)
    assert not use_gradient_cache("auto", "distill", "cpu") and use_gradient_cache("on", "mnrl", "cuda")
    with pytest.raises(HonedError, match="--gradient-cache on needs --loss mnrl"):
        use_gradient_cache("on", "matryoshka", "cpu")
    with pytest.raises(HonedError, match="--gradient-cache must be auto, on or off"):
        use_gradient_cache("maybe", "mnrl", "cpu")
    p = subprocess.run([HONED, "finetune", "--data", "nowhere", "--gradient-cache", "maybe"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--gradient-cache must be auto, on or off" in p.stderr


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    """The real MiniLM, one MNRL step in training mode (dropout on): bitwise the same with checkpointing."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    from honed.retriever.models import resolve_model

    queries = ["cap on liability", "termination for convenience", "governing law", "assignment consent"]
    passages = ["Liability is capped at twelve months of fees.", "Either party may terminate on 90 days notice.",
                "Delaware law governs this agreement.", "No assignment without prior written consent."]

    def step(checkpointing: bool):
        torch.manual_seed(0)
        model = SentenceTransformer(str(resolve_model("minilm")), device="cpu")
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        loss = losses.MultipleNegativesRankingLoss(model)
        torch.manual_seed(1)
        value = loss([model.preprocess(queries), model.preprocess(passages)], None)
        value.backward()
        return value.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (l0, g0), (l1, g1) = step(False), step(True)
    assert l0 == l1 and g0.shape == g1.shape and torch.equal(g0, g1)


def test_gradient_cache_gives_the_mnrl_loss_and_gradients():
    """The real MiniLM, one step: MNRL computed in chunks of 2 sequences (CachedMNRL, GradCache) equals MNRL.

    Dropout is off here: the chunked forward draws its dropout masks in a different order, so in
    training mode the two are the same objective with different (equally random) masks.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    from honed.retriever.models import resolve_model

    queries = ["cap on liability", "termination for convenience", "governing law", "assignment consent"]
    passages = ["Liability is capped at twelve months of fees.", "Either party may terminate on 90 days notice.",
                "Delaware law governs this agreement.", "No assignment without prior written consent."]

    def step(cached: bool):
        model = SentenceTransformer(str(resolve_model("minilm")), device="cpu")
        model.eval()
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=2) if cached \
            else losses.MultipleNegativesRankingLoss(model)
        value = loss([model.preprocess(queries), model.preprocess(passages)], None)
        value.backward()
        return value.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (l0, g0), (l1, g1) = step(False), step(True)
    assert abs(l0 - l1) < 1e-5 and g0.shape == g1.shape
    assert torch.allclose(g0, g1, rtol=1e-3, atol=1e-6), float((g0 - g1).abs().max())
