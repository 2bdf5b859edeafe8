"""Which optional extra of honed provides a module: the one place a missing dependency is turned into advice.

`pip install honed` is the torch-free query path; training, evaluation, the app, the service and Ray
come as extras (pyproject.toml). A command or a public name that needs a module from an extra that is
not installed says which extra to install, in one line.

Example:
    >>> missing_extra_message("torch", "honed finetune")
    "honed finetune needs honed[train] (torch is not installed): pip install 'honed[train]'"
"""
from __future__ import annotations

# top-level module → the extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRA_OF_MODULE = {
    "torch": "train", "sentence_transformers": "train", "transformers": "train", "accelerate": "train",
    "mlflow": "train", "onnx": "train", "bm25s": "hybrid", "Stemmer": "hybrid", "sklearn": "train",
    "scipy": "train", "matplotlib": "train", "datasets": "train",
    "beir": "eval", "pytrec_eval": "eval", "ragas": "eval", "langchain_community": "eval", "instructor": "eval",
    "rapidfuzz": "eval", "rouge_score": "eval", "openai": "eval", "llama_cpp": "eval",
    "streamlit": "app", "sqlalchemy": "serve",
    "fastapi": "serve", "uvicorn": "serve", "starlette": "serve", "prometheus_client": "serve", "httpx": "serve",
    "tritonclient": "triton", "pytriton": "triton",
    "ray": "scale",
}


def missing_extra(module: str | None) -> str | None:
    """The extra that provides `module` (a dotted name is looked up by its top-level package), or None."""
    return EXTRA_OF_MODULE.get((module or "").split(".")[0])


def missing_extra_message(module: str, what: str) -> str:
    extra = missing_extra(module)
    return f"{what} needs honed[{extra}] ({module.split('.')[0]} is not installed): pip install 'honed[{extra}]'"


# what shows an extra is installed: its distinctive modules
_PROBES = {"train": ("torch", "sentence_transformers"), "eval": ("beir", "ragas"), "app": ("streamlit",),
           "serve": ("fastapi", "uvicorn"), "triton": ("tritonclient",), "scale": ("ray",),
           "hybrid": ("bm25s", "Stemmer")}


def require_extra(extra: str, what: str) -> None:
    """Raise a one-line :class:`HonedError` naming `extra` when its modules are not installed.

    Commands call it first, so a slim install says what to install before it reads any input.
    """
    import importlib.util

    from .errors import HonedError

    for module in _PROBES[extra]:
        if importlib.util.find_spec(module) is None:
            raise HonedError(missing_extra_message(module, what))
