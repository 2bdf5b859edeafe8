"""Find the interpreter of the Triton environment (see :mod:`honed.app.serve.triton` for why it is separate)."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from honed.retriever.errors import HonedError


def triton_python(explicit: str | None = None) -> str:
    """`explicit`, else ``$HONED_TRITON_PYTHON``, else this interpreter if it has pytriton, else ./.venv-triton."""
    for candidate, where in ((explicit, "--python"), (os.environ.get("HONED_TRITON_PYTHON"), "$HONED_TRITON_PYTHON")):
        if candidate:
            if not os.access(candidate, os.X_OK):
                raise HonedError(f"{where}: {candidate} is not an executable Python interpreter")
            return candidate
    if importlib.util.find_spec("pytriton") is not None:
        return sys.executable
    local = Path(".venv-triton") / "bin" / "python"
    if local.exists():
        return str(local.absolute())   # not resolve(): the symlink is what makes it the venv's Python
    raise HonedError("no Triton environment: run `make triton-env` (creates .venv-triton), or point "
                     "$HONED_TRITON_PYTHON at a Python with nvidia-pytriton, numpy<2 and honed installed")


def wait_ready(url: str, proc=None, timeout: float = 120.0, interval: float = 0.1) -> float:
    """Poll `url` (a readiness endpoint) until it answers 200; seconds waited. Raises RuntimeError when
    `proc` (the server's Popen) exits first or `timeout` passes: for the tests and benchmarks that start one."""
    import time

    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass   # not listening yet
        time.sleep(interval)
    raise RuntimeError(f"{url} not ready after {timeout:g} s")
