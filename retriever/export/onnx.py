"""Export a sentence-transformers folder to ONNX (fp32 + dynamic int8) with parity gates.

sentence-transformers 6's own ``backend="onnx"`` needs optimum-onnx, which
cannot be installed beside transformers 5, so the transformer is exported
here with ``torch.onnx.export``; pooling and normalisation stay outside the
graph (see :mod:`retriever.ort_encoder`), exactly as the folder defines them.

Example:
    >>> from honed.retriever.export.onnx import export_onnx
    >>> man = export_onnx("runs/cuad-tuned", data="datasets/cuad-clauses")   # doctest: +SKIP
    >>> man["parity"]["int8"]["cos_min"] > 0.95
    True
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..errors import HonedError
from ..models import model_fingerprint, resolve_model, sha256_file
from ..routing import BASE_DIR, ROUTER_DIR

OPSET = 17
SAMPLE_TEXTS = [
    "Neither party may assign this Agreement without the prior written consent of the other party.",
    "In no event shall either party's total liability exceed the fees paid in the twelve months before the claim.",
    "Vitamin D supplementation did not reduce the risk of fractures in older adults.",
    "The licensee may not sublicense the licensed technology without the licensor's consent.",
    "What is the difference between authentication and authorization?",
]


def _export_fp32(model_dir: Path, dest: Path) -> None:
    from sentence_transformers import SentenceTransformer

    # Eager attention: the SDPA graph hides the MatMul/Softmax pattern the ORT fusion below looks for.
    st = SentenceTransformer(str(model_dir), device="cpu", trust_remote_code=False,
                             model_kwargs={"attn_implementation": "eager"})
    torch_export(st[0].auto_model, st.tokenizer, dest, "last_hidden_state")


def torch_export(hf, tok, dest: Path, output: str) -> None:
    """``torch.onnx.export`` of a Hugging Face model's `output` (``last_hidden_state`` | ``logits``),
    batch and sequence length dynamic; the token-type input only where the tokenizer emits one."""
    import torch

    uses_tt = "token_type_ids" in tok("x", return_tensors="pt")

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            return getattr(self.m(**kw), output)

    # eval(): otherwise dropout is baked into the graph and outputs drift by ~1.8
    wrapper = Wrapper(hf).eval()
    sample = tok(["a short text", "a somewhat longer second text for shapes"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if uses_tt else [])
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(wrapper, args, str(dest), input_names=names, output_names=[output],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def _fuse(src: Path, dest: Path, model_dir: Path) -> dict:
    """Fuse attention, embedding LayerNorm, bias+GELU and skip+LayerNorm with ORT's transformer optimizer.

    A plain torch.onnx.export graph runs attention as ~15 small ops per layer;
    dynamic int8 only speeds up MatMuls, so without fusion the fp32 glue
    dominates at 256 tokens. Returns the fused-operator counts (empty dict and
    the unfused graph kept when the architecture is not BERT-like).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "bert":   # the only architecture whose fusion is checked here
        shutil.copyfile(src, dest)
        return {}
    opts = FusionOptions("bert")
    opts.use_raw_attention_mask(True)   # the graph takes the 0/1 mask as given, like the tokenizer emits it
    model = optimize_model(str(src), model_type="bert", num_heads=cfg["num_attention_heads"],
                           hidden_size=cfg["hidden_size"], opt_level=1, optimization_options=opts)
    model.save_model_to_file(str(dest))
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def _quantize(src: Path, dest: Path, target: str) -> None:
    """Dynamic int8 with the recipe for `target` (see :data:`retriever.ort_encoder.INT8_TARGETS`).

    Per-channel scales in both: cos ≈ 0.98 vs fp32 where per-tensor signed
    int8 gave ≈ 0.90. DefaultTensorType: shape inference cannot type the
    outputs of ORT's contrib (fused) ops.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type, reduce_range = {"avx2": (QuantType.QUInt8, True), "avx512-vnni": (QuantType.QInt8, False)}[target]
    quantize_dynamic(str(src), str(dest), weight_type=weight_type, per_channel=True, reduce_range=reduce_range,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})


def int8_targets(target_cpu: str) -> list[str]:
    """The int8 recipes to export for ``--target-cpu`` (all | auto | avx2 | avx512-vnni)."""
    from ..ort_encoder import INT8_TARGETS, cpu_int8_target

    if target_cpu == "all":
        return list(INT8_TARGETS)
    if target_cpu == "auto":
        return [cpu_int8_target()]
    if target_cpu in INT8_TARGETS:
        return [target_cpu]
    raise HonedError(f"--target-cpu must be one of all, auto, {', '.join(INT8_TARGETS)}; got {target_cpu!r}")


def _cosines(a: np.ndarray, b: np.ndarray) -> dict:
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"cos_mean": round(float(c.mean()), 5), "cos_min": round(float(c.min()), 5), "n": len(c)}


def _parity_texts(data: str | None, n: int, seed: int) -> list[str]:
    if not data:
        return SAMPLE_TEXTS
    from ..data.beir import doc_text, load_beir

    ds = load_beir(data, "test")
    texts = [doc_text(d) for d in ds.corpus.values()] + list(ds.queries.values())
    random.Random(seed).shuffle(texts)
    return texts[:n]


def ndcg_at_10(encoder, data: str, max_docs: int = 2000, seed: int = 0) -> float:
    """nDCG@10 of `encoder` on the test split (positives + random docs up to `max_docs`)."""
    from beir.retrieval.evaluation import EvaluateRetrieval

    from ..data.beir import doc_text, load_beir

    ds = load_beir(data, "test")
    pos = sorted({d for r in ds.qrels.values() for d in r})
    rest = sorted(d for d in ds.corpus if d not in set(pos))
    ids = pos + random.Random(seed).sample(rest, min(len(rest), max(0, max_docs - len(pos))))
    D = encoder.encode_documents([doc_text(ds.corpus[d]) for d in ids])
    qids = list(ds.queries)
    Q = encoder.encode_queries([ds.queries[q] for q in qids])
    S = Q @ D.T
    run = {}
    for i, q in enumerate(qids):
        top = np.argsort(-S[i])[:100]
        run[q] = {ids[j]: float(S[i, j]) for j in top}
    ndcg = EvaluateRetrieval.evaluate(ds.qrels, run, [10], ignore_identical_ids=False)[0]
    return float(ndcg["NDCG@10"])


def write_variants(root: Path, export_raw, targets: list[str], manifest: dict) -> dict:
    """Export with ``export_raw(dest)``, fuse, quantise one int8 model per CPU target, and install them in
    ``root/onnx/`` with `manifest` completed (files, sha256, fused ops, int8 gates pending); return it.

    Built in a temp folder beside ``onnx/``, then moved in file by file (each atomic), so the ORT
    loaders can read it for the parity checks that follow (:func:`gate_int8`).
    """
    from ..ort_encoder import cpu_int8_target

    onnx_dir = root / "onnx"
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=root) as tmp:
        tmp = Path(tmp)
        export_raw(tmp / "raw.onnx")
        fused = _fuse(tmp / "raw.onnx", tmp / "model.onnx", root)
        files = {"fp32": "model.onnx"}
        for target in tqdm(targets, desc="int8 quantisation", disable=not targets):
            fname = f"model_int8_{target.replace('-', '_')}.onnx"
            _quantize(tmp / "model.onnx", tmp / fname, target)
            files[f"int8-{target}"] = fname
        man = {**manifest, "opset": OPSET, "files": files,
               "sha256": {k: sha256_file(tmp / f) for k, f in files.items()},
               "source_fingerprint": model_fingerprint(root), "fused_ops": fused,
               "int8": {t: {"passed": False} for t in targets}, "exported_on_cpu": cpu_int8_target(),
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        onnx_dir.mkdir(exist_ok=True)
        for old in onnx_dir.glob("model_int8*.onnx"):   # an int8 model of an earlier export is stale now
            if old.name not in files.values():
                old.unlink()
        for f in files.values():
            os.replace(tmp / f, onnx_dir / f)
        atomic_write_text(onnx_dir / "manifest.json", json.dumps(man, indent=2) + "\n")
    return man


def gateable(targets: list[str]) -> list[str]:
    """The int8 targets this CPU can judge: the VNNI recipe saturates where there is no VNNI."""
    from ..ort_encoder import cpu_int8_target

    return [t for t in targets if t == "avx2" or cpu_int8_target() == "avx512-vnni"]


def gate_int8(root: Path, man: dict, parity: dict, data: str | None, max_ndcg_drop: float, what: str) -> dict:
    """Record each int8 model's gate (nDCG@10 drop vs ``parity["torch"]``) in `man` and write it; raise,
    naming every failure, when one loses more than `max_ndcg_drop` (kept, marked failed: never used by default)."""
    from ..ort_encoder import cpu_int8_target

    man["parity"], man["parity_data"], man["max_ndcg_drop"] = parity, data, max_ndcg_drop
    failures = []
    for t, gate in man["int8"].items():
        if t not in gateable([t]):
            gate["reason"] = f"not gated: this CPU ({cpu_int8_target()}) has no VNNI to run it faithfully"
        elif "ndcg@10" not in parity.get("torch", {}):
            gate["reason"] = f"not gated: no --data for the {what} nDCG@10 parity check"
        else:
            drop = parity["torch"]["ndcg@10"] - parity[f"int8-{t}"]["ndcg@10"]
            gate.update(ndcg_drop=round(drop, 5), passed=drop <= max_ndcg_drop)
            if not gate["passed"]:
                failures.append(f"int8 ({t}) model loses {drop:.4f} {what} nDCG@10 on {data} "
                                f"(tolerance {max_ndcg_drop})")
    atomic_write_text(root / "onnx" / "manifest.json", json.dumps(man, indent=2) + "\n")
    if failures:
        raise HonedError("; ".join(failures) + f"; kept in {root / 'onnx'} but marked failed, so it is never "
                         "used by default")
    return man


def export_onnx(model: str | os.PathLike, quantize: bool = True, data: str | None = None,
                max_ndcg_drop: float = 0.005, n_parity: int = 200, max_docs: int = 2000,
                seed: int = 0, target_cpu: str = "all") -> dict:
    """Write ``<model>/onnx/`` (fp32 + one int8 model per CPU target, manifest.json); return the manifest.

    Parity: cosine vs the torch model on a fixed text sample; with `data`, also
    nDCG@10 on its test split for torch, ORT fp32 and each int8 model. An int8
    model that loses more than `max_ndcg_drop` is kept but marked failed (never
    used by default), and this function raises so the export fails loudly. The
    avx512-vnni model can only be gated on a CPU with VNNI (elsewhere onnxruntime
    runs it through kernels that saturate): on other CPUs it is marked ungated.
    """
    from ..encoder import load_encoder
    from ..ort_encoder import load_ort_encoder, read_st_config

    targets = int8_targets(target_cpu) if quantize else []
    if (Path(model) / "manifest.json").exists() and (Path(model) / "model" / "modules.json").exists():
        model = Path(model) / "model"    # an index artifact: export the model inside it
    root = resolve_model(model, fetch=True)
    if not isinstance(root, Path):
        raise HonedError(f"{model}: export needs a local model folder")
    if not (root / "modules.json").exists():
        raise HonedError(f"{root}: not a sentence-transformers folder (no modules.json)")
    st_cfg = read_st_config(root)
    torch_enc = load_encoder(root, backend="torch", routing=False)   # parity of this model's own vectors
    man = write_variants(root, lambda dest: _export_fp32(root, dest), targets,
                         {"format": "honed.onnx/2", "dim": torch_enc.dim, "st_config": st_cfg})

    texts = _parity_texts(data, n_parity, seed)
    ref = torch_enc.encode_documents(texts)
    encoders = {"fp32": load_ort_encoder(root, "fp32")}
    encoders.update({f"int8-{t}": load_ort_encoder(root, f"int8-{t}") for t in gateable(targets)})
    parity = {}
    for name, enc in tqdm(encoders.items(), desc="parity (cosine)"):
        parity[name] = _cosines(ref, enc.encode_documents(texts))
    if data:
        parity["torch"] = {"ndcg@10": round(ndcg_at_10(torch_enc, data, max_docs, seed), 5)}
        for name, enc in tqdm(encoders.items(), desc="parity (nDCG@10)"):
            parity[name]["ndcg@10"] = round(ndcg_at_10(enc, data, max_docs, seed), 5)
    base = root / ROUTER_DIR / BASE_DIR
    if base.is_dir() and not (base / "onnx" / "manifest.json").exists():
        # the domain router's base model encodes inserted passages: torch-free too, in fp32 (its vectors sit
        # beside the tuned model's in one index; an int8 model's own error would add to the routing's)
        export_onnx(base, quantize=False)
    return gate_int8(root, man, parity, data, max_ndcg_drop, "retrieval")
