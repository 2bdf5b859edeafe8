"""Which torch device and precision a model runs on: the user's choice, else ``$HONED_DEVICE``, else cuda > mps > cpu.

Training and teacher training use bf16 autocast on a CUDA GPU that supports it, fp16 on an older one;
on a CPU that computes bf16 natively (AVX512-BF16 or AMX-BF16) bf16 autocast too, which trains the demo's
recipe faster at the same test nDCG@10 (measured in ``benchmarks/results/cpu-bf16.json``); fp32 on other CPUs
(emulated bf16 is slower there) and on Apple's mps (whose autocast support in the Hugging Face trainer is
partial). ``--precision fp32`` keeps full precision anywhere. Training uses the first visible GPU (choose it
with ``CUDA_VISIBLE_DEVICES``); encoding honours ``cuda:N``. The ONNX path always runs on the CPU.

Example:
    >>> resolve_device("cpu")
    'cpu'
    >>> precision("cpu", "fp32")
    'fp32'
"""
from __future__ import annotations

import contextlib
import os
import re

from .errors import HonedError

_FORMS = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(requested: str | None = None) -> str:
    """The torch device for `requested` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; None: $HONED_DEVICE)."""
    want = (requested or os.environ.get("HONED_DEVICE") or "auto").strip().lower()
    where = "--device" if requested else "$HONED_DEVICE"
    if not _FORMS.fullmatch(want):
        raise HonedError(f"{where}: expected auto, cpu, cuda, cuda:N or mps, got {want!r}")
    if want == "cpu":
        return "cpu"   # no torch import needed to know that
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HonedError(f"{where}: {want} asked for, but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}; a CPU-only build?)")
        index = int(want.split(":")[1]) if ":" in want else 0
        if index >= torch.cuda.device_count():
            raise HonedError(f"{where}: {want} asked for, but there are {torch.cuda.device_count()} CUDA GPU(s)")
    if want == "mps" and not has_mps:
        raise HonedError(f"{where}: mps asked for, but this torch build or machine has no Apple GPU")
    return want


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def precision(device: str, setting: str = "auto") -> str:
    """The autocast a run trains in: `setting` when it is not ``auto``; else ``bf16`` on a CUDA GPU with bf16
    support (``fp16`` on an older one) and on a CPU with native bf16 (:func:`cpu_bf16`), ``fp32`` elsewhere."""
    if setting not in PRECISIONS:
        raise HonedError(f"--precision must be one of {', '.join(PRECISIONS)}, got {setting!r}")
    if setting == "fp16" and not device.startswith("cuda"):
        raise HonedError(f"--precision fp16 needs a CUDA GPU (this run is on {device}); use bf16 or fp32")
    if setting != "auto":
        return setting
    if device == "cpu":
        return "bf16" if cpu_bf16() else "fp32"
    if not device.startswith("cuda"):
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def ranking_autocast(device: str, setting: str = "auto"):
    """An autocast context in the run's training precision, for encodes that only rank candidates.

    Mining hard negatives encodes thousands of passages to pick each query's nearest: under bf16 autocast
    on a CPU with native bf16 it ran 1.67x faster (benchmarks/results/mining-precision.json), and the demo
    trained on those negatives scored as it does on fp32-mined ones. Evaluation and indexes stay in fp32, so
    every reported number is fp32's.
    """
    prec = precision(device, setting)
    if prec == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16 if prec == "bf16" else torch.float16)


def trainer_precision_args(device: str, setting: str = "auto") -> dict:
    """The Hugging Face trainer arguments for `device`: where to run and which autocast."""
    prec = precision(device, setting)
    return {"use_cpu": device == "cpu", "bf16": prec == "bf16", "fp16": prec == "fp16"}


_CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_threads() -> int:
    """Threads native code may use: ``$OMP_NUM_THREADS`` when set (the budget torch also honours), else the
    cores this process may run on (its affinity: a container's CPU set, not the host's core count)."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        n = 0
    if n > 0:
        return n
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):   # not Linux
        return os.cpu_count() or 1


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        info = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return set()
    m = re.search(r"flags\s*:\s*(.+)", info)
    return set(m.group(1).split()) if m else set()


def cpu_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16): only there is bf16 autocast faster."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_name() -> str:
    """The CPU as benchmarks and reports record it: model name, cores, and the vector features that change results.

    Native code (llama.cpp, onnxruntime's int8 kernels) takes different paths on AVX2, AVX-512 VNNI
    and AMX machines, so every measurement names which it ran on.
    """
    try:
        info = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        import platform

        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    name = re.search(r"model name\s*:\s*(.+)", info)
    flags = cpu_flags()
    have = [f for f in _CPU_FEATURES if f in flags]
    return f"{name.group(1).strip() if name else 'unknown CPU'}, {os.cpu_count()} cores ({' '.join(have) or 'no AVX2'})"
