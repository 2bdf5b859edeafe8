"""A Triton Inference Server model repository for an exported ONNX model.

Layout::

    model_repository/<name>/config.pbtxt      ONNX Runtime backend, dynamic batching
    model_repository/<name>/1/model.onnx      the (int8 or fp32) transformer graph
    model_repository/<name>/honed.json        pooling/normalisation/tokenizer to apply client-side

The config is parsed back with Triton's own ``ModelConfig`` protobuf (shipped
by ``tritonclient``), so a typo is caught here, not by the server at startup.

Example:
    >>> from honed.retriever.export.triton import export_triton
    >>> export_triton("runs/cuad-tuned", "model_repository")    # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import HonedError


def config_pbtxt(name: str, input_names: list[str], hidden: int, max_batch_size: int = 64) -> str:
    inputs = "\n".join(
        f'  {{ name: "{n}" data_type: TYPE_INT64 dims: [ -1 ] }}' + ("," if i < len(input_names) - 1 else "")
        for i, n in enumerate(input_names))
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
{inputs}
]
output [
  {{ name: "last_hidden_state" data_type: TYPE_FP32 dims: [ -1, {hidden} ] }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 2000
}}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


def validate_config(text: str):
    """Parse config.pbtxt with Triton's ModelConfig schema; raise HonedError naming the problem."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    cfg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise HonedError(f"config.pbtxt: {e}") from None
    if not cfg.name or cfg.backend != "onnxruntime" or not cfg.input or not cfg.output:
        raise HonedError("config.pbtxt: needs name, backend onnxruntime, inputs and outputs")
    return cfg


def export_triton(model: str | os.PathLike, out: str | os.PathLike, name: str | None = None,
                  variant: str = "auto", max_batch_size: int = 64, force: bool = False) -> Path:
    """Write (atomically) ``out/<name>/`` for Triton and return that folder."""
    import onnx

    from ..ort_encoder import onnx_model_file

    root = Path(model)
    onnx_path, man, variant = onnx_model_file(root, variant)
    graph = onnx.load(str(onnx_path), load_external_data=False)
    inputs = [i.name for i in graph.graph.input]
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", root.resolve().name)
    text = config_pbtxt(name, inputs, int(man["dim"]), max_batch_size)
    validate_config(text)
    dest = Path(out) / name
    with atomic_dir(dest, kind="triton", force=force) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(onnx_path, tmp / "1" / "model.onnx")
        (tmp / "config.pbtxt").write_text(text)
        shutil.copyfile(root / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "honed.json").write_text(json.dumps({
            "variant": variant, "source": str(root.resolve()), "st_config": man["st_config"],
            "client_side": "tokenize with tokenizer.json; pool last_hidden_state "
                           f"({man['st_config']['pooling']}) over attention_mask; "
                           f"{'L2-normalise' if man['st_config']['normalize'] else 'no normalisation'}",
        }, indent=2) + "\n")
    return dest
