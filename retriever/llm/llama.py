"""The packaged local instruct LLM (Qwen2.5-Coder-0.5B GGUF) through llama.cpp.

Used to write synthetic training queries, to generate answers and to judge them.
The model itself runs in a child process (:mod:`.llm_process`): this module is
what that child runs (:func:`load_llama`), plus what anyone may ask of the build
(:func:`llama_build_info`). Callers go through :func:`.generator.chat_json` and
:class:`.generator.LocalLLM`, so a native crash ends one call, not the caller.

Example:
    >>> from honed.retriever.llm.llama import llama_build_info
    >>> llama_build_info()["system_info"]                                  # doctest: +SKIP
    'CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | ...'
"""
from __future__ import annotations

import ctypes
import json
from typing import Any

import numpy as np

from ..device import cpu_threads
from ..errors import HonedError
from ..models import resolve_model

_LLAMAS: dict[tuple, Any] = {}


def load_llama(model: str = "qwen", n_ctx: int = 4096, threads: int | None = None, slot: str = "",
               extra_buffers: bool | None = None):
    """Load (once per process and `slot`) a GGUF model with llama.cpp.

    A llama.cpp context re-reads only the part of a prompt that differs from its previous
    one. Callers that alternate between prompt kinds (a judge's statement, verdict and
    relevancy prompts, each opening with the same long instructions and examples) give
    each kind its own `slot`, so each context keeps its kind's prefix evaluated. A slot is a
    whole llama.cpp instance: ~0.6 GB for the packaged 0.5B model (llama.cpp repacks the
    weights for this CPU, so they are not shared between instances).

    `extra_buffers` (None: automatic) says whether llama.cpp may place weights in its "extra
    buffer types" (weight repacking). Automatic keeps them except where the build has
    llama.cpp's AMX kernels compiled in: a native build on an Intel Xeon with AMX loads Qwen
    into the AMX buffer and then segfaults in decode on any prompt of 8+ tokens, and the same
    build answers correctly with extra buffers off. The Makefile builds llama.cpp without AMX
    (GGML_NATIVE=OFF), so this guard is for builds made elsewhere.
    """
    path = resolve_model(model)
    lib = llama_cpp_module()
    if extra_buffers is None:
        extra_buffers = not build_has_amx()
    key = (str(path), n_ctx, slot, extra_buffers)
    if key not in _LLAMAS:
        kw = dict(model_path=str(path), n_ctx=n_ctx, n_threads=threads or cpu_threads(), verbose=False, seed=0)
        llama = lib.Llama(**kw) if extra_buffers else _llama_without_extra_buffers(lib, **kw)
        _use_greedy_grammar_sampler(llama)
        _LLAMAS[key] = llama
    return _LLAMAS[key]


def _llama_without_extra_buffers(lib, **kw):
    """`Llama(**kw)` with ``llama_model_params.use_extra_bufts = False``.

    llama-cpp-python's constructor fills its model parameters from
    ``llama_model_default_params()`` and offers no argument for this field, so the default
    is wrapped for the duration of the constructor (the child process is single-threaded).
    """
    default = lib.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    lib.llama_cpp.llama_model_default_params = params
    try:
        return lib.Llama(**kw)
    finally:
        lib.llama_cpp.llama_model_default_params = default


def system_info() -> str:
    """What llama.cpp reports of this build: the CPU features it was compiled for (``AVX2 = 1 | …``)."""
    return llama_cpp_module().llama_print_system_info().decode("utf-8", "replace").strip()


def build_has_amx() -> bool:
    return "AMX_INT8 = 1" in system_info()


def llama_build_info() -> dict:
    """The llama.cpp build and the CPU it runs on, for reports and `honed models list`."""
    from importlib.metadata import version

    from ..device import cpu_name

    info = system_info()
    return {"llama_cpp_python": version("llama-cpp-python"), "cpu": cpu_name(), "system_info": info,
            "amx_compiled": "AMX_INT8 = 1" in info, "extra_buffers": "AMX_INT8 = 1" not in info}


def llama_cpp_module():
    """The llama_cpp module, or a one-line error saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise HonedError("the local LLM needs llama-cpp-python: run `pip install llama-cpp-python` "
                         "(builds from source in ~15 min on 2 cores)") from None
    return llama_cpp


class GreedyGrammarSampler:
    """Greedy decoding under a llama.cpp grammar that checks the argmax token before the vocabulary.

    llama-cpp-python runs the grammar over every one of Qwen's 151,936 tokens at each step,
    which halved decoding here (24 → 13 tokens/s with a JSON schema). llama.cpp's own
    ``common_sampler`` first checks only the token it would pick and constrains the whole
    vocabulary only when that token is rejected; the Python binding does not expose that path,
    so this is it, for greedy decoding. Same tokens as the full-vocabulary path (it picks the
    argmax of the grammar-masked logits either way).
    """

    def __init__(self, llama, grammar):
        from llama_cpp._internals import LlamaTokenDataArray

        self._lib = llama_cpp_module()
        self._n_vocab = llama.n_vocab()
        self._smpl = self._lib.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
        if not self._smpl:
            raise HonedError("llama.cpp could not parse the JSON-schema grammar")
        self._one = LlamaTokenDataArray(n_vocab=1)
        self._full = LlamaTokenDataArray(n_vocab=self._n_vocab)

    def _allowed(self, token: int) -> bool:
        one = self._one
        one.candidates_data.id[0], one.candidates_data.logit[0], one.candidates_data.p[0] = token, 1.0, 0.0
        one.candidates.size, one.candidates.selected, one.candidates.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self._smpl, ctypes.byref(one.candidates))
        return bool(np.isfinite(one.candidates_data.logit[0]))

    def sample(self, ctx, idx: int) -> int:
        logits = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        token = int(np.argmax(logits))
        if not self._allowed(token):
            self._full.copy_logits(logits)
            self._lib.llama_sampler_apply(self._smpl, ctypes.byref(self._full.candidates))
            token = int(self._full.candidates_data.id[int(np.argmax(self._full.candidates_data.logit))])
        self._lib.llama_sampler_accept(self._smpl, token)
        return token

    def close(self) -> None:
        if self._smpl:
            self._lib.llama_sampler_free(self._smpl)
            self._smpl = None

    __del__ = close


def _use_greedy_grammar_sampler(llama) -> None:
    """Route greedy, penalty-free, grammar-constrained sampling of `llama` to :class:`GreedyGrammarSampler`."""
    default = llama._init_sampler

    def init_sampler(**kw):
        plain = (kw.get("temp") == 0.0 and kw.get("logits_processor") is None and not kw.get("mirostat_mode")
                 and kw.get("repeat_penalty", 1.0) == 1.0 and not kw.get("frequency_penalty")
                 and not kw.get("presence_penalty"))
        if kw.get("grammar") is not None and plain:
            return GreedyGrammarSampler(llama, kw["grammar"])
        return default(**kw)

    llama._init_sampler = init_sampler


def parse_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None
