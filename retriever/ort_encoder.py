"""The torch-free query path: tokenizers + onnxruntime + numpy.

Loads ``<model>/onnx/`` written by :func:`retriever.export.onnx.export_onnx`
and reproduces the sentence-transformers pipeline outside the graph: the
model folder's tokenizer and max length, its pooling (mean or CLS) and its
normalisation. Importing this module never imports torch.

Example:
    >>> from retriever.ort_encoder import load_ort_encoder
    >>> enc = load_ort_encoder("runs/cuad-tuned", variant="int8")    # doctest: +SKIP
    >>> enc.encode_queries(["cap on liability"]).shape
    (1, 384)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import HonedError
from .models import model_fingerprint


def read_st_config(model_dir: Path) -> dict:
    """Pooling mode, normalisation, max length and prompts as the sentence-transformers folder defines them."""
    modules = json.loads((model_dir / "modules.json").read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pool_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), None)
    pooling = "mean"
    if pool_dir:
        pc = json.loads((model_dir / pool_dir / "config.json").read_text())
        pooling = "cls" if pc.get("pooling_mode_cls_token") else "mean" if pc.get("pooling_mode_mean_tokens") else None
        if pooling is None:
            raise HonedError(f"{model_dir / pool_dir / 'config.json'}: only mean and CLS pooling are exported")
    sbc = model_dir / "sentence_bert_config.json"
    max_len = json.loads(sbc.read_text()).get("max_seq_length", 256) if sbc.exists() else 256
    stc = model_dir / "config_sentence_transformers.json"
    prompts = json.loads(stc.read_text()).get("prompts", {}) if stc.exists() else {}
    return {"pooling": pooling, "normalize": "Normalize" in types, "max_seq_length": int(max_len),
            "prompts": prompts or {}}


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Mean or CLS pooling, then optional L2 normalisation (what the ST modules compute)."""
    if mode == "cls":
        vec = hidden[:, 0]
    else:
        m = mask[..., None].astype(np.float32)
        vec = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    if normalize:
        vec = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
    return vec.astype(np.float32)


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
            enc = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
            hidden = self.session.run(None, feed)[0]
            out[idx] = pool(hidden, mask, self.pooling, self.normalize)
        if not self.normalize:   # indexes are inner product over unit vectors
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


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


def onnx_model_file(model_dir: str | os.PathLike, variant: str = "auto") -> tuple[Path, dict, str]:
    """(path of the chosen .onnx, onnx manifest, resolved variant); auto = int8 only if it passed its gate."""
    root = Path(model_dir)
    man_path = root / "onnx" / "manifest.json"
    if not man_path.exists():
        raise HonedError(f"{root}: no onnx/manifest.json; run `honed export onnx {root}` first")
    man = json.loads(man_path.read_text())
    if variant == "auto":
        variant = "int8" if man.get("files", {}).get("int8") and man.get("int8_passed", False) else "fp32"
    fname = man.get("files", {}).get(variant)
    if not fname:
        raise HonedError(f"{man_path}: no {variant} model exported")
    return root / "onnx" / fname, man, variant


def load_ort_encoder(model_dir: str | os.PathLike, variant: str = "auto", batch_size: int = 32,
                     threads: int | None = None, ref: str | None = None) -> OrtEncoder:
    """Open ``<model_dir>/onnx/``; `variant` is ``int8``, ``fp32`` or ``auto`` (int8 if it passed its parity gate)."""
    import onnxruntime as ort

    root = Path(model_dir)
    onnx_path, man, variant = onnx_model_file(root, variant)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt files
        raise HonedError(f"{onnx_path}: cannot load ONNX model ({str(e).splitlines()[0][:160]})") from None
    cfg = man["st_config"]
    return OrtEncoder(session=sess, tokenizer=load_tokenizer(root, cfg["max_seq_length"]), ref=ref or str(root),
                      path=str(root), fingerprint=model_fingerprint(root), dim=int(man["dim"]),
                      max_seq_length=cfg["max_seq_length"], pooling=cfg["pooling"], normalize=cfg["normalize"],
                      prompts=cfg.get("prompts", {}), batch_size=batch_size, backend=f"onnx-{variant}")
