"""Embedding models on a real Triton Inference Server: champion and challenger as versions of one model.

``TEXT`` (BYTES, one string per request) → ``EMBEDDING`` (FP32, the model's dimension), unit length and
equal to what the in-process ONNX encoder returns for the same model. :func:`write_repository` writes a
standard Triton model repository: one model, a version folder per model given (version 1 the champion,
2 the challenger, …) each holding a copy of the model and a Python-backend ``model.py``, and a
``config.pbtxt`` with dynamic batching and ``version_policy: { all {} }`` so a client picks a version per
request. :func:`run_triton` starts the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel bundles,
with Triton's own Python backend, on that repository.

Why not pytriton's ``Triton.bind``: its proxy names its sockets after the model, not the version, so a
second version of the same model fails to load ("Address already in use"; nvidia-pytriton 0.7.0).

**Its own environment.** nvidia-pytriton pins ``numpy<2``, and the Python-backend stub it bundles (built
against numpy 1) reads BYTES inputs wrongly under numpy 2 (the length prefix of "hello" comes back as
0x05050505). The rest of honed needs numpy 2 (pandas 3, streamlit), so the server runs from
``.venv-triton`` (``make triton-env``: numpy 1, onnxruntime, tokenizers, nvidia-pytriton and honed without
its dependencies); ``honed serve-triton`` (or this module, run with that interpreter) starts it.

**Two loader quirks, handled here.** The stub embeds ``libpython3.X.so`` from the loader path; when the
running interpreter is another build of the same version (pyenv 3.11.7 against Debian's 3.11.2 here), C
modules and standard library disagree and the model fails to load, so this interpreter's own ``LIBDIR``
goes first on ``LD_LIBRARY_PATH``. The embedded interpreter finds its environment through the ``python3``
first on ``PATH``, so the environment's ``bin/`` goes first there (as pytriton does).

Example:
    $ make triton-env
    $ honed serve-triton runs/demo runs/demo-v2 --http-port 8000          # champion = 1, challenger = 2
    >>> import numpy as np, tritonclient.http as th                                      # doctest: +SKIP
    >>> c = th.InferenceServerClient("127.0.0.1:8000")                                   # doctest: +SKIP
    >>> x = th.InferInput("TEXT", [1, 1], "BYTES")                                       # doctest: +SKIP
    >>> x.set_data_from_numpy(np.array([[b"cap on liability"]], dtype=object))           # doctest: +SKIP
    >>> c.infer("honed-embedder", [x], model_version="2").as_numpy("EMBEDDING").shape    # doctest: +SKIP
    (1, 384)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

MODEL_NAME = "honed-embedder"

# The Python-backend model: runs inside Triton's stub process, one instance per version.
MODEL_PY = '''"""honed embedder for Triton's Python backend (written by honed.app.serve.triton)."""
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "honed-version.json")) as f:
            spec = json.load(f)
        from honed.retriever.encoder import load_encoder

        self.encoder = load_encoder(os.path.join(here, "model") + spec["backend"], spin=False)

    def execute(self, requests):
        # Triton's dynamic batcher hands over every request it grouped: one encoder call for all of them
        texts, sizes = [], []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            sizes.append(len(rows))
            texts += [r[0].decode("utf-8", errors="replace") for r in rows]
        vectors = self.encoder.encode_queries(texts)
        responses, start = [], 0
        for n in sizes:
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", vectors[start:start + n])]))
            start += n
        return responses
'''

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch}
version_policy: {{ all {{ }} }}
input [ {{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "EMBEDDING" data_type: TYPE_FP32 dims: [ {dim} ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{batching}"""


def write_repository(models: list[str], dest: str | os.PathLike, name: str = MODEL_NAME, max_batch: int = 64,
                     queue_delay_us: int = 2000, dynamic_batching: bool = True) -> Path:
    """A Triton model repository at `dest`: `name` with version *n* = the *n*-th model (copied in)."""
    from honed.retriever.encoder import split_backend
    from honed.retriever.errors import HonedError
    from honed.retriever.ort_encoder import onnx_model_file

    dest = Path(dest)
    root = dest / name
    dims = set()
    for version, ref in enumerate(models, 1):
        path, backend = split_backend(ref)
        if not (Path(path) / "onnx" / "manifest.json").is_file() or not backend.startswith(("onnx", "auto")):
            raise HonedError(f"{ref}: Triton serves ONNX exports; run `honed export onnx {path}` first")
        _, man, _ = onnx_model_file(path, backend.removeprefix("onnx-") if backend.startswith("onnx-") else "auto")
        dims.add(int(man["dim"]))
        vdir = root / str(version)
        shutil.copytree(path, vdir / "model", dirs_exist_ok=False)
        (vdir / "model.py").write_text(MODEL_PY)
        (vdir / "honed-version.json").write_text(json.dumps(
            {"source": str(Path(path).resolve()), "backend": "" if backend == "auto" else f"@{backend}"}))
    if len(dims) != 1:
        raise HonedError(f"the versions of one Triton model must share a dimension, got {sorted(dims)}")
    batching = (f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
                if dynamic_batching else "")
    (root / "config.pbtxt").write_text(CONFIG.format(name=name, max_batch=max_batch if dynamic_batching else 1,
                                                     dim=dims.pop(), batching=batching))
    return dest


def triton_command(repository: Path, work: Path, host: str, http_port: int, grpc_port: int,
                   metrics_port: int) -> tuple[list[str], dict]:
    """The ``tritonserver`` command line and environment, from the binary the pytriton wheel bundles."""
    import pytriton
    from pytriton.utils.distribution import get_libs_path, get_stub_path

    bundled = Path(pytriton.__file__).parent / "tritonserver"
    server = work / "tritonserver"
    shutil.copytree(bundled, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    shutil.copy(get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"),
                server / "backends" / "python" / "triton_python_backend_stub")
    env = os.environ.copy()
    libdir = sysconfig.get_config_var("LIBDIR")
    own = [libdir] if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir else []
    env["LD_LIBRARY_PATH"] = ":".join(own + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
                                      + [str(get_libs_path())])
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    cmd = [str(server / "bin" / "tritonserver"), f"--model-repository={repository}",
           f"--backend-directory={server / 'backends'}", f"--cache-directory={server / 'caches'}",
           f"--http-address={host}", f"--http-port={http_port}", f"--grpc-address={host}",
           f"--grpc-port={grpc_port}", f"--metrics-address={host}", f"--metrics-port={metrics_port}",
           "--allow-gpu-metrics=false", "--exit-timeout-secs=5", "--log-info=false"]
    return cmd, env


def run_triton(models: list[str], name: str = MODEL_NAME, host: str = "127.0.0.1", http_port: int = 8000,
               grpc_port: int = 8001, metrics_port: int = 8002, max_batch: int = 64, queue_delay_us: int = 2000,
               dynamic_batching: bool = True) -> int:
    """Write the repository to a temporary folder and run Triton on it until it exits or is signalled."""
    with tempfile.TemporaryDirectory(prefix="honed-triton-") as tmp:
        work = Path(tmp)
        repo = write_repository(models, work / "models", name, max_batch, queue_delay_us, dynamic_batching)
        cmd, env = triton_command(repo, work, host, http_port, grpc_port, metrics_port)
        print(f"triton: {name} versions 1..{len(models)} on http://{host}:{http_port} (grpc {grpc_port}, "
              f"metrics {metrics_port}); dynamic batching {'on' if dynamic_batching else 'off'}", flush=True)
        proc = subprocess.Popen(cmd, env=env)
        for sig in (signal.SIGTERM, signal.SIGINT):   # pass a stop on to Triton, then wait for it
            signal.signal(sig, lambda s, _f: proc.send_signal(s))
        return proc.wait()


def main(argv: list[str] | None = None) -> None:
    from honed.retriever.errors import HonedError

    ap = argparse.ArgumentParser(prog="honed serve-triton", description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model folders with onnx/, optionally @onnx-fp32 etc. (version 1, 2, …)")
    ap.add_argument("--name", default=MODEL_NAME)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=8000)
    ap.add_argument("--grpc-port", type=int, default=8001)
    ap.add_argument("--metrics-port", type=int, default=8002)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--no-dynamic-batching", action="store_true")
    a = ap.parse_args(argv)
    try:
        code = run_triton(a.models, a.name, a.host, a.http_port, a.grpc_port, a.metrics_port, a.max_batch,
                          a.queue_delay_us, not a.no_dynamic_batching)
    except HonedError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
