"""The torch-free query path: tokenizers + onnxruntime + numpy.

Loads ``<model>/onnx/`` written by :func:`retriever.export.onnx.export_onnx`
and reproduces the sentence-transformers pipeline outside the graph: the
model folder's tokenizer and max length, its pooling and its normalisation.
Importing this module never imports torch.

Example:
    >>> from honed.retriever.ort_encoder import load_ort_encoder
    >>> enc = load_ort_encoder("runs/cuad-tuned", variant="int8")    # doctest: +SKIP
    >>> enc.encode_queries(["cap on liability"]).shape
    (1, 384)
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import read_json
from .device import cpu_threads
from .errors import HonedError
from .models import model_fingerprint, sha256_file

# Pooling modes this module computes in numpy, exactly as sentence-transformers' Pooling does.
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "lasttoken")
# sentence-transformers ≤ 5 wrote one boolean per mode; 6.x writes {"pooling_mode": "mean"}.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken",
}
# The int8 recipes, by the CPU instructions onnxruntime's integer kernels use:
# - avx2: without VNNI, u8×s8 products go through vpmaddubsw, whose int16 sums
#   saturate, so weights are quantised to 7 bits (reduce_range) as unsigned int8;
# - avx512-vnni: vpdpbusd accumulates in int32 and cannot saturate, so signed
#   8-bit weights keep their full range (faster and closer to fp32 there).
INT8_TARGETS = ("avx2", "avx512-vnni")


def pooling_mode(config: dict, where: Path) -> str:
    """The one pooling mode of a Pooling ``config.json``, in either the 5.x or the 6.x format."""
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for k, m in _LEGACY_POOLING_KEYS.items() if config.get(k)]
        mode = modes[0] if len(modes) == 1 else modes or "mean"
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if not isinstance(mode, str):
        raise HonedError(f"{where}: pooling {' + '.join(map(str, mode))} (concatenated modes) cannot be exported; "
                         f"supported: {', '.join(POOLING_MODES)}")
    if mode not in POOLING_MODES:
        raise HonedError(f"{where}: pooling mode {mode!r} cannot be exported; supported: {', '.join(POOLING_MODES)}")
    return mode


def read_st_config(model_dir: Path) -> dict:
    """Pooling mode, normalisation, max length and prompts as the sentence-transformers folder defines them.

    Read from the folder's JSON, not through sentence-transformers, so the query
    path stays free of torch; both the 5.x and the 6.x file formats are read.
    """
    model_dir = Path(model_dir)
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pool_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), None)
    pooling, include_prompt = "mean", True
    if pool_dir:
        where = model_dir / pool_dir / "config.json"
        pc = read_json(where)
        pooling = pooling_mode(pc, where)
        include_prompt = bool(pc.get("include_prompt", True))
    stc = model_dir / "config_sentence_transformers.json"
    prompts = (read_json(stc).get("prompts") if stc.exists() else None) or {}
    if not include_prompt and any(prompts.values()):
        raise HonedError(f"{model_dir / pool_dir / 'config.json'}: pooling that excludes the prompt "
                         "(include_prompt false) with prompts is not exported")
    return {"pooling": pooling, "normalize": "Normalize" in types, "max_seq_length": max_seq_length(model_dir),
            "prompts": prompts}


def max_seq_length(model_dir: Path) -> int:
    """The token limit sentence-transformers truncates at, from either file format.

    5.x writes ``max_seq_length`` in ``sentence_bert_config.json``; 6.x keeps it
    as the tokenizer's ``model_max_length``. Either is capped at the model's
    ``max_position_embeddings``, as sentence-transformers caps it.
    """
    value = None
    sbc = model_dir / "sentence_bert_config.json"
    if sbc.exists():
        value = read_json(sbc).get("max_seq_length")
    tc = model_dir / "tokenizer_config.json"
    if value is None and tc.exists():
        value = read_json(tc).get("model_max_length")
    cfg = model_dir / "config.json"
    cap = read_json(cfg).get("max_position_embeddings") if cfg.exists() else None
    if not isinstance(value, int) or value <= 0 or value > 1_000_000:   # tokenizers use 1e30 for "no limit"
        value = cap or 512
    return int(min(value, cap) if isinstance(cap, int) else value)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Pool token vectors into one per text (what the sentence-transformers Pooling module computes)."""
    m = mask[..., None].astype(np.float32)
    if mode == "cls":
        vec = hidden[np.arange(len(hidden)), mask.argmax(1)]    # first unmasked token, as ST does
    elif mode == "max":
        vec = np.where(m > 0, hidden, -np.inf).max(1)
    elif mode == "lasttoken":
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
        vec = hidden[np.arange(len(hidden)), last] * mask[np.arange(len(hidden)), last][:, None]
    else:
        total = (hidden * m).sum(1)
        n = np.clip(m.sum(1), 1e-9, None)
        vec = total / (n if mode == "mean" else np.sqrt(n))
    if normalize:
        vec = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
    return vec.astype(np.float32)


@lru_cache(maxsize=1)
def cpu_int8_target() -> str:
    """The int8 recipe for this CPU: ``avx512-vnni`` when it has VNNI (AVX-512 or AVX), else ``avx2``.

    Non-x86 CPUs get ``avx2``, the recipe that cannot saturate on any kernel.
    """
    flags: set[str] = set()
    with contextlib.suppress(OSError):   # no /proc (macOS, Windows): the safe recipe
        line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
        flags = set(line.partition(":")[2].split())
    return "avx512-vnni" if flags & {"avx512_vnni", "avx_vnni"} else "avx2"


@dataclass
class OrtEncoder:
    """Same interface as :class:`retriever.encoder.Encoder`, on onnxruntime."""

    session: object
    tokenizer: object
    ref: str
    path: str
    fingerprint: str
    dim: int
    max_seq_length: int
    pooling: str
    normalize: bool
    prompts: dict
    batch_size: int = 32
    backend: str = "onnx"

    def encode_queries(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self._encode([self.prompts.get("query", "") + t for t in texts], show_progress)

    def encode_documents(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        p = self.prompts.get("document", self.prompts.get("passage", ""))
        return self._encode([p + t for t in texts], show_progress)

    def _encode(self, texts: list[str], show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sort by length so each batch pads little (sentence-transformers does the same)
        order = np.argsort([-len(t) for t in texts])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        names = {i.name for i in self.session.get_inputs()}
        starts = range(0, len(texts), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches (onnx)")
        for s in starts:
            idx = order[s:s + self.batch_size]
            feed = token_feed(self.tokenizer, [texts[i] for i in idx], names)
            hidden = self.session.run(None, feed)[0]
            out[idx] = pool(hidden, feed["attention_mask"], self.pooling, self.normalize)
        if not self.normalize:   # indexes are inner product over unit vectors
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


def token_feed(tokenizer, texts: list, names: set[str]) -> dict[str, np.ndarray]:
    """The graph's inputs for `texts` (strings, or (query, passage) pairs), padded to the batch's longest."""
    enc = tokenizer.encode_batch(texts)
    feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
    return feed


def ort_session(onnx_path: Path, threads: int | None = None, spin: bool = True):
    """A CPU onnxruntime session on $OMP_NUM_THREADS or this process's CPUs; a corrupt file is one line."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not spin:   # see load_encoder: idle threads yield the CPU instead of busy-waiting
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = threads or cpu_threads()
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt files
        raise HonedError(f"{onnx_path}: cannot load ONNX model ({str(e).splitlines()[0][:160]})") from None


def load_tokenizer(model_dir: Path, max_len: int):
    from tokenizers import Tokenizer

    tj = model_dir / "tokenizer.json"
    if not tj.exists():
        raise HonedError(f"{model_dir}: no tokenizer.json (the ONNX path needs a fast tokenizer file)")
    tok = Tokenizer.from_file(str(tj))
    tok.enable_truncation(max_length=max_len)
    pad_id = tok.token_to_id("[PAD]") if tok.token_to_id("[PAD]") is not None else 0
    tok.enable_padding(pad_id=pad_id, pad_token="[PAD]" if tok.token_to_id("[PAD]") is not None else "<pad>")
    return tok


def _int8_choice(files: dict, man: dict, want_passed: bool) -> str | None:
    """The int8 variant to run on this CPU, or None: this CPU's recipe first, then the safe avx2 one."""
    if "int8" in files:      # format 1: one int8 recipe (avx2), one gate
        return "int8" if not want_passed or man.get("int8_passed") else None
    order = [cpu_int8_target()] + (["avx2"] if cpu_int8_target() != "avx2" else [])
    for target in order:    # the VNNI recipe is never run on a CPU without VNNI: its products would saturate
        if f"int8-{target}" in files and (not want_passed or man.get("int8", {}).get(target, {}).get("passed")):
            return f"int8-{target}"
    return None


def onnx_model_file(model_dir: str | os.PathLike, variant: str = "auto",
                    formats: tuple[str, ...] = ("honed.onnx/1", "honed.onnx/2")) -> tuple[Path, dict, str]:
    """(path of the chosen .onnx, onnx manifest, resolved variant).

    `variant`: ``fp32``; ``int8`` (the int8 model for this CPU); ``int8-avx2`` or
    ``int8-avx512-vnni`` (that one); ``auto``: the int8 model for this CPU if it
    passed its parity gate, else fp32.
    """
    root = Path(model_dir)
    man_path = root / "onnx" / "manifest.json"
    if not man_path.exists():
        raise HonedError(f"{root}: no onnx/manifest.json; run `honed export onnx {root}` first")
    man = read_json(man_path)
    if man.get("format") not in formats:
        raise HonedError(f"{man_path}: ONNX export format {man.get('format')!r} is not supported "
                         f"(this honed reads {', '.join(formats)} here); re-export with `honed export onnx`")
    files = man.get("files", {})
    if variant in ("auto", "int8"):
        choice = _int8_choice(files, man, want_passed=variant == "auto")
        if choice is None and variant == "int8":
            raise HonedError(f"{man_path}: no int8 model for this CPU ({cpu_int8_target()}); "
                             f"exported: {', '.join(sorted(files))}")
        variant = choice or "fp32"
    fname = files.get(variant)
    if not fname:
        raise HonedError(f"{man_path}: no {variant} model exported (have: {', '.join(sorted(files))})")
    path = root / "onnx" / fname
    want = man.get("sha256", {}).get(variant)
    if want and path.exists() and sha256_file(path) != want:
        raise HonedError(f"{path}: contents do not match onnx/manifest.json (sha256); re-export the model")
    return path, man, variant


def load_ort_encoder(model_dir: str | os.PathLike, variant: str = "auto", batch_size: int = 32,
                     threads: int | None = None, ref: str | None = None, spin: bool = True) -> OrtEncoder:
    """Open ``<model_dir>/onnx/``; see :func:`onnx_model_file` for `variant`."""
    root = Path(model_dir)
    onnx_path, man, variant = onnx_model_file(root, variant)
    sess = ort_session(onnx_path, threads, spin)
    cfg = man["st_config"]
    return OrtEncoder(session=sess, tokenizer=load_tokenizer(root, cfg["max_seq_length"]), ref=ref or str(root),
                      path=str(root), fingerprint=model_fingerprint(root), dim=int(man["dim"]),
                      max_seq_length=cfg["max_seq_length"], pooling=cfg["pooling"], normalize=cfg["normalize"],
                      prompts=cfg.get("prompts", {}), batch_size=batch_size, backend=f"onnx-{variant}")
